"""Parse compression steps from the command line: `prune(sparsity=0.8,epochs=2),qat(epochs=1)` or a JSON list."""
from __future__ import annotations

import ast
import json
import re

from edgepack.toolkit.errors import OptionError

_STEP = re.compile(r"\s*([A-Za-z][\w-]*)\s*(?:\(([^()]*)\))?\s*(?:,|$)")


def _value(text: str):
    text = text.strip()
    try:
        return ast.literal_eval(text)
    except (ValueError, SyntaxError):
        return text


def parse_steps(text: str) -> list[dict]:
    text = text.strip()
    if text.startswith("["):
        try:
            steps = json.loads(text)
        except json.JSONDecodeError as e:
            raise OptionError(f"--steps: invalid JSON ({e})") from None
        if not all(isinstance(s, dict) and "technique" in s for s in steps):
            raise OptionError("--steps JSON must be a list of objects with a 'technique' key")
        return steps
    steps, pos = [], 0
    while pos < len(text):
        m = _STEP.match(text, pos)
        if not m or m.end() == pos:
            raise OptionError(f"--steps: cannot parse {text[pos:]!r}; expected e.g. prune(sparsity=0.8,epochs=2),qat(epochs=1)")
        step = {"technique": m.group(1)}
        for item in filter(None, (p.strip() for p in (m.group(2) or "").split(","))):
            if "=" not in item:
                raise OptionError(f"--steps: option {item!r} of step {m.group(1)!r} needs the form key=value")
            k, v = item.split("=", 1)
            step[k.strip().replace("-", "_")] = _value(v)
        steps.append(step)
        pos = m.end()
    if not steps:
        raise OptionError("--steps is empty")
    return steps
