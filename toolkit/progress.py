"""Progress bars: tqdm when installed and enabled, else a plain iterator (runtime-only installs)."""
from __future__ import annotations

import sys


def progress(iterable, total=None, desc="", enabled=True):
    """A bar on a terminal; in a log (stderr not a TTY) none: the per-epoch lines already say how far it got."""
    if not enabled or not sys.stderr.isatty():
        return iterable
    try:
        from tqdm import tqdm
    except ImportError:
        return iterable
    return tqdm(iterable, total=total, desc=desc, leave=False, file=sys.stderr, dynamic_ncols=True, mininterval=0.5)
