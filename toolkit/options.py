"""Options declared once. An options dataclass (TrainConfig, ExportOptions) gives each field its help text and
choices with `option(...)`; the command-line flags (`add_arguments`), the recipe schema (`recipe_schema`) and the
conversions from either (`from_args`, `from_recipe`) are derived from that declaration, so a new option is one field.

A field's flag is `--name-with-dashes` and its recipe key its name, unless `flag=` / `key=` say otherwise; a boolean
that defaults to True is switched off by its `negate=` flag (e.g. `--per-tensor` for `per_channel`); one that
defaults to None (each user of it decides) gets both flags, `--name` and the `negate=` one."""
from __future__ import annotations

import argparse
from dataclasses import MISSING, field, fields

from edgepack.toolkit.errors import OptionError

_TYPES = {"int": int, "float": float, "str": str, "bool": bool}
NUM = (int, float)                       # a float option accepts an integer in a recipe (lr = 1)


def option(default, help: str, *, choices=None, flag: str | None = None, key: str | None = None,
           negate: str | None = None, cli: bool = True):
    """A dataclass field with what the CLI and the recipe schema need to know about it."""
    return field(default=default, metadata={"help": help, "choices": tuple(choices) if choices else None,
                                            "flag": flag, "key": key, "negate": negate, "cli": cli})


def _declared(cls):
    return [f for f in fields(cls) if "help" in f.metadata]


def _type(f) -> type:
    t = f.type if isinstance(f.type, str) else getattr(f.type, "__name__", str(f.type))
    return _TYPES[t.replace(" | None", "").replace("Optional[", "").rstrip("]").strip()]


def key_of(f) -> str:
    return f.metadata.get("key") or f.name


def add_arguments(parser: argparse.ArgumentParser, cls, skip: tuple[str, ...] = ()) -> None:
    """One flag per declared field (defaults and choices shown in the help)."""
    for f in _declared(cls):
        if f.name in skip or not f.metadata.get("cli", True):
            continue
        m, typ = f.metadata, _type(f)
        flag = m.get("flag") or "--" + f.name.replace("_", "-")
        if typ is bool:
            if f.default is None:                        # three states: unset (the format decides), on, off
                parser.add_argument(flag, dest=f.name, action="store_const", const=True, default=None,
                                    help=m["help"])
                parser.add_argument(m.get("negate") or "--no-" + f.name.replace("_", "-"), dest=f.name,
                                    action="store_const", const=False, help=f"the opposite of {flag}")
            elif f.default:
                parser.add_argument(m.get("negate") or "--no-" + f.name.replace("_", "-"), dest=f.name,
                                    action="store_false", help=m["help"])
            else:
                parser.add_argument(flag, dest=f.name, action="store_true", help=m["help"])
            continue
        default = f.default if f.default is not MISSING else None
        shows_defaults = issubclass(parser.formatter_class, argparse.ArgumentDefaultsHelpFormatter)
        shown = "" if default is None or shows_defaults else f" (default: {default})"
        parser.add_argument(flag, dest=f.name, type=typ, default=default, choices=m.get("choices"),
                            help=m["help"] + shown)


def from_args(cls, args: argparse.Namespace, **overrides):
    """The options object from parsed arguments (fields without a flag keep their defaults)."""
    values = {f.name: getattr(args, f.name) for f in _declared(cls) if hasattr(args, f.name)}
    return cls(**{**values, **overrides})


def recipe_schema(cls, skip: tuple[str, ...] = ()) -> dict[str, tuple]:
    """{recipe key: (accepted types, required=False)} for toolkit.recipes.schema."""
    out = {}
    for f in _declared(cls):
        if f.name in skip:
            continue
        typ = _type(f)
        out[key_of(f)] = (NUM if typ is float else typ, False)
    return out


def from_recipe(cls, options: dict, **overrides):
    """The options object from a recipe step's table (keys it does not declare are ignored here: the schema has
    rejected unknown ones already)."""
    values = {f.name: options[key_of(f)] for f in _declared(cls) if key_of(f) in options}
    return cls(**{**values, **overrides})


def check_choices(obj) -> None:
    """Every declared field with choices holds one of them, however the object was made (flags, recipe, Python)."""
    for f in _declared(type(obj)):
        allowed, value = f.metadata.get("choices"), getattr(obj, f.name)
        if allowed and value not in allowed:
            raise OptionError(f"unknown {f.name.replace('_', ' ')} {value!r}; expected one of {', '.join(allowed)}")


__all__ = ["option", "add_arguments", "from_args", "recipe_schema", "from_recipe", "check_choices", "NUM"]
