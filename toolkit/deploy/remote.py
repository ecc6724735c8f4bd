"""Devices you own, reached over SSH: a deploy bundle benchmarked on the device from this machine.

    edgepack deploy MODEL --device ssh://user@host[:port] --out DIR
      = deploy --candidates-only (the bundle, here)
        -> push the bundle and edgepack's runtime code to the device
        -> a runtime-only Python environment there (made once per device and edgepack version, then reused: the
           device's python3 -m venv, and its pip installs the runtime extra's pins)
        -> `edgepack bench BUNDLE --json` there (golden vectors checked first) -> pull the JSON back
        -> deploy --select here, with the device's fingerprint recorded beside the pick

SSH is the system's OpenSSH client, nothing home-made: keys or an agent only (BatchMode, no password prompts), host
keys checked (StrictHostKeyChecking=yes: an unknown host is refused in one line saying how to trust it, never
accepted), connect and keep-alive timeouts; `--ssh-config FILE` passes an ssh_config (ssh -F) for keys, known_hosts,
jump hosts. The benchmark runs on the device in a process group that a watcher kills when the SSH session ends, so
an interrupt here, a timeout or a dropped connection leaves nothing running there.
"""
from __future__ import annotations

import hashlib
import io
import json
import re
import shlex
import subprocess
import tarfile
from dataclasses import dataclass
from pathlib import Path

from edgepack.toolkit.errors import EdgepackError, OptionError

DEVICE_ROOT = ".cache/edgepack/device"      # under the device user's $HOME
MIN_PYTHON = (3, 10)


class DeviceError(EdgepackError):
    """A device could not be reached or used; one line saying which and why."""


@dataclass(frozen=True)
class SshDevice:
    url: str
    host: str
    port: int = 22
    user: str | None = None

    @classmethod
    def parse(cls, url: str) -> "SshDevice":
        m = re.fullmatch(r"ssh://(?:([^@/:\s]+)@)?(\[[0-9a-fA-F:]+\]|[^@/:\s]+)(?::(\d+))?/?", url.strip())
        if not m:
            raise OptionError(f"--device expects ssh://[user@]host[:port], got {url!r}")
        port = int(m.group(3) or 22)
        if not 0 < port < 65536:
            raise OptionError(f"--device {url}: port {port} is out of range")
        return cls(url.strip(), m.group(2).strip("[]"), port, m.group(1))

    @property
    def target(self) -> str:
        return f"{self.user}@{self.host}" if self.user else self.host

    @property
    def name(self) -> str:
        return f"{self.target}:{self.port}"


def _fault(device: SshDevice, stderr: str, what: str) -> DeviceError:
    """ssh's own failures (exit 255) as one line: what went wrong and what to do."""
    err = stderr.strip()
    low = err.lower()
    if "host key verification failed" in low or "no " in low and "host key is known" in low:
        return DeviceError(f"{device.name}: its host key is not known here, and edgepack never accepts one silently; "
                           f"check the key's fingerprint with the device's owner, then trust it: "
                           f"ssh-keyscan -p {device.port} {device.host} >> ~/.ssh/known_hosts")
    if "remote host identification has changed" in low:
        return DeviceError(f"{device.name}: its host key CHANGED since it was trusted (another machine at that "
                           "address, or a reinstalled device); check it before removing the old key from known_hosts")
    if "permission denied" in low:
        return DeviceError(f"{device.name}: authentication failed (edgepack uses keys or an agent only, never "
                           f"passwords): {err.splitlines()[-1][:160]}")
    for pattern, why in (("connection refused", "connection refused"), ("timed out", "connection timed out"),
                         ("no route to host", "no route to host"), ("could not resolve", "unknown host name"),
                         ("network is unreachable", "network unreachable")):
        if pattern in low:
            return DeviceError(f"{device.name}: unreachable ({why}) while {what}")
    if any(p in low for p in ("closed by remote host", "connection reset", "broken pipe", "connection closed")):
        return DeviceError(f"{device.name}: the connection dropped while {what} (nothing is left running there; "
                           "the results written here so far are kept): run the same command again")
    tail = err.splitlines()[-1] if err else "no message"
    return DeviceError(f"{device.name}: ssh failed while {what}: {tail[:200]}")


class Connection:
    """Commands on one device through the system's ssh client."""

    def __init__(self, device: SshDevice, config: str | None = None, connect_timeout: float = 10.0):
        self.device, self.config, self.connect_timeout = device, config, connect_timeout
        if config is not None and not Path(config).is_file():
            raise OptionError(f"--ssh-config {config}: no such file")

    def argv(self, command: str) -> list[str]:
        opts = ["-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes", "-o", f"ConnectTimeout={int(self.connect_timeout)}",
                "-o", "ServerAliveInterval=5", "-o", "ServerAliveCountMax=3", "-p", str(self.device.port)]
        return ["ssh", *(["-F", str(self.config)] if self.config else []), *opts, self.device.target, command]

    def run(self, command: str, what: str, *, stdin: bytes | None = None, timeout: float = 600) -> str:
        """The command's stdout; a failure of ssh itself or of the command is one DeviceError line."""
        try:
            proc = subprocess.run(self.argv(command), input=stdin, capture_output=True, timeout=timeout)
        except FileNotFoundError:
            raise DeviceError("no ssh client here (install OpenSSH: apt-get install openssh-client)") from None
        except subprocess.TimeoutExpired:
            raise DeviceError(f"{self.device.name}: no answer within {timeout:.0f} s while {what}") from None
        out, err = proc.stdout.decode(errors="replace"), proc.stderr.decode(errors="replace")
        self._check(proc.returncode, err, what)
        return out

    def _check(self, rc: int, stderr: str, what: str, silent_is_drop: bool = False) -> None:
        """A failed remote command as one DeviceError line: ssh's own failure (exit 255; with `silent_is_drop`, also
        a guarded session that ended without a word), a full disk, or the command's last line of stderr."""
        if rc == 0:
            return
        if rc == 255 or (silent_is_drop and not stderr.strip()):
            raise _fault(self.device, stderr or "connection closed", what)
        if "no space left on device" in stderr.lower():
            raise DeviceError(f"{self.device.name}: the device's disk is full while {what}")
        line = next((ln for ln in reversed(stderr.strip().splitlines()) if ln.strip()), f"exit {rc}")
        raise DeviceError(f"{self.device.name}: {what} failed: {line[:240]}")

    def run_guarded(self, command: str, what: str, timeout: float = 7200) -> str:
        """A long command that must not outlive this session: it runs in a process group of its own on the device,
        and a watcher there kills that group as soon as the session's stdin closes, which happens when this side is
        interrupted, times out or the connection drops. Nothing is left running on the device."""
        import tempfile
        # a background job's stdin is /dev/null unless redirected: the watcher reads the session's stdin via fd 3
        wrapped = (f"exec 3<&0; setsid sh -c {shlex.quote(command)} </dev/null & p=$!; "
                   "(cat <&3 >/dev/null; kill -TERM -- -$p 2>/dev/null) & w=$!; "
                   "wait $p; rc=$?; kill $w 2>/dev/null; exit $rc")
        with tempfile.TemporaryFile() as out, tempfile.TemporaryFile() as err:
            proc = subprocess.Popen(self.argv(wrapped), stdin=subprocess.PIPE, stdout=out, stderr=err)
            try:
                rc = proc.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                proc.stdin.close()
                proc.terminate()
                proc.wait()
                raise DeviceError(f"{self.device.name}: no result within {timeout:.0f} s while {what} "
                                  "(stopped there too)") from None
            except BaseException:                       # Ctrl-C: close the session; the watcher stops the work there
                proc.stdin.close()
                proc.terminate()
                proc.wait()
                raise
            finally:
                if proc.stdin and not proc.stdin.closed:
                    proc.stdin.close()
            out.seek(0)
            err.seek(0)
            stdout, stderr = out.read().decode(errors="replace"), err.read().decode(errors="replace")
        self._check(rc, stderr, what, silent_is_drop=True)
        return stdout

    def put(self, files: dict[str, bytes | Path], remote_dir: str, what: str) -> None:
        """Files (name in the folder -> content or local path) into `remote_dir` (under the device user's $HOME) on
        the device, as one tar stream."""
        buf = io.BytesIO()
        with tarfile.open(fileobj=buf, mode="w:gz") as tar:
            for name, content in sorted(files.items()):
                data = content.read_bytes() if isinstance(content, Path) else content
                info = tarfile.TarInfo(name)
                info.size, info.mode = len(data), 0o644
                tar.addfile(info, io.BytesIO(data))
        self.run(f"mkdir -p {_at(remote_dir)} && tar -xzf - -C {_at(remote_dir)}", what, stdin=buf.getvalue())


def _at(rel: str) -> str:
    """A path under the device user's $HOME, quoted for the remote shell ($HOME expanded there)."""
    if not re.fullmatch(r"[A-Za-z0-9._/-]+", rel):
        raise ValueError(f"unsafe remote path {rel!r}")
    return f'"$HOME/{rel}"'


# ------------------------------------------------------------------------------------------ the device's environment
def probe(conn: Connection) -> dict:
    """The device's fingerprint: CPU, ISA flags or ARM features, OS, Python; refuses a Python older than 3.10."""
    script = ("import json, platform, sys\n"
              "flags = ''\n"
              "try:\n"
              "    txt = open('/proc/cpuinfo').read()\n"
              "    for key in ('flags', 'Features'):\n"
              "        for line in txt.splitlines():\n"
              "            if line.split(':')[0].strip() == key:\n"
              "                flags = line.split(':', 1)[1]; break\n"
              "        if flags: break\n"
              "    model = next((l.split(':', 1)[1].strip() for l in txt.splitlines() if l.split(':')[0].strip() in "
              "('model name', 'Model', 'Hardware')), platform.processor())\n"
              "except OSError:\n"
              "    model = platform.processor()\n"
              "print(json.dumps({'python': list(sys.version_info[:3]), 'machine': platform.machine(), "
              "'system': platform.system(), 'release': platform.release(), 'cpu': model, 'flags': flags.split(), "
              "'libc': list(platform.libc_ver())}))\n")
    out = conn.run(f"command -v python3 >/dev/null || {{ echo 'no python3 on the device' >&2; exit 3; }}; "
                   f"python3 -c {shlex.quote(script)}", "reading the device's fingerprint")
    info = json.loads(out.strip().splitlines()[-1])
    from edgepack.runtimes.machine import emulation
    info["emulated"] = emulation(info.get("machine", ""), info.get("flags"))
    if tuple(info["python"][:2]) < MIN_PYTHON:
        raise DeviceError(f"{conn.device.name}: its python3 is {'.'.join(map(str, info['python']))}; edgepack's runtime "
                          f"needs Python >= {'.'.join(map(str, MIN_PYTHON))} (install a newer python3 there)")
    return info


def runtime_requirements() -> list[str]:
    """The runtime extra's pinned requirements, markers kept (the device's pip evaluates them for its platform)."""
    from importlib.metadata import PackageNotFoundError, requires
    try:
        reqs = requires("edgepack") or []
    except PackageNotFoundError:
        raise DeviceError("edgepack is not installed here (pip install -e .), so its runtime pins are unknown") from None
    out = []
    for r in reqs:
        req, _, marker = r.partition(";")
        if "extra ==" in marker and ('"runtime"' in marker or "'runtime'" in marker):
            rest = re.sub(r"\s*(and\s+)?extra\s*==\s*[\"']runtime[\"']\s*(and\s+)?", " ", marker).strip()
            out.append(req.strip() + (f"; {rest}" if rest else ""))
    return out


def code_files() -> dict[str, Path]:
    """edgepack's own code for the device, in the installed layout (edgepack/<package>/...): what the runtime path
    imports, never torch or TensorFlow (published results stay here)."""
    import importlib
    import edgepack
    files = {f"edgepack/{f.name}": f for f in sorted(Path(edgepack.__file__).parent.glob("*.py"))}
    for pkg in ("toolkit", "runtimes", "exporters", "benchmarks"):
        root = Path(importlib.import_module(f"edgepack.{pkg}").__path__[0])
        for f in sorted(root.rglob("*")):
            if f.suffix in (".py", ".toml") and "__pycache__" not in f.parts and "results" not in f.parts:
                files[f"edgepack/{pkg}/{f.relative_to(root)}"] = f
    return files


# what a device's pip says when it cannot reach a package index (or the index lacks the pins)
UNREACHABLE_INDEX = ("no matching distribution found", "could not find a version", "failed to establish",
                     "temporary failure in name resolution", "network is unreachable", "connection refused")


def wheel_platforms(fingerprint: dict) -> list[str]:
    """The wheel platform tags a Linux device's pip accepts (manylinux up to its glibc), for `pip download`."""
    arch = fingerprint.get("machine", "")
    libc, version = (list(fingerprint.get("libc") or []) + ["", ""])[:2]
    if fingerprint.get("system") != "Linux" or libc != "glibc" or not re.fullmatch(r"2\.\d+", version or ""):
        raise DeviceError(f"the device ({fingerprint.get('system')}, {libc or 'unknown libc'} {version}) cannot reach "
                          "a package index, and a wheelhouse is built here for Linux glibc devices only: give it "
                          "access to PyPI (or a mirror: PIP_INDEX_URL)")
    minor = int(version.split(".")[1])
    return [f"manylinux_2_{m}_{arch}" for m in range(minor, 16, -1)] + [f"manylinux2014_{arch}", f"linux_{arch}"]


def build_wheelhouse(reqs: list[str], fingerprint: dict, folder: Path) -> dict[str, Path]:
    """The runtime pins and what they need, as wheels for the device's platform and Python (pip download here, with
    this machine's access to the index); {file name: path}."""
    import subprocess
    import sys
    from packaging.requirements import Requirement
    major, minor = fingerprint["python"][:2]
    env = {"python_version": f"{major}.{minor}", "python_full_version": ".".join(map(str, fingerprint["python"])),
           "sys_platform": "linux", "platform_system": "Linux", "platform_machine": fingerprint["machine"],
           "os_name": "posix", "implementation_name": "cpython", "platform_python_implementation": "CPython",
           "extra": ""}
    pins = [f"{r.name}{r.specifier}" for r in map(Requirement, reqs) if r.marker is None or r.marker.evaluate(env)]
    platforms = [a for tag in wheel_platforms(fingerprint) for a in ("--platform", tag)]
    proc = subprocess.run([sys.executable, "-m", "pip", "download", "-q", "--disable-pip-version-check",
                           "--only-binary=:all:", "--implementation", "cp", "--python-version", f"{major}.{minor}",
                           *platforms, "-d", str(folder), *pins], capture_output=True, text=True)
    if proc.returncode != 0:
        last = next((ln for ln in reversed(proc.stderr.strip().splitlines()) if ln.strip()), f"exit {proc.returncode}")
        raise DeviceError(f"no wheelhouse for the device's platform ({fingerprint['machine']}, Python {major}.{minor}): "
                          f"{last[:200]}")
    return {f.name: f for f in sorted(Path(folder).glob("*.whl"))}


def ensure_environment(conn: Connection, progress=print, fingerprint: dict | None = None) -> str:
    """A runtime-only environment on the device for this edgepack (its code and the runtime extra's pins), made once
    and reused; returns the remote command prefix that runs edgepack there. The device's own pip installs the pins
    where it reaches a package index; where it does not, a wheelhouse built here for its platform is copied over
    and installed from (no index needed there)."""
    import tempfile
    from edgepack import __version__
    reqs = runtime_requirements()
    code = code_files()
    digest = hashlib.sha256(json.dumps([reqs, sorted((k, hashlib.sha256(v.read_bytes()).hexdigest())
                                                     for k, v in code.items())]).encode()).hexdigest()[:12]
    home = f"{DEVICE_ROOT}/env-{__version__}-{digest}"
    at = lambda sub: _at(f"{home}/{sub}")  # noqa: E731
    run = f"PYTHONPATH={at('code')} {at('venv/bin/python')} -m edgepack"
    ready = conn.run(f"test -f {at('READY')} && echo yes || echo no", "looking for edgepack's environment").strip()
    if ready == "yes":
        progress(f"{conn.device.name}: reusing the runtime environment ~/{home}")
        return run
    progress(f"{conn.device.name}: making a runtime-only environment in ~/{home} (once per edgepack version)")
    conn.put(code, f"{home}/code", "copying edgepack's runtime code")
    pins = " ".join(shlex.quote(r) for r in reqs)
    make = f"rm -rf {at('venv')} && python3 -m venv {at('venv')} && {at('venv/bin/python')} -m pip install -q " \
           "--disable-pip-version-check"
    done = f"{run} --version >/dev/null && touch {at('READY')}"
    try:
        conn.run(f"{make} {pins} && {done}", "installing the runtime extra with the device's pip (python3 -m venv, "
                 "then pip install)", timeout=1800)
        return run
    except DeviceError as e:
        if not any(p in str(e).lower() for p in UNREACHABLE_INDEX):
            raise
        reason = str(e).split(": ")[-1]
    fingerprint = fingerprint or probe(conn)
    progress(f"{conn.device.name}: its pip reaches no package index ({reason[:120]}); building a wheelhouse here for "
             f"{fingerprint['machine']}, Python {'.'.join(map(str, fingerprint['python'][:2]))}")
    with tempfile.TemporaryDirectory(prefix="edgepack-wheels-") as tmp:
        wheels = build_wheelhouse(reqs, fingerprint, Path(tmp))
        progress(f"{conn.device.name}: copying {len(wheels)} wheels "
                 f"({sum(w.stat().st_size for w in wheels.values()):,} B)")
        conn.put(wheels, f"{home}/wheels", "copying the wheelhouse")
    conn.run(f"{make} --no-index --find-links {at('wheels')} {pins} && {done}",
             "installing the runtime extra from the wheelhouse", timeout=1800)
    return run


def _bench_there(conn: Connection, command: str, partial: str, result: str, what: str) -> None:
    """`command` (an `edgepack bench` there) with its JSON written to `partial`, then moved to `result`. A file that
    fails there (a runtime crash, say) is a row of that JSON with its reason, not a failed run: the JSON counts
    whenever the bench got through its files."""
    conn.run_guarded(f"{command} --json {partial}; rc=$?; if test -f {partial}; then mv {partial} {result}; exit 0; fi; "
                     "exit $rc", what)


def _read_back(conn: Connection, result: str, fingerprint: dict) -> dict:
    """A device's results document, with the device's URL and fingerprint in it."""
    doc = json.loads(conn.run(f"cat {result}", "reading the results back"))
    doc["device"] = {"url": conn.device.url, "fingerprint": fingerprint}
    return doc


# ------------------------------------------------------------------------------------------ a bundle on a device
def bench_bundle(conn: Connection, bundle_dir: Path, json_out: Path, threads: int = 1, runtimes=None,
                 progress=print, fingerprint: dict | None = None) -> dict:
    """Benchmark a deploy bundle on the device (golden vectors checked there first) and bring its JSON back to
    `json_out`, with the device's fingerprint in it. The bundle lands in a folder named by its content, so a second
    run on the same bundle pushes nothing again, and a finished measurement with the same settings is reused."""
    bundle_dir = Path(bundle_dir)
    fingerprint = fingerprint or probe(conn)
    run = ensure_environment(conn, progress, fingerprint)
    files = {str(f.relative_to(bundle_dir)): f for f in sorted(bundle_dir.rglob("*")) if f.is_file()}
    digest = hashlib.sha256(b"".join(hashlib.sha256(p.read_bytes()).digest() + k.encode()
                                     for k, p in sorted(files.items()))).hexdigest()[:16]
    remote = f"{DEVICE_ROOT}/bundles/{digest}"
    q = _at(remote)
    settings = f"--threads {int(threads)}" + (f" --runtime {shlex.quote(','.join(runtimes))}" if runtimes else "")
    name = f"device-{hashlib.sha256(settings.encode()).hexdigest()[:8]}.json"
    result, partial = _at(f"{remote}/{name}"), _at(f"{remote}/{name}.partial")
    # each file's rows, kept there as soon as it is measured (by this environment, with these settings): a run
    # after a dropped connection, or on a re-made bundle, measures only the files without rows
    rows_dir = f"{DEVICE_ROOT}/rows/{hashlib.sha256((run + settings).encode()).hexdigest()[:16]}"
    state = conn.run(f"test -f {_at(remote + '/COPIED')} && echo copied; test -f {result} && echo measured; "
                     f"ls {_at(rows_dir)} 2>/dev/null || true", "looking for the bundle on the device").split()
    from edgepack.benchmarks.golden import measurement_key, read_bundle
    here = read_bundle(bundle_dir)
    kept = sum(f"{measurement_key(here, e)}.json" in state for e in here["candidates"])
    if "copied" not in state:
        progress(f"{conn.device.name}: copying the bundle ({len(files)} files, "
                 f"{sum(p.stat().st_size for p in files.values()):,} B)")
        conn.put(files, remote, "copying the bundle")
        conn.run(f"touch {_at(remote + '/COPIED')}", "copying the bundle")
    if "measured" in state:
        progress(f"{conn.device.name}: this bundle was measured there with the same settings: its results are reused")
    else:
        candidates = here["candidates"]
        if kept:
            progress(f"{conn.device.name}: resuming: {kept} of {len(candidates)} candidate files were measured there "
                     f"before the last run stopped; measuring the {len(candidates) - kept} left")
        else:
            progress(f"{conn.device.name}: benchmarking {len(candidates)} candidate files (golden vectors first)")
        _bench_there(conn, f"{run} bench {q} {settings} --keep-rows {_at(rows_dir)}", partial, result,
                     "benchmarking the bundle on the device")
    doc = _read_back(conn, result, fingerprint)
    json_out.parent.mkdir(parents=True, exist_ok=True)
    from edgepack.toolkit.outputs import atomic_text
    atomic_text(json_out, json.dumps(doc, indent=2))
    return doc


# ------------------------------------------------------------------------------------------ files on a device
def files_data_set(models: list[Path], data: str | None, data_dir: str | None):
    """The data set `bench FILES --device` sends with the files: --data (and --data-dir) here, else the one the files'
    records name (they must agree). None: no data set (the device times the files on random input)."""
    from edgepack.toolkit.data import load_dataset
    from edgepack.toolkit.data.sources import recorded_folder
    if data == "synthetic":
        return None
    if data is not None:
        return load_dataset(data, data_dir, allow_fallback=False)
    named = {}
    for m in models:
        rec_file = Path(str(m) + ".json")
        if rec_file.is_file():
            d = json.loads(rec_file.read_text()).get("dataset") or {}
            if d.get("name"):
                named[(d["name"], recorded_folder(d))] = m
    if len(named) > 1:
        raise OptionError("the files' records name different data sets (" + ", ".join(sorted(n for n, _ in named)) +
                          "): bench them on a device one data set at a time, or pass --data")
    if not named:
        return None
    (name, folder), = named
    return load_dataset(name, folder, allow_fallback=False)


def bench_on_devices(models: list[str], devices: list[str], bench_args: list[str], data: str | None = None,
                     data_dir: str | None = None, json_out: str | None = None, ssh_config: str | None = None,
                     progress=print) -> dict:
    """`edgepack bench FILES --device URL [--device URL ...]`: the files (with their records) and the test set
    (gzipped IDX, hashed: the device needs no data folder) pushed to each device, benchmarked there at once in the
    runtime-only environment, the JSON pulled back with the device's fingerprint. `bench_args`: the bench options
    that travel (threads, runtimes, runs, preprocessing, task). Returns {device url: results document}."""
    import concurrent.futures
    import tempfile
    from edgepack.toolkit.data.sources import write_test_set
    paths = [Path(m) for m in models]
    missing = [str(p) for p in paths if not p.is_file()]
    if missing:
        raise OptionError(f"no such file: {', '.join(missing)}")
    if len({p.name for p in paths}) != len(paths):
        raise OptionError("two files share a name: bench them on a device in separate runs (or rename one)")
    conns = [Connection(SshDevice.parse(u), ssh_config) for u in devices]
    ds = files_data_set(paths, data, data_dir)
    with tempfile.TemporaryDirectory(prefix="edgepack-device-") as tmp:
        files: dict[str, bytes | Path] = {}
        for p in paths:
            files[f"files/{p.name}"] = p
            if Path(str(p) + ".json").is_file():
                files[f"files/{p.name}.json"] = Path(str(p) + ".json")
            for extra in sorted(p.parent.glob(p.name + ".data")) + sorted(p.parent.glob(p.stem + ".onnx_data")):
                files[f"files/{extra.name}"] = extra      # an .onnx's external weights travel with it
        meta = None
        if ds is not None:
            meta = write_test_set(ds, Path(tmp) / "test-set")
            for f in sorted((Path(tmp) / "test-set").iterdir()):
                files[f"test-set/{f.name}"] = f.read_bytes()
        digest = hashlib.sha256(b"".join(hashlib.sha256(v.read_bytes() if isinstance(v, Path) else v).digest()
                                         + k.encode() for k, v in sorted(files.items()))).hexdigest()[:16]
        size = sum(len(v) if isinstance(v, bytes) else v.stat().st_size for v in files.values())
        say_data = (f"{ds.name} test set, {len(ds.y_test):,} items, sha256 {meta['test_sha256'][:12]}" if ds is not None
                    else "no data set: random input, no accuracy")

        def one(conn: Connection) -> dict:
            say = lambda m: progress(m if m.startswith(conn.device.name) else f"[{conn.device.name}] {m}")  # noqa: E731
            fingerprint = probe(conn)
            run = ensure_environment(conn, say, fingerprint)
            remote = f"{DEVICE_ROOT}/files/{digest}"
            args = " ".join(shlex.quote(a) for a in bench_args)
            data_flags = f" --data-dir {_at(remote + '/test-set')}" if ds is not None else " --data synthetic"
            name = f"bench-{hashlib.sha256((run + args).encode()).hexdigest()[:8]}.json"
            result, partial = _at(f"{remote}/{name}"), _at(f"{remote}/{name}.partial")
            state = conn.run(f"test -f {_at(remote + '/COPIED')} && echo copied; test -f {result} && echo measured || true",
                             "looking for the files on the device").split()
            if "copied" not in state:
                say(f"{conn.device.name}: copying {len(paths)} files and the {say_data} ({size:,} B)")
                conn.put(files, remote, "copying the files")
                conn.run(f"touch {_at(remote + '/COPIED')}", "copying the files")
            if "measured" in state:
                say(f"{conn.device.name}: these files were measured there with the same settings: their results are reused")
            else:
                listed = " ".join(_at(f"{remote}/files/{p.name}") for p in paths)
                say(f"{conn.device.name}: benchmarking {len(paths)} files ({say_data})")
                _bench_there(conn, f"{run} bench {listed}{data_flags} {args}", partial, result, "benchmarking the files")
            doc = _read_back(conn, result, fingerprint)
            if fingerprint.get("emulated"):
                say(f"note: EMULATED ({fingerprint['emulated']}): its timings are the emulator's, not a device's")
            if meta is not None:
                doc["test_set_sent"] = {k: meta[k] for k in ("name", "source", "test_sha256")}
            return doc

        docs, errors = {}, []
        with concurrent.futures.ThreadPoolExecutor(max_workers=len(conns)) as pool:
            futures = {pool.submit(one, c): c for c in conns}
            for f in concurrent.futures.as_completed(futures):
                try:
                    docs[futures[f].device.url] = f.result()
                except EdgepackError as e:
                    errors.append(str(e))
                    progress(f"edgepack: error: {e}")
    if json_out:
        from edgepack.toolkit.outputs import atomic_text
        written = []
        for url, doc in docs.items():
            out = Path(json_out)
            if len(conns) > 1:               # one file per device, as `report merge` takes them
                tag = re.sub(r"[^A-Za-z0-9_.-]+", "_", SshDevice.parse(url).name)
                out = out.with_name(f"{out.stem}.{tag}{out.suffix or '.json'}")
            atomic_text(out, json.dumps(doc, indent=2))
            written.append(str(out))
        if len(written) > 1:                 # several devices end in one report, side by side
            from edgepack.toolkit.deploy.fleet import merge
            merge(written, Path(json_out).with_name(f"{Path(json_out).stem}-fleet"), progress=progress)
    if errors:
        raise DeviceError(errors[0] if len(errors) == 1 else f"{len(errors)} devices failed: " + "; ".join(errors))
    return docs


def fingerprint_change(previous: dict | None, now: dict) -> str | None:
    """What changed in a device's fingerprint since the last run (None: nothing, or no earlier run)."""
    if not previous:
        return None
    keys = ("cpu", "machine", "system", "release", "python", "flags", "emulated")
    changed = [k for k in keys if previous.get(k) != now.get(k)]
    return None if not changed else "changed since the last run: " + ", ".join(changed)


# what a device's runtime-only environment runs (the runtime extra's onnxruntime and ai-edge-litert): the formats a
# bundle for it holds unless --runtime names others (a .pte or OpenVINO candidate would only fail there)
DEVICE_RUNTIMES = ("onnxruntime", "litert")


def deploy_on_devices(model, out, devices: list[str], ssh_config: str | None = None, budgets=None, threads: int = 1,
                      runtimes=None, progress=print, **deploy_kw) -> dict:
    """`edgepack deploy MODEL --device URL [--device URL ...]`: the bundle made here once, measured on every device
    at once, a pick per device (OUT/<device>/), and with several devices their results side by side (OUT/fleet/).
    `runtimes`: those the devices measure the candidates in (default DEVICE_RUNTIMES)."""
    import concurrent.futures
    import time
    from edgepack.toolkit.deploy import deploy
    from edgepack.toolkit.deploy.device import select_for_device
    parsed = [SshDevice.parse(u) for u in devices]
    conns = [Connection(d, ssh_config) for d in parsed]      # option errors before any work
    runtimes = list(runtimes or DEVICE_RUNTIMES)
    out = Path(out)
    t0 = time.perf_counter()
    fingerprints = {c.device.url: probe(c) for c in conns}    # an unreachable device fails in seconds, before the exports
    deploy(model, out / "bundle", budgets=budgets, threads=threads, candidates_only=True, runtimes=runtimes,
           progress=progress, by_hand=False, **deploy_kw)
    times = {"bundle_s": round(time.perf_counter() - t0, 1)}

    def one(conn: Connection) -> dict:
        folder = out / re.sub(r"[^A-Za-z0-9_.-]+", "_", conn.device.name)
        say = lambda m: progress(m if m.startswith(conn.device.name) or "\n" in m else f"[{conn.device.name}] {m}")  # noqa: E731
        t = time.perf_counter()
        previous = None
        if (folder / "device.json").is_file():
            previous = (json.loads((folder / "device.json").read_text()).get("device") or {}).get("fingerprint")
        doc = bench_bundle(conn, out / "bundle", folder / "device.json", threads, runtimes, say,
                           fingerprints[conn.device.url])
        change = fingerprint_change(previous, doc["device"]["fingerprint"])
        if change:
            say(f"note: the device's fingerprint {change}")
        if doc["device"]["fingerprint"].get("emulated"):
            say(f"note: EMULATED ({doc['device']['fingerprint']['emulated']}): accuracies are the emulated runtime's, "
                "timings are the emulator's, not a device's")
        measured = round(time.perf_counter() - t, 1)
        picked = select_for_device(out / "bundle", folder / "device.json", folder, budgets, progress=say)
        return {"device": conn.device.url, "folder": str(folder), "bench_s": measured, "fingerprint_change": change,
                "picked": picked["best"].label, "runtime": picked["best"].runtime}

    results, errors = [], []
    with concurrent.futures.ThreadPoolExecutor(max_workers=len(conns)) as pool:
        futures = {pool.submit(one, c): c for c in conns}
        for f in concurrent.futures.as_completed(futures):
            try:
                results.append(f.result())
            except EdgepackError as e:
                errors.append(str(e))
                progress(f"edgepack: error: {e}")
    if len(results) > 1:
        from edgepack.toolkit.deploy.fleet import merge
        merge([str(Path(r["folder"]) / "device.json") for r in results], out / "fleet", budgets, progress=progress)
    summary = {**times, "devices": results, "errors": errors}
    from edgepack.toolkit.outputs import atomic_text
    atomic_text(out / "devices.json", json.dumps(summary, indent=2))
    if errors:
        raise DeviceError(errors[0] if len(errors) == 1 else f"{len(errors)} devices failed: " + "; ".join(errors))
    return summary
