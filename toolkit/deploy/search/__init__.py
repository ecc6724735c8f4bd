"""Mixed precision by search, for per-layer precision spaces too large to enumerate (2^layers per int8 format).

    space {format: source layers} x {format: runtimes} -> sampler.ask() -> trials (format, runtime, float layers)
      -> export each trial's file                    executor.map: in this process, or Ray tasks with their CPUs
      -> score it on training images against labels and the source (never the test set: the pick is judged there)
      -> time the batch interleaved, each file in its trial's runtime
                                                     executor.map(bench=True): a node to itself, the full-int8 file
                                                     of each (format, runtime) in every batch as the anchor against drift
      -> sampler.tell(score) -> ... until the trial budget, the goal (a trial inside every budget, the latency one
         included), or `patience` trials without a better feasible one
    The best distinct trials then become ordinary deploy candidates: exported again through the exporters (verified)
    and benchmarked on the full test set beside every other candidate, so a searched file is judged like the rest.

Samplers: `exhaustive` (every combination, fewest float layers first), `tpe` (Optuna's TPE, as the peers that search
compression settings use; the `search` extra), `auto` (exhaustive when the space fits the trial budget, else tpe).
The trials' numbers are proxies (training images, a few hundred timed runs); the figures a pick is chosen on are the
full-test-set benchmark's.
"""
from edgepack.toolkit.deploy.search.loop import BETTER, SearchResult, run_search, search, search_table  # noqa: F401
from edgepack.toolkit.deploy.search.samplers import (SAMPLERS, STARTUP, Config, ExhaustiveSampler,  # noqa: F401
                                                     Sampler, TPESampler, make_sampler, space_size)
from edgepack.toolkit.deploy.search.trials import (Source, Trial, _score, export_trial, register,  # noqa: F401
                                                   search_runtimes, time_files)
