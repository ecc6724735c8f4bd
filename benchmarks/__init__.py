"""edgepack benchmark harness: each file timed and scored in its own process, reports, bundles' golden checks.

It stands on the runtime layer (edgepack.runtimes: runners, metrics read from files, machine facts). The runtime
path (harness, runners, reports) imports neither torch nor TensorFlow, so it runs on a Raspberry Pi with only
`edgepack[runtime]` installed.
"""
import os as _os

_os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
_os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
