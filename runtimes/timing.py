"""Timing several models against each other on one machine: interleaved rounds, so that drift in the machine's speed
(another job, a clock change) falls on every model alike. Used by the per-layer attribution and the mixed-precision
search; the harness's own timing (warm-up, percentiles) is in benchmarks/child.py."""
from __future__ import annotations

import time

import numpy as np


def time_interleaved(calls: list, feeds: list, rounds: int, runs: int) -> np.ndarray:
    """Per-round median time (us) of each call on its feed: an array of rounds x calls. Each round runs every call in
    turn, `runs` timed runs after max(runs // 10, 5) untimed ones."""
    out = np.zeros((rounds, len(calls)))
    for r in range(rounds):
        for i, (run, feed) in enumerate(zip(calls, feeds)):
            for _ in range(max(runs // 10, 5)):
                run(feed)
            ts = np.empty(runs)
            for k in range(runs):
                t = time.perf_counter()
                run(feed)
                ts[k] = time.perf_counter() - t
            out[r, i] = np.median(ts) * 1e6
    return out
