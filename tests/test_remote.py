"""Devices over SSH: `edgepack deploy MODEL --device ssh://...` against an OpenSSH server started by the test on a free
loopback port (its own host key, user key and HOME), serving this machine as the device; and the faults a real device
gives, each one line, in seconds, with nothing earlier lost."""
import json
import re
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.conftest import MNIST_DIR, ROOT
from tests.sshd import SSHD, LoopbackDevice

from edgepack.toolkit.deploy.remote import DeviceError, SshDevice, _fault
from edgepack.toolkit.errors import OptionError


@pytest.mark.parametrize("url,host,port,user", [("ssh://pi@raspberrypi.local", "raspberrypi.local", 22, "pi"),
                                                ("ssh://10.0.0.5:2222", "10.0.0.5", 2222, None),
                                                ("ssh://me@[::1]:22", "::1", 22, "me")])
def test_device_urls(url, host, port, user):
    d = SshDevice.parse(url)
    assert (d.host, d.port, d.user) == (host, port, user)


@pytest.mark.parametrize("url", ["pi@host", "http://host", "ssh://", "ssh://host:99999", "ssh://a b"])
def test_bad_device_urls_are_one_line(url):
    with pytest.raises(OptionError, match="ssh://"):
        SshDevice.parse(url)


@pytest.mark.parametrize("stderr,says", [
    ("Host key verification failed.", "ssh-keyscan -p 2222 pi.local >> ~/.ssh/known_hosts"),
    ("No ED25519 host key is known for [pi.local]:2222 and you have requested strict checking.", "never accepts"),
    ("@ WARNING: REMOTE HOST IDENTIFICATION HAS CHANGED! @", "CHANGED"),
    ("pi@pi.local: Permission denied (publickey).", "authentication failed"),
    ("ssh: connect to host pi.local port 2222: Connection refused", "unreachable (connection refused)"),
    ("ssh: connect to host pi.local port 2222: Connection timed out", "unreachable (connection timed out)"),
    ("Connection to pi.local closed by remote host.", "the connection dropped"),
])
def test_ssh_failures_are_named(stderr, says):
    e = _fault(SshDevice.parse("ssh://pi@pi.local:2222"), stderr, "benchmarking")
    assert isinstance(e, DeviceError) and says in str(e) and "\n" not in str(e)


# ------------------------------------------------------------------------------------------ a real (loopback) device
@pytest.fixture(scope="module")
def device(tmp_path_factory):
    if not os.path.exists(SSHD):
        if os.environ.get("EDGEPACK_REQUIRE_DATA"):
            pytest.fail("sshd is missing (apt-get install openssh-server; `make test` installs it)")
        pytest.skip("sshd is missing (apt-get install openssh-server)")
    d = LoopbackDevice(tmp_path_factory.mktemp("device")).start()
    yield d
    d.stop()


def _cli(*args, timeout=900):
    return subprocess.run([sys.executable, "-m", "edgepack", *map(str, args)], capture_output=True, text=True,
                          timeout=timeout, env={**os.environ, "PYTHONPATH": str(ROOT)})


@pytest.mark.slow
def test_deploy_on_a_device_over_ssh_then_again_reusing_its_environment(device, trained, tmp_path):
    out = tmp_path / "dep"
    args = ("deploy", trained["keras"], "--device", device.url, "--ssh-config", device.config, "--no-mixed",
            "--runtime", "litert", "--max-accuracy-drop", "1", "--data", "mnist", "--data-dir", MNIST_DIR, "--out", out)
    r = _cli(*args)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "making a runtime-only environment" in r.stdout
    folder = out / f"{device.user}_127.0.0.1_{device.port}"
    picked = json.loads((folder / "deploy.json").read_text())
    assert picked["picked"]["file"].endswith(".tflite") and list(folder.glob("best.tflite"))
    dev = json.loads((folder / "device.json").read_text())
    fp = dev["device"]["fingerprint"]
    assert fp["machine"] == os.uname().machine and tuple(fp["python"][:2]) >= (3, 10) and fp["flags"]
    # every file's golden vectors were checked on the device before its timing counted
    assert dev["results"] and all((x.get("golden") or {}).get("passed") for x in dev["results"])
    # the environment lives in the device user's HOME, outside the bundle; edgepack's code there imports no framework
    envs = list((device.home / ".cache" / "edgepack" / "device").glob("env-*"))
    assert len(envs) == 1 and (envs[0] / "READY").is_file()
    summary = json.loads((out / "devices.json").read_text())
    assert summary["devices"][0]["bench_s"] > 0 and summary["bundle_s"] > 0 and not summary["errors"]
    r2 = _cli(*args)
    assert r2.returncode == 0, r2.stderr[-3000:]
    assert "reusing the runtime environment" in r2.stdout and "making a runtime-only" not in r2.stdout


def _refused(device, model, out, config, say, seconds=30):
    """deploy --device fails in one line naming `say`, in seconds (the device is asked before any export), and an
    earlier result in the output folder stays."""
    out.mkdir(parents=True)
    (out / "earlier.md").write_text("an earlier result\n")
    t = time.perf_counter()
    r = _cli("deploy", model, "--device", device.url, "--ssh-config", config, "--out", out)
    took = time.perf_counter() - t
    assert r.returncode != 0 and say in r.stderr, r.stderr[-2000:]
    lines = [ln for ln in r.stderr.splitlines() if ln.startswith("edgepack: error")]
    assert len(lines) == 1 and "Traceback" not in r.stderr
    assert took < seconds
    assert (out / "earlier.md").read_text() == "an earlier result\n" and not (out / "bundle").exists()


@pytest.fixture()
def model_file(trained, tmp_path):
    shutil.copy(trained["keras"], tmp_path / "model.keras")
    shutil.copy(str(trained["keras"]) + ".json", tmp_path / "model.keras.json")
    return tmp_path / "model.keras"


@pytest.mark.slow
def test_an_unknown_host_key_is_refused_and_says_how_to_trust_it(device, model_file, tmp_path):
    empty = tmp_path / "known_hosts"
    empty.write_text("")
    config = device.write_client_config(empty)
    try:
        _refused(device, model_file, tmp_path / "dep", config, "ssh-keyscan -p")
        assert empty.read_text() == ""                   # nothing accepted, nothing written
    finally:
        device.write_client_config(device.root / "known_hosts")


@pytest.mark.slow
def test_authentication_failure_and_an_unreachable_device(device, model_file, tmp_path):
    other = tmp_path / "other-key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    config = device.write_client_config(device.root / "known_hosts", key=other)
    try:
        _refused(device, model_file, tmp_path / "a", config, "authentication failed")
    finally:
        device.write_client_config(device.root / "known_hosts")
    from tests.sshd import free_port
    closed = SshDevice.parse(f"ssh://{device.user}@127.0.0.1:{free_port()}")      # nothing listens there
    _refused(closed, model_file, tmp_path / "b", device.config, "unreachable (connection refused)")


def test_a_full_disk_on_the_device_is_one_line(device):
    """The device's own shell fails to write with ENOSPC (/dev/full: what a full disk answers), through real ssh."""
    from edgepack.toolkit.deploy.remote import Connection
    conn = Connection(SshDevice.parse(device.url), str(device.config))
    with pytest.raises(DeviceError) as e:
        conn.run("head -c 4096 /dev/zero > /dev/full", "copying the bundle")
    assert str(e.value) == f"{device.user}@127.0.0.1:{device.port}: the device's disk is full while copying the bundle"


@pytest.mark.slow
def test_a_device_without_python_310_is_one_line(tmp_path_factory, model_file, tmp_path):
    if not os.path.exists(SSHD):
        pytest.skip("sshd is missing")
    fake = tmp_path_factory.mktemp("oldpython")
    (fake / "python3").write_text("#!/bin/sh\necho '{\"python\": [3, 8, 10], \"machine\": \"aarch64\", \"system\": "
                                  "\"Linux\", \"release\": \"5.10\", \"cpu\": \"old\", \"flags\": []}'\n")
    (fake / "python3").chmod(0o755)
    old = LoopbackDevice(tmp_path_factory.mktemp("olddevice"), path=f"{fake}:/usr/bin:/bin").start()
    try:
        _refused(old, model_file, tmp_path / "dep", old.config, "needs Python >= 3.10")
    finally:
        old.stop()


def _bench_running(device) -> list[str]:
    r = subprocess.run(["pgrep", "-f", f"{device.home}/.cache/edgepack/device/env-.* -m edgepack bench"],
                       capture_output=True, text=True)
    return r.stdout.split()


def _measured_on_device(device) -> list:
    """The rows a bench on the device keeps per measured file (what a later run resumes from)."""
    return list((device.home / ".cache/edgepack/device/rows").glob("*/*.json"))


@pytest.mark.slow
def test_a_dropped_connection_is_one_line_leaves_nothing_running_and_a_rerun_resumes(device, trained, tmp_path):
    out = tmp_path / "dep"
    args = [sys.executable, "-m", "edgepack", "deploy", str(trained["keras"]), "--device", device.url, "--ssh-config",
            str(device.config), "--no-mixed", "--runtime", "litert,onnxruntime", "--data", "mnist", "--data-dir",
            str(MNIST_DIR), "--out", str(out)]
    before = set(_measured_on_device(device))           # rows other tests kept (other settings)
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    deadline = time.time() + 600
    while not _bench_running(device) and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    assert _bench_running(device), "the benchmark never started on the device"
    while not set(_measured_on_device(device)) - before and time.time() < deadline and proc.poll() is None:
        time.sleep(0.1)                                  # at least one file measured there before the drop
    sessions = subprocess.run(["pgrep", "-P", str(device.proc.pid)], capture_output=True, text=True).stdout.split()
    assert sessions
    subprocess.run(["kill", "-9", *sessions])            # the device's sshd drops the session mid-benchmark
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode != 0 and "connection dropped" in stderr, stderr[-2000:]
    assert len([ln for ln in stderr.splitlines() if ln.startswith("edgepack: error")]) == 1
    for _ in range(50):                                  # the watcher on the device stopped the benchmark
        if not _bench_running(device):
            break
        time.sleep(0.2)
    assert not _bench_running(device)
    assert (out / "bundle" / "bundle.json").is_file()    # made here, kept
    kept = len(set(_measured_on_device(device)) - before)
    assert kept >= 1
    r = subprocess.run(args, capture_output=True, text=True, timeout=900, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert r.returncode == 0, r.stderr[-2000:]                          # the same command again: a pick
    assert "reusing the runtime environment" in r.stdout
    said = re.search(r"resuming: (\d+) of (\d+) candidate files were measured there", r.stdout)
    assert said and int(said.group(1)) == kept < int(said.group(2)), r.stdout[-2000:]    # only the rest measured
    result = json.loads(next((out / f"{device.user}_127.0.0.1_{device.port}").glob("device.json")).read_text())
    assert result["resumed_files"] == kept and len(set(_measured_on_device(device)) - before) == int(said.group(2))
    assert list((out / f"{device.user}_127.0.0.1_{device.port}").glob("best.*"))


@pytest.mark.slow
def test_bench_files_on_a_device_sends_the_test_set_and_measures_what_this_machine_does(device, trained, mnist,
                                                                                        tmp_path):
    from edgepack.exporters.api import export_checkpoint
    from edgepack.benchmarks.harness import BenchSettings, benchmark
    results = export_checkpoint(trained["keras"], ["onnx", "tflite-int8"], tmp_path / "files", mnist, None,
                                verbose=False)
    files = [r.path for r in results]
    assert all(r.ok for r in results)
    out = tmp_path / "device.json"
    args = ["bench", *files, "--device", device.url, "--ssh-config", device.config, "--runs", "5", "--min-seconds",
            "0", "--data", "mnist", "--data-dir", MNIST_DIR, "--json", out]
    r = _cli(*args)
    assert r.returncode == 0, r.stderr[-2000:]
    assert "test set, 10,000 items" in r.stderr and device.url in r.stdout          # sent, and the device's table
    doc = json.loads(out.read_text())
    sent = doc["test_set_sent"]["test_sha256"]
    assert sent == mnist.test_sha256() and doc["device"]["fingerprint"]["cpu"]
    here = {Path(x.model).name: x for x in benchmark(files, "mnist", str(MNIST_DIR),
                                                     BenchSettings(runs=5, min_seconds=0), progress=lambda m: None)}
    for row in doc["results"]:                       # the device read the set it was sent, whole, and no other
        assert row["ok"] and row["data"]["test_sha256"] == sent and not row["data_warning"], row
        assert row["test_images"] == 10_000 and row["accuracy"] == here[Path(row["model"]).name].accuracy
    again = _cli(*args)                              # the same files and settings: nothing sent or measured again
    assert again.returncode == 0 and "their results are reused" in again.stderr, again.stderr[-2000:]
    bad = _cli("bench", files[0], "--device", device.url, "--ssh-config", device.config, "--csv", tmp_path / "x.csv")
    assert bad.returncode != 0 and bad.stderr.count("edgepack: error") == 1 and "Traceback" not in bad.stderr


@pytest.mark.slow
def test_a_device_without_a_package_index_gets_a_wheelhouse_built_here(tmp_path_factory, trained, mnist_small,
                                                                       tmp_path):
    """The device's pip reaches no index (an unreachable PIP_INDEX_URL there): the runtime pins are downloaded here
    for its platform and Python, copied over and installed with --no-index; the files then run there."""
    from edgepack.exporters.api import export_checkpoint
    if not os.path.exists(SSHD):
        pytest.skip("sshd is missing")
    offline = LoopbackDevice(tmp_path_factory.mktemp("offline"),
                             env="PIP_INDEX_URL=http://127.0.0.1:9/simple PIP_RETRIES=0 PIP_TIMEOUT=2").start()
    try:
        (res,) = export_checkpoint(trained["keras"], ["tflite-int8"], tmp_path, mnist_small, None, verbose=False)
        r = _cli("bench", res.path, "--device", offline.url, "--ssh-config", offline.config, "--data", "synthetic",
                 "--runs", "3", "--min-seconds", "0", "--json", tmp_path / "d.json")
        assert r.returncode == 0, r.stderr[-2000:]
        assert "its pip reaches no package index" in r.stderr and "building a wheelhouse here for x86_64" in r.stderr
        wheels = list((offline.home / ".cache/edgepack/device").glob("env-*/wheels/*.whl"))
        assert any(w.name.startswith("onnxruntime-") for w in wheels) and any(w.name.startswith("ai_edge_litert-")
                                                                             for w in wheels)
        (row,) = json.loads((tmp_path / "d.json").read_text())["results"]
        assert row["ok"] and row["runtime"] == "litert" and row["latency_ms"]["p50"] > 0
    finally:
        offline.stop()


@pytest.mark.slow
def test_two_devices_at_once_end_in_one_merged_report(device, trained, tmp_path_factory, tmp_path):
    second = LoopbackDevice(tmp_path_factory.mktemp("second-device")).start()
    try:
        both = tmp_path / "ssh_config"                   # one ssh_config for both: two host keys for one address
        (tmp_path / "known_hosts").write_text(device.known_hosts_line + second.known_hosts_line)
        both.write_text(f"Host 127.0.0.1\n  IdentityFile {device.root / 'user'}\n  IdentityFile {second.root / 'user'}\n"
                        f"  IdentitiesOnly yes\n  UserKnownHostsFile {tmp_path / 'known_hosts'}\n"
                        "  GlobalKnownHostsFile /dev/null\n  LogLevel ERROR\n")
        out = tmp_path / "fleet-dep"
        r = _cli("deploy", trained["keras"], "--device", device.url, "--device", second.url, "--ssh-config", both,
                 "--no-mixed", "--runtime", "litert", "--data", "mnist", "--data-dir", MNIST_DIR, "--out", out)
        assert r.returncode == 0, r.stderr[-3000:]
        summary = json.loads((out / "devices.json").read_text())
        assert sorted(d["device"] for d in summary["devices"]) == sorted([device.url, second.url])
        fleet = (out / "fleet" / "fleet.md").read_text()
        assert fleet.count("pick") >= 2 and (out / "fleet" / "fleet.json").is_file()
        for d in (device, second):
            assert list((out / f"{d.user}_127.0.0.1_{d.port}").glob("best.tflite"))
        # files measured on both at once, without a deploy: one JSON per device and one report side by side
        f = next((out / "bundle").glob("candidates/tflite-int8/*.tflite"))
        b = _cli("bench", f, "--device", device.url, "--device", second.url, "--ssh-config", both, "--runs", "5",
                 "--min-seconds", "0", "--data", "mnist", "--data-dir", MNIST_DIR, "--json", tmp_path / "files.json")
        assert b.returncode == 0, b.stderr[-3000:]
        per_device = sorted(tmp_path.glob("files.*.json"))
        assert len(per_device) == 2 and all(json.loads(x.read_text())["results"][0]["ok"] for x in per_device)
        assert (tmp_path / "files-fleet" / "fleet.md").read_text().count("pick") >= 2
    finally:
        second.stop()


def test_an_emulated_device_is_recorded_and_its_timings_are_never_presented_as_the_devices(tmp_path):
    """A qemu-user arm64 userland reports aarch64 while /proc/cpuinfo describes the x86 host: recorded as emulated in
    the fingerprint and the machine record, said under the bench table and in the report, and a change of it said."""
    import io

    from edgepack.benchmarks.report import print_table, write_markdown
    from edgepack.runtimes.machine import emulation, machine_record
    from edgepack.toolkit.deploy.remote import fingerprint_change
    assert emulation("aarch64", ["fp", "asimd", "sse2", "avx2"]) == "qemu-user: an aarch64 userland on an x86 CPU"
    assert emulation("aarch64", ["fp", "asimd", "asimddp"]) is None             # a real Pi / Graviton
    assert emulation("x86_64", ["sse2", "avx2"]) is None
    assert machine_record()["emulated"] is None                                 # this machine runs natively
    from edgepack.benchmarks.harness import BenchResult
    row = BenchResult("m.tflite", "tflite", "litert", 1, latency_ms={"p50": 1.0, "p90": 1.1, "min": 0.9, "p99": 1.2,
                                                                      "mean": 1.0, "std": 0.1, "runs": 5},
                      size_bytes=10, machine={**machine_record(), "arch": "aarch64",
                                              "emulated": emulation("aarch64", ["avx2"])})
    out = io.StringIO()
    print_table([row], file=out)
    assert "EMULATED (qemu-user" in out.getvalue() and "not a device's" in out.getvalue()
    from edgepack.benchmarks.report import write_json
    from edgepack.toolkit.deploy.fleet import load_device
    write_json([row], tmp_path / "arm.json")                      # the fleet report names it as what it is
    assert load_device(tmp_path / "arm.json").label.startswith("aarch64 EMULATED on ")
    write_markdown([row], tmp_path / "report.md", [], "edgepack bench m.tflite")
    assert "**EMULATED** (qemu-user: an aarch64 userland on an x86 CPU)" in (tmp_path / "report.md").read_text()
    was = {"cpu": "AMD EPYC", "machine": "aarch64", "flags": ["asimd"], "emulated": None}
    assert fingerprint_change(was, {**was, "emulated": "qemu-user: an aarch64 userland on an x86 CPU"}) == \
        "changed since the last run: emulated"


def test_wheelhouse_platforms_follow_the_devices_glibc_and_other_systems_are_one_line():
    from edgepack.toolkit.deploy.remote import wheel_platforms
    pi = {"system": "Linux", "machine": "aarch64", "libc": ["glibc", "2.36"]}      # Raspberry Pi OS bookworm
    tags = wheel_platforms(pi)
    assert tags[0] == "manylinux_2_36_aarch64" and "manylinux_2_17_aarch64" in tags and "manylinux_2_37_aarch64" not in tags
    assert "manylinux2014_aarch64" in tags and all(t.endswith("_aarch64") for t in tags)
    with pytest.raises(DeviceError) as e:                                          # musl (Alpine), or not Linux
        wheel_platforms({"system": "Linux", "machine": "x86_64", "libc": ["", ""]})
    assert "\n" not in str(e.value) and "PIP_INDEX_URL" in str(e.value)


def test_a_changed_fingerprint_is_said():
    from edgepack.toolkit.deploy.remote import fingerprint_change
    was = {"cpu": "Cortex-A72", "machine": "aarch64", "system": "Linux", "release": "6.1", "python": [3, 11, 2],
           "flags": ["fp", "asimd"]}
    assert fingerprint_change(None, was) is None and fingerprint_change(was, dict(was)) is None
    now = {**was, "release": "6.6", "flags": ["fp", "asimd", "asimddp"]}
    assert fingerprint_change(was, now) == "changed since the last run: release, flags"


def test_a_device_bundle_holds_the_formats_its_environment_runs(monkeypatch, tmp_path):
    """The device's environment has the runtime extra (ONNX Runtime, LiteRT): without --runtime the bundle is made for
    those, so a PyTorch source's .pte candidates (ExecuTorch needs torch) never reach a device only to fail there."""
    import edgepack.toolkit.deploy as deploy_pkg
    from edgepack.toolkit.deploy import remote
    seen = []

    class Stop(Exception):
        pass

    def fake_deploy(model, out, **kw):
        seen.append(kw["runtimes"])
        raise Stop
    monkeypatch.setattr(remote, "probe", lambda conn: {"python": [3, 11, 2]})
    monkeypatch.setattr(deploy_pkg, "deploy", fake_deploy)
    for asked, made in ((None, ["onnxruntime", "litert"]), (["litert"], ["litert"])):
        with pytest.raises(Stop):
            remote.deploy_on_devices(tmp_path / "m.pt", tmp_path / "out", ["ssh://pi@10.0.0.2"], runtimes=asked,
                                     progress=lambda m: None)
        assert seen[-1] == made
    from edgepack.runtimes import all_runtimes
    assert set(remote.DEVICE_RUNTIMES) <= set(all_runtimes())
