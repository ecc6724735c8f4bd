"""The machine record: CPU, cores, the ISA features that decide int8 speed, OS and runtime versions."""
from __future__ import annotations

import os
import platform
from importlib.metadata import PackageNotFoundError, version
from pathlib import Path

# /proc/cpuinfo flag -> what it means for int8 inference
INT8_FEATURES = {
    "avx2": "AVX2", "avx512f": "AVX-512", "avx512_vnni": "AVX-512 VNNI", "avx_vnni": "AVX-VNNI",
    "amx_int8": "AMX-INT8", "asimd": "NEON", "asimddp": "dot-product (SDOT/UDOT)", "i8mm": "int8 matmul (I8MM)",
}


def cpu_info() -> dict:
    model, flags = platform.processor() or platform.machine(), set()
    try:
        text = Path("/proc/cpuinfo").read_text()
        for line in text.splitlines():
            key, _, val = line.partition(":")
            key = key.strip().lower()
            if key in ("model name", "hardware", "model") and val.strip() and (model in ("", platform.machine()) or key == "model name"):
                model = val.strip()
            if key in ("flags", "features"):
                flags.update(val.split())
    except OSError:
        pass
    return {"model": model, "flags": sorted(f for f in INT8_FEATURES if f in flags),
            "int8_features": [INT8_FEATURES[f] for f in INT8_FEATURES if f in flags], "all_flags": sorted(flags)}


X86_ONLY_FLAGS = {"sse2", "ssse3", "avx", "avx2", "vmx", "svm"}
ARM_ONLY_FLAGS = {"asimd", "neon", "fp", "evtstrm"}


def emulation(arch: str, flags) -> str | None:
    """How an emulated machine gives itself away, or None: a userland under qemu-user (a Raspberry Pi image on an
    x86 laptop, edgepack's `make aarch64-check`) reports its own architecture while /proc/cpuinfo describes the host
    CPU. Its accuracies are the emulated runtime's (its kernels, its kernel class); its timings are the emulator's,
    never the device's."""
    arch, flags = (arch or "").lower(), set(flags or ())
    arm = arch in ("aarch64", "arm64") or arch.startswith("armv")
    if arm and flags & X86_ONLY_FLAGS:
        return f"qemu-user: an {arch} userland on an x86 CPU"
    if arch in ("x86_64", "amd64", "i686") and flags & ARM_ONLY_FLAGS and not flags & X86_ONLY_FLAGS:
        return f"an {arch} userland on an ARM CPU (emulated)"
    return None


def has_int8_dot(cpu: dict) -> bool:
    return any(f in cpu["flags"] for f in ("avx512_vnni", "avx_vnni", "amx_int8", "asimddp", "i8mm"))


def onnxruntime_kernel_class(cpu: dict | None = None) -> str:
    """The class of ONNX Runtime's u8 x s8 int8 kernels on this CPU (see edgepack.runtimes.qdq_reference)."""
    cpu = cpu or cpu_info()
    flags = set(cpu["flags"])
    if platform.machine().lower() in ("aarch64", "arm64") or "asimd" in flags:
        return "exact"
    if flags & {"avx512_vnni", "avx_vnni", "amx_int8"}:
        return "exact"
    if "avx2" in flags:
        return "u8s8-sat16"
    return "unknown"


def cpu_label(cpu: dict | None = None) -> str:
    """'AMD EPYC (AVX2)': the CPU and the int8-relevant ISA, for every figure edgepack prints."""
    cpu = cpu or cpu_info()
    return f"{cpu['model']} ({', '.join(cpu['int8_features']) or platform.machine()})"


def _v(dist: str) -> str | None:
    try:
        return version(dist)
    except PackageNotFoundError:
        return None


def machine_record() -> dict:
    cpu = cpu_info()
    try:
        affinity = len(os.sched_getaffinity(0))
    except AttributeError:
        affinity = os.cpu_count()
    return {"cpu": cpu["model"], "cores": os.cpu_count(), "usable_cores": affinity, "isa": cpu["int8_features"],
            "int8_dot_product": has_int8_dot(cpu), "ort_int8_kernel_class": onnxruntime_kernel_class(cpu), "os": platform.platform(), "python": platform.python_version(),
            "arch": platform.machine(), "emulated": emulation(platform.machine(), cpu["all_flags"]),
            "runtimes": {k: v for k, v in {"onnxruntime": _v("onnxruntime"), "ai-edge-litert": _v("ai-edge-litert"),
                                           "numpy": _v("numpy"), "torch": _v("torch"), "tensorflow": _v("tensorflow")}.items() if v},
            "rapl_readable": rapl_path() is not None}


def rapl_path() -> Path | None:
    p = Path("/sys/class/powercap/intel-rapl:0/energy_uj")
    try:
        p.read_text()
        return p
    except OSError:
        return None
