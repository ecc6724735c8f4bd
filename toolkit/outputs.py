"""Outputs never overwrite silently: the one check every command that writes a folder runs before any work.

- `--out` naming an existing file, or the folder of the command's input checkpoint, is an error
  (writing there would replace or mix with the input);
- a folder that already holds a checkpoint (train, compress) or exports of *another* model (export,
  told apart by the source sha256 in their manifests) is refused unless `force`.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

from edgepack.toolkit.errors import OptionError

CHECKPOINTS = ("model.pt", "model.pth", "model.keras", "model.h5")


def _out_folder(out) -> Path:
    import tempfile
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise OptionError(f"{out}: exists and is not a folder; --out names the folder to write into")
    try:                                          # read-only or full: say so now, not as a failed verification later
        out.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out, prefix=".edgepack-write-test-"):
            pass
    except OSError as e:
        raise OptionError(f"{out}: cannot write there ({e.strerror or e})") from None
    return out


def _not_the_input_folder(out: Path, inputs) -> None:
    for i in inputs:
        if out.exists() and Path(i).resolve().parent == out.resolve():
            raise OptionError(f"{out}: is the folder of the input {i}; writing there would overwrite or mix with it; "
                              "choose another --out")


def guard_checkpoint_folder(out, *, inputs=(), force: bool = False) -> Path:
    """For train / compress: the folder must not be an input's, nor hold a checkpoint (unless force)."""
    out = _out_folder(out)
    _not_the_input_folder(out, inputs)
    held = [n for n in CHECKPOINTS if (out / n).exists()]
    if held and not force:
        raise OptionError(f"{out}: already holds a checkpoint ({', '.join(held)}); pass --force to replace it, or choose another --out")
    return out


def guard_export_folder(out, source_sha256: str, *, force: bool = False) -> Path:
    """For export: the folder must not hold exports of another model (unless force); the same model's are replaced."""
    out = _out_folder(out)
    if not out.is_dir() or force:
        return out
    others = set()
    for man in out.glob("*.json"):
        try:
            rec = json.loads(man.read_text())
        except (OSError, ValueError):
            continue
        if isinstance(rec, dict) and rec.get("kind") == "export":
            sha = (rec.get("parent") or {}).get("sha256")
            if sha and sha != source_sha256:
                others.add(man.name[:-5])
    if others:
        raise OptionError(f"{out}: holds exports of another model ({', '.join(sorted(others)[:3])}"
                          f"{', ...' if len(others) > 3 else ''}); pass --force to write beside them, or choose another --out")
    return out


def atomic_text(path, text: str) -> None:
    """Write a text file whole or not at all: a temporary file beside it, renamed; on a full disk the temporary file
    is removed and the error names the file (an earlier version of it is left as it was)."""
    path = Path(path)
    if path.is_dir():
        raise OptionError(f"{path}: is a folder; name a file to write")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        tmp.write_text(text)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        from edgepack.toolkit.errors import write_error
        raise write_error(path, e) from None


def save_figure(fig, path, dpi: int = 120) -> None:
    """matplotlib's savefig, whole or not at all (a full disk leaves no 0-byte PNG under the final name)."""
    path = Path(path)
    tmp = path.with_name(f".{path.stem}.tmp{path.suffix}")
    try:
        fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        from edgepack.toolkit.errors import write_error
        raise write_error(path, e) from None
