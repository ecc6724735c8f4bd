"""Progress bars: tqdm when installed and enabled, else a plain iterator (runtime-only installs)."""
from __future__ import annotations

import sys


def progress(iterable, total=None, desc="", enabled=True):
    if not enabled:
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True,
                mininterval=0.5 if sys.stderr.isatty() else 30.0)
