"""The task interface: what a model is for, and so how its outputs are read, scored and verified.

A task says what the data set yields for it (`view`), whether a model's outputs fit it (`check_outputs`), the quality
figure measured on the test set with its standard error (`quality`), what verification compares between an exported
file and its source (`compare`, `judge`) and what the report draws (`plot`). One module per task, registered in
`edgepack.toolkit.tasks.TASK_MODULES`; everything else asks a task object, never a task's name.

Model outputs travel as dicts, output name -> float array (batch first), in the order the model declares them.
Everything here is NumPy only: the bench child on a device without torch or TensorFlow scores with the same code.
"""
from __future__ import annotations

import numpy as np

from edgepack.toolkit.errors import ModelError, OptionError

# int8 output fidelity floor for tasks judged by outputs alone (raw): the signal-to-noise ratio of every output against
# the source's, in dB. Measured by tools/snr_floor.py (toolkit/tasks/README.md): the 12 int8 files of six models
# trained here (classifiers and autoencoders, both routes) scored 32.4-40.4 dB; the same .onnx files with one
# activation range off by 4x scored -2.3 to 8.5 dB, save two harmless cases at 35 dB.
MIN_INT8_SNR_DB = 15.0


class Task:
    """One task. Subclasses set the class attributes and override what differs from these defaults."""
    name: str = ""
    description: str = ""
    metric: str | None = None          # the quality figure a budget or a verification judges ("accuracy", "ROC AUC")
    options: tuple[str, ...] = ()      # keys of its spec besides "name" (recorded with every artifact)
    top1: bool = False                 # outputs are class scores, the prediction their argmax: top-1 agreement,
                                       # distillation, compression fine-tunes and the mixed-precision search apply
    float_tail: bool = False           # int8 files keep their output head float (export option int8_tail = auto):
                                       # the last convolutions and the decode ops after them
    calibration_samples: int = 200     # training images int8 exports calibrate on unless told (calibration_samples)
    onnx_weights: str = "int8"         # ONNX int8 weight type unless told (ExportOptions.onnx_weights)
    default_for: str | None = None     # a data modality ("audio") whose classifiers are this task without --task
    figures_beside_accuracy: bool = False   # a classifier whose quality has more to say than accuracy (a report line)
    objective: str | None = None       # what training minimises (Framework.fit): classification, reconstruction,
                                       # boxes (an architecture whose ArchSpec.output_kind() fits it); None:
                                       # edgepack does not train models of this task (they come as files)

    def __init__(self, **options):
        unknown = sorted(set(options) - set(self.options))
        if unknown:
            raise OptionError(f"task {self.name}: unknown option(s) {', '.join(unknown)}"
                              + (f"; known: {', '.join(self.options)}" if self.options else ""))
        self.settings = options

    def __repr__(self) -> str:
        return f"<task {self.name}{' ' + str(self.settings) if self.settings else ''}>"

    def to_dict(self) -> dict:
        """The task as artifact records and manifests carry it."""
        return {"name": self.name, **self.settings}

    # ------------------------------------------------------------ data
    def view(self, ds):
        """The data set as this task reads it (a one-class set-up, say); the data set itself by default."""
        return ds

    def training_targets(self, ds, spec) -> np.ndarray | None:
        """What training fits for architecture `spec` when it is not the data set's labels (detection: per-cell
        targets of the boxes); None: the labels themselves (or, for reconstruction, the inputs)."""
        return None

    # ------------------------------------------------------------ outputs
    def check_outputs(self, shapes: dict[str, tuple], ds, where: str) -> None:
        """ModelError in one line when outputs of these shapes (batch first, -1 dynamic) cannot be read by this task."""

    def quality(self, outputs: dict[str, np.ndarray], x: np.ndarray, y: np.ndarray, ds) -> dict | None:
        """The task's figures on these inputs (x canonical float NHWC, y the view's labels): {"metric", "value",
        "se", ...}; None for a task without a quality figure."""
        return None

    def format_figure(self, value: float) -> str:
        """The task's metric as lines print it (accuracy 98.12%, ROC AUC 0.9812)."""
        return f"{value:.2%}"

    def quality_line(self, q: dict | None) -> str:
        if not q:
            return "no quality figure (outputs only)"
        return f"{q['metric']} {100 * q['value']:.2f}% +- {100 * q['se']:.2f}"

    # ------------------------------------------------------------ verification
    def compare(self, got: dict, ref: dict, x: np.ndarray, y: np.ndarray, ds) -> dict:
        """Every figure verification judges, for one file's outputs against the source's (matched by name). A task
        with a metric also returns it for file and source as "figure" and "source_figure" (what the verification
        record and the kernel-class proof keep as the file's accuracy); a classifier's are "accuracy" and
        "source_accuracy"."""
        return {"shape_ok": True, "outputs": fidelity(got, ref)}

    def judge(self, m: dict, criteria: tuple, max_drop_pp: float, where: str = "") -> list[str]:
        """The failed checks (empty: passed); `criteria` is the exporter's (atol, min_agreement), atol None: quantized.
        A shape mismatch fails; exact formats, and every file of a task without a metric, are judged output by output
        (`judge_fidelity`); a quantized file of a task with a metric by that metric (`judge_figure`)."""
        at = f" ({where})" if where else ""
        if not m.get("shape_ok", True):
            return [m["shape"] + at]
        if criteria[0] is not None or self.metric is None:
            return judge_fidelity(m, criteria, where)
        return self.judge_figure(m, max_drop_pp, at)

    def judge_figure(self, m: dict, max_drop_pp: float, at: str) -> list[str]:
        """A quantized file's failures by the task's metric (its `compare` figures), `at` ending every message."""
        raise NotImplementedError(f"task {self.name} has a metric but no judge_figure")

    def notes(self, m: dict, criteria: tuple) -> list[str]:
        """What a verification must say beside its verdict (a rule without evidence, a source that proves nothing)."""
        return list(m.get("notes") or [])

    def verification_line(self, ver) -> str:
        """One line of figures for a verification (the caller adds size, machine and verdict)."""
        return fidelity_line(ver.outputs or {})

    # ------------------------------------------------------------ report
    def plot(self, curves: list[tuple[str, dict]], path) -> str | None:
        """Draw the task's figure for the report from (label, quality dict) pairs; None when it has none."""
        return None

    def draw_examples(self, ds, x: np.ndarray, y, files: list[tuple], path) -> str | None:
        """Draw what files predict on a few test images side by side (x uint8 NHWC, y their labels; files: (label,
        a call returning the file's outputs on the normalised x, run only by a task that draws)); None for a task
        without such a figure."""
        return None


# ---------------------------------------------------------------- output fidelity, for every task
def fidelity(got: dict, ref: dict) -> dict:
    """Per output: max |diff|, mean |diff|, SNR in dB (signal: the source's output) and cosine similarity."""
    out = {}
    for name, r in ref.items():
        g = got[name]
        if g.shape != r.shape:
            out[name] = {"shape_ok": False, "shape": f"output {name!r} shape {g.shape} != source {r.shape}"}
            continue
        r64, g64 = r.astype(np.float64).ravel(), g.astype(np.float64).ravel()
        d = g64 - r64
        noise, signal = float(np.mean(d ** 2)), float(np.mean(r64 ** 2))
        snr = float("inf") if noise == 0 else (10 * np.log10(signal / noise) if signal > 0 else float("-inf"))
        nr, ng = np.linalg.norm(r64), np.linalg.norm(g64)
        cos = float(r64 @ g64 / (nr * ng)) if nr > 0 and ng > 0 else float(nr == ng)
        out[name] = {"shape_ok": True, "shape": list(r.shape[1:]), "max_abs_diff": float(np.abs(d).max()) if d.size else 0.0,
                     "mean_abs_diff": float(np.abs(d).mean()) if d.size else 0.0, "snr_db": snr, "cosine": cos}
    return out


def judge_fidelity(m: dict, criteria: tuple, where: str = "") -> list[str]:
    """Exact formats: every output within atol; quantized ones: every output's SNR at least MIN_INT8_SNR_DB."""
    at = f" ({where})" if where else ""
    atol = criteria[0]
    failures = []
    for name, f in (m.get("outputs") or {}).items():
        if not f["shape_ok"]:
            failures.append(f["shape"] + at)
        elif atol is not None and not f["max_abs_diff"] <= atol:
            failures.append(f"output {name!r}: max abs difference {f['max_abs_diff']:.3g} > {atol:g}{at}")
        elif atol is None and not f["snr_db"] >= MIN_INT8_SNR_DB:
            failures.append(f"output {name!r}: SNR {f['snr_db']:.1f} dB < {MIN_INT8_SNR_DB:g} dB{at}")
    return failures


def shape_mismatch(fid: dict) -> dict | None:
    """A comparison's result when some output's shape differs from the source's (from `fidelity`), else None."""
    bad = next((f for f in fid.values() if not f["shape_ok"]), None)
    return None if bad is None else {"shape_ok": False, "shape": bad["shape"], "outputs": fid}


def fidelity_line(outputs: dict) -> str:
    parts = []
    for name, f in outputs.items():
        if not f.get("shape_ok", True):
            parts.append(f"{name}: {f.get('shape')}")
        else:
            parts.append(f"{name}: max |diff| {f['max_abs_diff']:.3g}, SNR {f['snr_db']:.1f} dB, cosine {f['cosine']:.5f}")
    return "outputs " + "; ".join(parts)


# ---------------------------------------------------------------- outputs matched by name
def _norm(name: str) -> str:
    """A name as converters rewrite it: TensorFlow's ':0' suffix, signature prefixes, case and punctuation dropped."""
    n = name.lower().rsplit(":", 1)[0] if ":" in name and name.rsplit(":", 1)[1].isdigit() else name.lower()
    for prefix in ("serving_default_", "statefulpartitionedcall/", "model/"):
        if n.startswith(prefix):
            n = n[len(prefix):]
    return "".join(ch for ch in n if ch.isalnum())


def match_outputs(source: dict[str, tuple], file: dict[str, tuple], where: str) -> tuple[dict[str, str], str]:
    """Map each source output to the file's output holding it: by name, then by name as converters rewrite names,
    then (one output, or every per-sample shape different) by shape. Returns ({source name: file name}, how).
    A file whose outputs cannot be matched this way is refused in one line naming them."""
    src, fil = list(source), list(file)
    if len(src) != len(fil):
        raise ModelError(f"{where}: {len(fil)} output(s) ({', '.join(fil)}) where the source has {len(src)} "
                         f"({', '.join(src)})")
    if set(src) == set(fil):
        return {s: s for s in src}, "by name"
    normed = {_norm(f): f for f in fil}
    if len(normed) == len(fil) and all(_norm(s) in normed for s in src):
        return {s: normed[_norm(s)] for s in src}, "by name (converter's renaming undone)"
    if len(src) == 1:
        return {src[0]: fil[0]}, "the only output"

    def per_sample(shape):
        return tuple(int(d) for d in tuple(shape)[1:])
    positional = [f"output_{i}" for i in range(len(src))]      # TFLite signatures (onnx2tf, the Keras converter)
    if sorted(fil) == positional and all(per_sample(source[s]) == per_sample(file[f]) for s, f in zip(src, positional)):
        return dict(zip(src, positional)), "by signature position (output_i is the source's i-th output)"
    by_shape = {}
    for f in fil:
        by_shape.setdefault(per_sample(file[f]), []).append(f)
    src_shapes = [per_sample(source[s]) for s in src]
    if len(set(src_shapes)) == len(src) and all(len(by_shape.get(sh, [])) == 1 for sh in src_shapes):
        return {s: by_shape[sh][0] for s, sh in zip(src, src_shapes)}, "by shape (names differ, every shape unique)"
    raise ModelError(f"{where}: cannot match its outputs ({', '.join(f'{f} {tuple(file[f])}' for f in fil)}) to the "
                     f"source's ({', '.join(f'{s} {tuple(source[s])}' for s in src)}): names differ and shapes repeat")


def renamed(got: dict, mapping: dict[str, str]) -> dict:
    """A file's outputs under the source's names (the mapping from `match_outputs`), in the source's order."""
    return {s: got[f] for s, f in mapping.items()}


def output_shapes(outputs: dict) -> dict:
    """name -> shape with the batch dimension dynamic (-1): what `match_outputs` compares."""
    return {k: (-1, *v.shape[1:]) for k, v in outputs.items()}


def matched(ref: dict, got: dict, where: str) -> tuple[dict, dict[str, str], str]:
    """A file's outputs (arrays) under the source's names: (renamed outputs, mapping, how they were matched)."""
    mapping, how = match_outputs(output_shapes(ref), output_shapes(got), where)
    return renamed(got, mapping), mapping, how
