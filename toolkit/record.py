"""The artifact record: what a file is, where it came from and how it was checked.

Every checkpoint and export gets a sidecar `<file>.json`. Each step (train, compress, export,
verify) appends to `steps`, so the record that reaches the benchmark report carries the history.
"""
from __future__ import annotations

import gzip
import hashlib
import json
import os
import platform
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

from edgepack.toolkit.errors import ModelError

RECORD_VERSION = 1


def sha256_file(path: str | Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def gzip_size(path: str | Path, level: int = 9) -> int:
    return len(gzip.compress(Path(path).read_bytes(), compresslevel=level, mtime=0))


@dataclass
class ArtifactRecord:
    kind: str                            # "checkpoint" | "export"
    file: str                            # file name, relative to the record
    framework: str | None = None         # torch | keras (source framework)
    format: str | None = None            # checkpoint or export format name
    arch: dict | None = None             # ArchSpec.to_dict(), None for users' own models
    dataset: dict = field(default_factory=dict)        # name, source, preprocessing, input_shape, classes
    parent: dict | None = None           # {"file", "sha256"} of the source artifact
    steps: list[dict] = field(default_factory=list)
    metrics: dict = field(default_factory=dict)
    verification: dict | None = None
    sizes: dict = field(default_factory=dict)
    task: dict | None = None             # what the model is for ({"name", options}; None: a classifier, as before tasks)
    created: str = field(default_factory=lambda: time.strftime("%Y-%m-%dT%H:%M:%S%z"))
    version: int = RECORD_VERSION

    @staticmethod
    def path_for(artifact: str | Path) -> Path:
        artifact = Path(artifact)
        return artifact.with_name(artifact.name + ".json")

    def fill_sizes(self, artifact: str | Path) -> None:
        p = Path(artifact)
        self.sizes = {"bytes": p.stat().st_size, "gzip_bytes": gzip_size(p), "sha256": sha256_file(p)}

    def save(self, artifact: str | Path) -> Path:
        target = self.path_for(artifact)
        tmp = target.with_name(target.name + ".tmp")
        tmp.write_text(json.dumps(asdict(self), indent=2, default=_jsonable))
        os.replace(tmp, target)
        return target

    @classmethod
    def load(cls, artifact: str | Path) -> "ArtifactRecord | None":
        p = cls.path_for(artifact)
        if not p.is_file():
            return None
        try:
            d = json.loads(p.read_text())
            return cls(**{k: v for k, v in d.items() if k in cls.__dataclass_fields__})
        except (json.JSONDecodeError, TypeError) as e:
            raise ModelError(f"{p}: unreadable artifact record ({e})") from None


def _jsonable(o):
    try:
        import numpy as np
        if isinstance(o, np.generic):
            return o.item()
        if isinstance(o, np.ndarray):
            return o.tolist()
    except ImportError:
        pass
    if isinstance(o, Path):
        return str(o)
    return str(o)


def environment() -> dict:
    return {"python": platform.python_version(), "platform": platform.platform(), "machine": platform.machine()}
