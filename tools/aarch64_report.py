"""Writes OUT/README.md for tools/aarch64_check.sh: accuracies on aarch64 (emulated) next to x86, no timings."""
from __future__ import annotations

import json
import sys
import time
from pathlib import Path


def main(out: Path, build_s: int, install_s: int, bench_s: int) -> None:
    arm = json.loads((out / "arm64.json").read_text())
    x86 = json.loads((out / "x86.json").read_text())
    for row in arm["results"]:               # emulated timings are not device timings: never keep them
        for k in ("latency_ms", "throughput_ips", "load_ms", "first_inference_ms", "energy_mj", "latencies_ms", "peak_rss_mb"):
            row.pop(k, None)
    (out / "arm64.json").write_text(json.dumps(arm, indent=1))
    freeze = {ln.split("==")[0].lower(): ln.split("==")[1] for ln in (out / "pip-freeze.txt").read_text().split() if "==" in ln}
    imports = (out / "imports.txt").read_text().strip()
    m_arm, m_x86 = arm["results"][0]["machine"], x86["results"][0]["machine"]
    lines = ["# The Raspberry Pi path on aarch64 (qemu-user emulation)", "",
             f"Run {time.strftime('%Y-%m-%d')} with `make aarch64-check` (`tools/aarch64_check.sh`) on {m_x86['cpu']} "
             f"({', '.join(m_x86['isa'])}); arm64 Debian bookworm userland under qemu-user: `{(out / 'uname.txt').read_text().strip()}`, "
             f"Python {m_arm['python']}.", "",
             "- Installed there from the working tree with `pip install \".[runtime]\"`: "
             + ", ".join(f"{k} {freeze[k]}" for k in ("edgepack", "numpy", "onnxruntime", "ai-edge-litert", "pillow") if k in freeze) + ".",
             f"- Import check: `{imports}` (neither torch nor TensorFlow exists in that venv).",
             f"- Time: userland {build_s} s (0 when reused), pip install {install_s} s, bench {bench_s} s, on 2 busy cores.",
             "- **No timings are reported**: under emulation they describe qemu, not a Pi. Latency fields are removed from",
             "  `arm64.json`.", "",
             "| file | runtime | accuracy x86 (this host) | accuracy aarch64 | same? |", "| --- | --- | ---: | ---: | --- |"]
    by_name = {Path(r["model"]).name: r for r in x86["results"]}
    for r in arm["results"]:
        name = Path(r["model"]).name
        h = by_name.get(name, {})
        a, b = h.get("accuracy"), r.get("accuracy")
        same = "yes" if a == b and a is not None else ("error: " + (r.get("error") or h.get("error") or "")) if a is None or b is None else \
            f"no ({100 * (b - a):+.2f} pp)"
        lines.append(f"| {name} | {r.get('runtime') or '-'} | {'-' if a is None else f'{100 * a:.2f}%'} | "
                     f"{'-' if b is None else f'{100 * b:.2f}%'} | {same} |")
    lines += ["", "LiteRT files give identical results on both: its int8 kernels accumulate in int32 everywhere. An int8 `.onnx`",
              f"runs ONNX Runtime's kernels for each CPU: on this x86 host its class is `{m_x86.get('ort_int8_kernel_class')}`, on",
              "ARM64 int32 accumulation; edgepack's default 7-bit weights make both compute the same integers (see",
              "`benchmarks/results/portability.md`), so a difference there would be a kernel-class difference, not the file's."]
    (out / "README.md").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))


if __name__ == "__main__":
    main(Path(sys.argv[1]), *(int(v) for v in sys.argv[2:5]))
