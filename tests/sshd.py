"""A throw-away OpenSSH server on a free loopback port, serving this machine as "the device" for the tests: its own
host key and user key, a HOME of its own, stopped afterwards. Debian's openssh-server (`make test` installs it)."""
from __future__ import annotations

import getpass
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

SSHD = shutil.which("sshd") or "/usr/sbin/sshd"


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def wait_listening(port: int, proc: subprocess.Popen, log: Path, tries: int, pause: float) -> None:
    """Until an sshd just started listens on 127.0.0.1:port; its log's tail if it exits first."""
    for _ in range(tries):
        with socket.socket() as s:
            if s.connect_ex(("127.0.0.1", port)) == 0:
                return
        if proc.poll() is not None:
            raise RuntimeError(f"sshd exited: {Path(log).read_text()[-500:]}")
        time.sleep(pause)
    raise RuntimeError("sshd did not listen")


class LoopbackDevice:
    def __init__(self, root: Path, path: str | None = None, env: str = ""):
        """`path`: the device's PATH; `env`: more of its environment ("NAME=value ...", e.g. an unreachable
        PIP_INDEX_URL for a device without access to a package index)."""
        self.root, self.port = Path(root), free_port()
        self.home = self.root / "home"
        self.home.mkdir(parents=True, exist_ok=True)
        for key in ("host", "user"):
            subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(self.root / key)], check=True)
        (self.root / "authorized_keys").write_text((self.root / "user.pub").read_text())
        host_pub = (self.root / "host.pub").read_text().split()
        self.known_hosts_line = f"[127.0.0.1]:{self.port} {host_pub[0]} {host_pub[1]}\n"
        (self.root / "known_hosts").write_text(self.known_hosts_line)
        pip_cache = Path(os.environ.get("PIP_CACHE_DIR", Path.home() / ".cache" / "pip"))
        (self.root / "sshd_config").write_text(
            f"Port {self.port}\nListenAddress 127.0.0.1\nHostKey {self.root / 'host'}\n"
            f"AuthorizedKeysFile {self.root / 'authorized_keys'}\nPidFile {self.root / 'sshd.pid'}\n"
            "StrictModes no\nUsePAM no\nPasswordAuthentication no\nKbdInteractiveAuthentication no\n"
            "PubkeyAuthentication yes\nPermitRootLogin prohibit-password\nLogLevel ERROR\n"
            f"SetEnv HOME={self.home} PIP_CACHE_DIR={pip_cache}{f' PATH={path}' if path else ''}{f' {env}' if env else ''}\n")
        self.user = getpass.getuser()
        self.url = f"ssh://{self.user}@127.0.0.1:{self.port}"
        self.config = self.root / "ssh_config"
        self.write_client_config(self.root / "known_hosts")
        self.proc = None

    def write_client_config(self, known_hosts: Path, key: Path | None = None) -> Path:
        self.config.write_text(f"Host 127.0.0.1\n  IdentityFile {key or self.root / 'user'}\n  IdentitiesOnly yes\n"
                               f"  UserKnownHostsFile {known_hosts}\n  GlobalKnownHostsFile /dev/null\n"
                               "  LogLevel ERROR\n")
        return self.config

    def start(self) -> "LoopbackDevice":
        Path("/run/sshd").mkdir(exist_ok=True)            # the privilege-separation folder sshd wants
        self.proc = subprocess.Popen([SSHD, "-D", "-e", "-f", str(self.root / "sshd_config")],
                                     stdout=subprocess.DEVNULL, stderr=open(self.root / "sshd.log", "ab"))
        wait_listening(self.port, self.proc, self.root / "sshd.log", tries=100, pause=0.1)
        return self

    def stop(self) -> None:
        if self.proc and self.proc.poll() is None:
            self.proc.terminate()
            self.proc.wait(10)
