"""Two devices at once through `edgepack deploy --device`: this machine over a loopback OpenSSH server, and an arm64
Debian userland under qemu-user emulation with its own sshd (inside the userland) on another loopback port. The same
command a Raspberry Pi owner runs, against a real aarch64 kernel class, with the arm64 timings flagged as emulated.

    python tools/aarch64_device.py OUT MODEL DATA_DIR        (as root: chroot, mounts; `make aarch64-device-check`)

Env: ROOTFS (default .arm64-rootfs; built with debootstrap if missing, with openssh-server). Writes OUT/run.log,
OUT/deploy/ (the bundle, a pick per device, the fleet report) and OUT/summary.json (the time each step took).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.sshd import LoopbackDevice, free_port, wait_listening  # noqa: E402 - the test suite's loopback device


def sh(*cmd, **kw):
    return subprocess.run([str(c) for c in cmd], check=True, **kw)


def userland(rootfs: Path) -> None:
    """The arm64 bookworm userland with python3 and openssh-server (debootstrap once; the packages added if an
    earlier `make aarch64-check` built it without sshd)."""
    if not shutil.which("qemu-aarch64-static") or not shutil.which("debootstrap"):
        sh("apt-get", "install", "-y", "-qq", "qemu-user-static", "debootstrap", "binfmt-support")
    if not Path("/proc/sys/fs/binfmt_misc/register").exists():
        sh("mount", "-t", "binfmt_misc", "binfmt_misc", "/proc/sys/fs/binfmt_misc")
    subprocess.run(["update-binfmts", "--enable", "qemu-aarch64"], capture_output=True)
    if not (rootfs / "usr/bin/python3").exists():
        sh("debootstrap", "--arch=arm64", "--variant=minbase",
           "--include=python3,python3-venv,python3-pip,ca-certificates,openssh-server", "bookworm", rootfs,
           "http://deb.debian.org/debian")
    elif not (rootfs / "usr/sbin/sshd").exists():
        sh("chroot", rootfs, "apt-get", "install", "-y", "-qq", "openssh-server")


class Arm64Device:
    """sshd inside the userland (an aarch64 binary under qemu-user) on a loopback port; root logs in with `key`."""

    def __init__(self, rootfs: Path, public_key: str):
        self.rootfs, self.port = rootfs, free_port()
        self.url = f"ssh://root@127.0.0.1:{self.port}"
        etc = rootfs / "etc/ssh"
        key = etc / "edgepack_host_ed25519"
        if not key.exists():
            sh("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", key)
        host_pub = Path(str(key) + ".pub").read_text().split()
        self.known_hosts_line = f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n"
        (rootfs / "root/.ssh").mkdir(parents=True, exist_ok=True)
        (rootfs / "root/.ssh/authorized_keys").write_text(public_key)
        env = ["HOME=/root", "PATH=/usr/local/bin:/usr/bin:/bin"]
        ca = Path("/etc/ssl/certs/ca-certificates.crt")
        if ca.is_file():                       # pip in the userland trusts what this machine trusts (a proxy's CA)
            shutil.copy(ca, rootfs / "etc/ssl/certs/host-ca-bundle.crt")
            env += ["PIP_CERT=/etc/ssl/certs/host-ca-bundle.crt", "SSL_CERT_FILE=/etc/ssl/certs/host-ca-bundle.crt"]
        env += [f"{v}={os.environ[v]}" for v in ("HTTPS_PROXY", "https_proxy", "HTTP_PROXY", "http_proxy",
                                                  "NO_PROXY", "no_proxy") if os.environ.get(v)]
        (etc / "edgepack_sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey /etc/ssh/edgepack_host_ed25519\n"
            "PidFile /run/edgepack_sshd.pid\nStrictModes no\nUsePAM no\nPasswordAuthentication no\n"
            "KbdInteractiveAuthentication no\nPubkeyAuthentication yes\nPermitRootLogin prohibit-password\n"
            f"LogLevel ERROR\nSetEnv {' '.join(env)}\n")
        self.proc = None
        self.mounted: list[Path] = []

    def start(self) -> "Arm64Device":
        for what, args in (("proc", ["-t", "proc", "proc"]), ("sys", ["--rbind", "/sys"]), ("dev", ["--rbind", "/dev"])):
            target = self.rootfs / what
            if subprocess.run(["mountpoint", "-q", str(target)]).returncode != 0:
                sh("mount", *args, target)
                self.mounted.append(target)
        shutil.copy("/etc/resolv.conf", self.rootfs / "etc/resolv.conf")
        (self.rootfs / "run/sshd").mkdir(parents=True, exist_ok=True)
        self.proc = subprocess.Popen(["chroot", str(self.rootfs), "/usr/sbin/sshd", "-D", "-e", "-f",
                                      "/etc/ssh/edgepack_sshd_config"], stdout=subprocess.DEVNULL,
                                     stderr=open(self.rootfs / "run/edgepack_sshd.log", "ab"))
        wait_listening(self.port, self.proc, self.rootfs / "run/edgepack_sshd.log", tries=300, pause=0.2)   # emulated
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(20)
        subprocess.run(["pkill", "-f", "edgepack_sshd_config"], capture_output=True)
        for target in reversed(self.mounted):
            subprocess.run(["umount", "-l", str(target)], capture_output=True)


def main() -> int:
    if os.geteuid() != 0:
        print("aarch64-device-check: needs root (debootstrap, chroot, mounts)", file=sys.stderr)
        return 2
    out, model, data = Path(sys.argv[1]).resolve(), Path(sys.argv[2]).resolve(), Path(sys.argv[3]).resolve()
    rootfs = Path(os.environ.get("ROOTFS", ROOT / ".arm64-rootfs")).resolve()
    out.mkdir(parents=True, exist_ok=True)
    t0 = time.time()
    userland(rootfs)
    times = {"userland_s": round(time.time() - t0, 1)}
    local = LoopbackDevice(out / "loopback").start()
    arm = Arm64Device(rootfs, (local.root / "user.pub").read_text()).start()
    try:
        (local.root / "known_hosts").write_text(local.known_hosts_line + arm.known_hosts_line)
        config = local.write_client_config(local.root / "known_hosts")
        t1 = time.time()
        cmd = [sys.executable, "-m", "edgepack", "deploy", str(model), "--device", local.url, "--device", arm.url,
               "--ssh-config", str(config), "--no-mixed", "--runtime", "litert,onnxruntime", "--data", "mnist",
               "--data-dir", str(data), "--out", str(out / "deploy")]
        with open(out / "run.log", "w") as log:
            log.write("$ " + " ".join(cmd) + "\n")
            log.flush()
            rc = subprocess.run(cmd, stdout=log, stderr=subprocess.STDOUT, env={**os.environ, "PYTHONPATH": str(ROOT)},
                                timeout=7200).returncode
        times["deploy_s"] = round(time.time() - t1, 1)
    finally:
        arm.stop()
        local.stop()
    devices = out / "deploy" / "devices.json"
    summary = {**times, "returncode": rc, "devices": json.loads(devices.read_text()) if devices.is_file() else None}
    (out / "summary.json").write_text(json.dumps(summary, indent=2))
    print(json.dumps(summary, indent=2))
    return rc


if __name__ == "__main__":
    sys.exit(main())
