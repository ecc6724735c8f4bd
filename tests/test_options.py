"""Options are declared once (toolkit/options.py): the CLI flags and the recipe schema are derived from the
TrainConfig / ExportOptions fields, so neither can lose or misspell an option (the recipe schema once lacked
`keep_nchw`). Unit tier: no data, no training."""
from __future__ import annotations

import argparse
from dataclasses import dataclass, fields

import pytest

from edgepack.exporters.base import ExportOptions
from edgepack.toolkit.errors import OptionError
from edgepack.toolkit.options import add_arguments, from_args, from_recipe, key_of, option, recipe_schema
from edgepack.toolkit.recipes.schema import KINDS
from edgepack.toolkit.train import TrainConfig


def _subparser(name: str) -> argparse.ArgumentParser:
    from edgepack.toolkit.cli import build_parser
    sub = next(a for a in build_parser()._actions if isinstance(a, argparse._SubParsersAction))
    return sub.choices[name]


@pytest.mark.parametrize("cls, command, kind", [(TrainConfig, "train", "train"), (ExportOptions, "export", "export")])
def test_every_declared_option_is_a_flag_and_a_recipe_key(cls, command, kind):
    dests = {a.dest for a in _subparser(command)._actions}
    declared = [f for f in fields(cls) if "help" in f.metadata]
    assert declared == list(fields(cls))                         # nothing undeclared
    assert {f.name for f in declared} <= dests
    skipped = {"threads"} if cls is TrainConfig else set()       # a machine setting, not part of a recipe's result
    assert {key_of(f) for f in declared if f.name not in skipped} <= set(KINDS[kind])


def test_cli_and_recipe_give_the_same_options():
    args = _subparser("export").parse_args(["ckpt.pt", "--to", "onnx-int8", "--out", "o", "--calibration", "entropy",
                                             "--per-tensor", "--target", "x86-vnni", "--verify-max-drop", "0.5"])
    from_cli = from_args(ExportOptions, args)
    from_toml = from_recipe(ExportOptions, {"input": "m", "formats": ["onnx-int8"], "calibration": "entropy",
                                            "per_channel": False, "target": "x86-vnni", "verify_max_drop": 0.5})
    assert from_cli == from_toml
    assert from_cli.calibration_method == "entropy" and not from_cli.per_channel
    assert from_cli.dense_per_channel is None                    # unset: each TFLite mode picks (tests/test_exporters.py)
    for flags, expected in (([], None), (["--dense-per-channel"], True), (["--dense-per-tensor"], False)):
        args = _subparser("export").parse_args(["ckpt.pt", "--to", "tflite-dynamic", "--out", "o", *flags])
        assert from_args(ExportOptions, args).dense_per_channel is expected
        assert from_recipe(ExportOptions, {} if expected is None else {"dense_per_channel": expected}) == \
            from_args(ExportOptions, args)
    t = from_args(TrainConfig, _subparser("train").parse_args(
        ["--framework", "torch", "--arch", "resnet8", "--data", "cifar10", "--out", "o", "--epochs", "7", "--augment",
         "--keep-last"]))
    assert t == TrainConfig(epochs=7, augment=True, restore_best=False)


def test_choices_are_checked_where_they_are_declared():
    with pytest.raises(SystemExit):                              # argparse: one line naming the choices
        _subparser("train").parse_args(["--framework", "torch", "--arch", "a", "--data", "d", "--out", "o", "--optimizer", "lamb"])
    with pytest.raises(OptionError, match="optimizer"):
        from_recipe(TrainConfig, {"optimizer": "lamb"})
    assert ExportOptions(tflite_route="keras").tflite_route == "converter"      # the pre-0.2 name still works
    with pytest.raises(OptionError, match="contradict"):
        ExportOptions(per_channel=False, dense_per_channel=True)


def test_a_new_field_reaches_both_the_cli_and_the_schema():
    @dataclass
    class Demo:
        rate: float = option(0.5, "a rate")
        mode: str = option("a", "a mode", choices=("a", "b"), flag="--m", key="the_mode")
        on: bool = option(True, "switch it off", negate="--off")
        auto: bool | None = option(None, "unset, on or off", negate="--manual")
    p = argparse.ArgumentParser()
    add_arguments(p, Demo)
    assert from_args(Demo, p.parse_args(["--rate", "2", "--m", "b", "--off"])) == Demo(2.0, "b", False, None)
    assert from_args(Demo, p.parse_args(["--auto"])).auto is True
    assert from_args(Demo, p.parse_args(["--manual"])).auto is False
    schema = recipe_schema(Demo)
    assert schema == {"rate": ((int, float), False), "the_mode": (str, False), "on": (bool, False),
                      "auto": (bool, False)}
    assert from_recipe(Demo, {"the_mode": "b", "rate": 1}) == Demo(1, "b", True, None)


def test_each_format_declares_the_options_it_reads():
    from dataclasses import fields as dc_fields

    from edgepack.exporters.base import VERIFY_OPTIONS, unused_options
    from edgepack.exporters.registry import get_exporter, list_exporters
    every = {f.name for f in dc_fields(ExportOptions)}
    read = set(VERIFY_OPTIONS).union(*(get_exporter(n).options for n in list_exporters()))
    assert read == every                                          # no option that no format reads
    onnx, int8 = get_exporter("onnx"), get_exporter("onnx-int8")
    opts = ExportOptions(per_channel=False, io_dtype="uint8")
    assert unused_options(opts, [onnx]) == ["per_channel", "io_dtype"]
    assert unused_options(opts, [onnx, int8]) == ["io_dtype"]     # only the TFLite formats read io_dtype
    assert set(int8.option_values(opts)) == {*int8.options, *VERIFY_OPTIONS}
