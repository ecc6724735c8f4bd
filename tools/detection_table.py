"""The detection results table (issue 38) from one bench run: each detector x {fp32, naive full-int8, int8 with the decode ops float, edgepack int8 (head float)} x
{.tflite in LiteRT, .onnx in ONNX Runtime}: mAP@0.5, mAP@0.5:0.95, size, p50 of the model and of decode + NMS.

    python -m tools.detection_table runs/detection_table/results.json [--detector FOLDER=NAME ...]

A file's variant comes from its manifest: fp32 (precision fp32), naive (int8, `float_tail` empty: every op quantized)
decode (int8, the ops after the last convolutions float) or edgepack (int8, the head float: the last
convolutions too), and for .onnx its weights (uint8, the detection default; 7-bit int8; 8-bit int8); its detector from the folder holding it (--detector maps a folder
name, e.g. export-torch=tiny-det (PyTorch)).
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path


def variant(model: str) -> str:
    rec = json.loads(Path(model + ".json").read_text())
    step = rec["steps"][-1]
    if step.get("precision", "fp32") == "fp32" or rec.get("format") in ("onnx", "tflite"):
        return "fp32"
    details = step.get("details") or {}
    name = {"head": "edgepack int8 (head float)", "decode": "int8, decode ops float"}.get(details.get("float_tail_mode"),
                                                                                         "naive full-int8")
    if not str(rec.get("format", "")).startswith("onnx"):
        return name
    weights = str(details.get("weights", ""))
    return name + (", uint8 weights" if weights.startswith("uint8") else ", 7-bit int8 weights" if details.get("reduce_range")
                   else ", 8-bit int8 weights (--target x86-vnni)")


WEIGHT_RANK = {"uint8 weights": 0, "7-bit int8 weights": 0.3, "8-bit int8 weights (--target x86-vnni)": 0.6}


def table(results: dict, names: dict[str, str]) -> list[str]:
    rows = [d for d in results["results"] if d["ok"] and d["threads"] == 1]
    out = ["| detector | file | runtime | mAP@0.5 | mAP@0.5:0.95 | change (points) | size B | p50 model ms | "
           "decode + NMS ms (conf 0.25 / 0.001) |", "| --- | --- | --- | ---: | ---: | ---: | ---: | ---: | ---: |"]
    order = {"fp32": 0, "naive full-int8": 1, "int8, decode ops float": 2, "edgepack int8 (head float)": 3}
    keyed = []
    for d in rows:
        folder = Path(d["model"]).parent.name
        v = variant(d["model"])
        weights = next((w for w in WEIGHT_RANK if v.endswith(", " + w)), "")
        base = v[:-len(weights) - 2] if weights else v
        keyed.append((names.get(folder, folder), Path(d["model"]).suffix, order[base] + WEIGHT_RANK.get(weights, 0), d))
    fp32 = {(det, suf): d["quality"]["value"] for det, suf, v, d in keyed if v == 0}
    for det, suf, v, d in sorted(keyed, key=lambda k: (k[0], k[1], k[2])):
        q = d["quality"]
        change = "" if v == 0 else f"{100 * (q['value'] - fp32[(det, suf)]):+.2f}"
        out.append(f"| {det} | {variant(d['model'])} `{suf}` | {d['runtime']} | {q['map50']:.4f} | {q['value']:.4f} | "
                   f"{change} | {d['size_bytes']:,} | {d['latency_ms']['p50']:.3f} | "
                   f"{q['decode_nms_ms_deploy']:.2f} / {q['decode_nms_ms']:.2f} |")
    return out


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("results")
    p.add_argument("--detector", action="append", default=[], help="FOLDER=NAME")
    a = p.parse_args()
    names = dict(x.split("=", 1) for x in a.detector)
    print("\n".join(table(json.loads(Path(a.results).read_text()), names)))


if __name__ == "__main__":
    main()
