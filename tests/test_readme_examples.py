"""The README's own examples, read from the README and run in order on real MNIST, as a newcomer would: every one exits
0 (the `bench` example once failed on the files the `export` example had just written).

`edgepack demo` runs in tests/test_wheel.py, from the built wheel. `report merge` needs two devices' results: here two
copies of the `bench` example's JSON."""
import os
import shlex
import shutil
import subprocess
import sys

from tests.conftest import MNIST_DIR, ROOT, SHARED_DATA

COVERED_ELSEWHERE = ("edgepack demo", "edgepack run examples/mnist_tflite.toml")


def readme_commands() -> list[str]:
    """The walk's commands, in order: the first bash block of the README's five-minute walk."""
    text = (ROOT / "README.md").read_text()
    section = text[text.index("## A five-minute walk"):]
    block = section[section.index("```bash") + len("```bash"):section.index("```", section.index("```bash") + 3)]
    return [line.strip() for line in block.splitlines() if line.strip().startswith("edgepack ")]


def readme_python() -> str:
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Python API"):]
    return block[block.index("```python") + len("```python"):block.index("```", block.index("```python") + 3)]


def test_the_readme_examples_run_in_order(tmp_path):
    cmds = readme_commands()
    assert any(c.startswith("edgepack bench") for c in cmds) and any(c.startswith("edgepack deploy") for c in cmds)
    # the data folder is named once, for `train` (as $EDGEPACK_DATA); every later step finds the data through the
    # records, as a user's shell without that variable would have to
    env = {k: v for k, v in os.environ.items() if k != "EDGEPACK_DATA"} | {"PYTHONPATH": str(ROOT)}
    ran = []
    for cmd in cmds:
        if cmd.startswith(COVERED_ELSEWHERE):
            continue
        if cmd.startswith("edgepack report merge"):
            for device in shlex.split(cmd)[3:5]:                       # two devices' results: the bench example's
                shutil.copyfile(tmp_path / "r.json", tmp_path / device)
        args = shlex.split(cmd)[1:]
        r = subprocess.run([sys.executable, "-m", "edgepack.toolkit.cli", *args], capture_output=True, text=True, timeout=1200,
                           cwd=tmp_path, env=env | ({"EDGEPACK_DATA": str(SHARED_DATA)} if args[0] == "train" else {}))
        assert r.returncode == 0, f"{cmd}\n{r.stderr[-3000:]}"
        ran.append(args[0])
    assert ran == ["models", "train", "compress", "export", "bench", "deploy", "report"], ran
    assert (tmp_path / "deploy" / "deploy.md").is_file() and (tmp_path / "fleet" / "fleet.md").is_file()


def test_the_readme_python_api_example_runs(tmp_path):
    code = readme_python().replace('"../shared/data/mnist"', repr(str(MNIST_DIR)))
    assert "export_model" in code and "benchmark(" in code
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=1200, cwd=tmp_path,
                       env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-3000:]
    assert (tmp_path / "exports-api" / "model.int8.tflite").is_file()
