"""Connecting to NATS: TLS asked for is TLS or nothing (no credential ever goes out in
clear text to a server that does not upgrade), the files the options name are checked
at open, and the errors of reads say nothing about writes. Real servers (certificates
made with the openssl command), and a fake plain-text server socket for the downgrade."""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import threading
import urllib.request
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from nats_servers import Server, free_port

import aurora_storage
from aurora_storage.errors import ConfigurationError, PositionExpiredError, StorageError
from aurora_storage_nats import NATSConnectionError, NATSTimeoutError

# ---------------------------------------------------------------------------- helpers


@pytest.fixture(scope="module")
def certs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    """A CA, and a server (127.0.0.1) and a client certificate signed by it, made with
    the openssl command: ``ca.pem``, ``server.pem``/``server.key``,
    ``client.pem``/``client.key``."""
    if shutil.which("openssl") is None:
        pytest.skip("the openssl command is needed to make test certificates")
    d = tmp_path_factory.mktemp("certs")

    def run(*args: str) -> None:
        subprocess.run(["openssl", *args], cwd=d, check=True, capture_output=True)

    run(
        "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-keyout", "ca.key",
        "-out", "ca.pem", "-days", "2", "-subj", "/CN=aurora-test-ca",
    )  # fmt: skip
    (d / "ext.cnf").write_text("subjectAltName=IP:127.0.0.1,DNS:localhost\n")
    for name in ("server", "client"):
        run(
            "req", "-newkey", "rsa:2048", "-nodes", "-keyout", f"{name}.key",
            "-out", f"{name}.csr", "-subj", f"/CN={name}",
        )  # fmt: skip
        run(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
            "-CAcreateserial", "-out", f"{name}.pem", "-days", "2", "-extfile", "ext.cnf",
        )  # fmt: skip
    return {p.name: p for p in d.iterdir()}


class PlainTextServer:
    """A fake NATS server that offers no TLS (a server configured without it, or an
    attacker in the path): it sends a server's INFO without ``tls_required`` and
    records every byte each client sends, until the client hangs up."""

    def __init__(self) -> None:
        self.sock = socket.socket()
        self.sock.bind(("127.0.0.1", 0))
        self.sock.listen(8)
        self.sock.settimeout(0.2)
        self.port = int(self.sock.getsockname()[1])
        self.received: list[bytes] = []
        self.lock = threading.Lock()
        self.stopping = threading.Event()
        self.clients: list[threading.Thread] = []
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        while not self.stopping.is_set():
            try:
                conn, _ = self.sock.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            t = threading.Thread(target=self._client, args=(conn,), daemon=True)
            self.clients.append(t)
            t.start()

    def _client(self, conn: socket.socket) -> None:
        info = {
            "server_id": "FAKE",
            "version": "2.15.1",
            "proto": 1,
            "headers": True,
            "auth_required": True,
            "max_payload": 1048576,
            "jetstream": True,
        }
        data = b""
        with conn:
            conn.sendall(b"INFO " + json.dumps(info).encode() + b"\r\n")
            # A bound, not a measure: the client hangs up (or gives up) long before.
            conn.settimeout(30)
            try:
                while chunk := conn.recv(4096):
                    data += chunk
            except OSError:
                pass
        with self.lock:
            self.received.append(data)

    def close(self) -> list[bytes]:
        """Stop, wait for every client to hang up, and return what each sent."""
        self.stopping.set()
        self.thread.join(30)
        self.sock.close()
        for t in self.clients:
            t.join(60)
        with self.lock:
            return list(self.received)


def _tls_server(root: Path, certs: dict[str, Path], extra: str = "") -> tuple[Server, int]:
    """A real server requiring TLS (``extra``: more lines in its tls block's place), with
    its monitoring port (``/connz`` says which connections use TLS)."""
    server = Server(root, "tls" + uuid.uuid4().hex[:6])
    http = free_port()
    server.conf.write_text(
        server.conf.read_text()
        + f'http: "127.0.0.1:{http}"\n'
        + f'tls {{ cert_file: "{certs["server.pem"]}", key_file: "{certs["server.key"]}"'
        + (f", {extra}" if extra else "")
        + " }\n"
    )
    server.start()
    return server, http


def _connections(http: int) -> list[dict[str, Any]]:
    with urllib.request.urlopen(f"http://127.0.0.1:{http}/connz") as answer:
        return list(json.loads(answer.read())["connections"] or [])


# ---------------------------------------------------------------------------- TLS


_TLS_ASKED: dict[str, Callable[[dict[str, Path]], str]] = {
    "tls=true": lambda c: "tls=true",
    "tls_ca_file": lambda c: f"tls_ca_file={c['ca.pem']}",
    "mutual": lambda c: (
        f"tls_ca_file={c['ca.pem']}&tls_cert_file={c['client.pem']}&tls_key_file={c['client.key']}"
    ),
}


@pytest.mark.parametrize("auth", ["alice:s3cret-pw@", "token"])
@pytest.mark.parametrize("asked", list(_TLS_ASKED))
def test_tls_asked_of_a_server_without_tls_sends_no_credentials(
    asked: str, auth: str, request: pytest.FixtureRequest
) -> None:
    # The client only upgrades when the server's INFO says tls_required: a server that
    # does not offer TLS (or a man in the middle) got the CONNECT, password included,
    # in clear text. Now the open refuses before anything is sent.
    query = _TLS_ASKED[asked](request.getfixturevalue("certs") if asked != "tls=true" else {})
    fake = PlainTextServer()
    user = auth if auth.endswith("@") else ""
    token = "&token=s3cret-tok" if auth == "token" else ""
    url = f"nats://{user}127.0.0.1:{fake.port}/b?{query}{token}&connect_timeout=2"
    try:
        with pytest.raises(StorageError) as err:
            aurora_storage.open(url)
    finally:
        received = fake.close()
    assert received, "the client never reached the fake server"
    for data in received:
        assert b"CONNECT" not in data, data[:200]
        assert b"s3cret" not in data, data[:200]
    assert isinstance(err.value, ConfigurationError)
    text = str(err.value)
    assert "does not offer TLS" in text
    assert f"127.0.0.1:{fake.port}" in text
    assert "s3cret" not in text


def test_a_real_server_without_tls_refuses_tls(nats_server: Server, bucket: str) -> None:
    # This opened, in plain text.
    with pytest.raises(ConfigurationError, match="does not offer TLS") as err:
        aurora_storage.open(f"nats://{nats_server.address}/{bucket}?tls=true")
    # It says how to fix it: TLS on the server, or no TLS options.
    assert "tls {" in str(err.value)
    assert "tls=false" in str(err.value)
    # Without TLS asked for, the same server opens.
    with aurora_storage.open(f"nats://{nats_server.address}/{bucket}") as repo:
        repo.put("t", "k", 1)


def test_tls_servers_connect_with_tls(tmp_path: Path, certs: dict[str, Path]) -> None:
    # A server requiring TLS, one allowing plain text beside it (allow_non_tls: its INFO
    # says tls_available, not tls_required), and one requiring client certificates:
    # each is reached over TLS, which the server's own connection list confirms.
    cases = [
        ("", f"tls_ca_file={certs['ca.pem']}"),
        ("", f"tls=true&tls_ca_file={certs['ca.pem']}"),
        (
            f'ca_file: "{certs["ca.pem"]}", verify: true',
            f"tls_ca_file={certs['ca.pem']}&tls_cert_file={certs['client.pem']}"
            f"&tls_key_file={certs['client.key']}",
        ),
    ]
    for extra, query in cases:
        server, http = _tls_server(tmp_path, certs, extra)
        try:
            with aurora_storage.open(f"nats://{server.address}/b?{query}") as repo:
                repo.put("t", "k", 1)
                assert repo.get("t", "k") == 1
                ours = [c for c in _connections(http) if c.get("name") == "aurora-storage"]
                assert ours
                assert all(c.get("tls_version") for c in ours), ours
        finally:
            server.stop()
    # allow_non_tls is a top-level option, outside the tls block.
    server, http = _tls_server(tmp_path, certs)
    server.stop()
    server.conf.write_text(server.conf.read_text() + "allow_non_tls: true\n")
    server.start()
    try:
        with aurora_storage.open(f"nats://{server.address}/b?tls_ca_file={certs['ca.pem']}") as r:
            r.put("t", "k", 2)
            ours = [c for c in _connections(http) if c.get("name") == "aurora-storage"]
            assert ours
            assert all(c.get("tls_version") for c in ours), ours
    finally:
        server.stop()


# ---------------------------------------------------------------------------- files


@pytest.mark.parametrize("option", ["tls_ca_file", "tls_cert_file", "tls_key_file", "credentials"])
def test_a_missing_file_is_named_at_open(
    option: str, nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    # A raw FileNotFoundError came out of the TLS options; a missing credentials file
    # opened without complaint against a server without authorization.
    missing = tmp_path / "no-such-dir" / "nothing.pem"
    other = tmp_path / "other.pem"
    other.write_text("not used: the missing file is found first\n")
    files: dict[str, Path] = {}
    if option in ("tls_cert_file", "tls_key_file"):
        files = {"tls_cert_file": other, "tls_key_file": other}
    files[option] = missing
    query = "&".join(f"{k}={v}" for k, v in files.items())
    with pytest.raises(ConfigurationError) as err:
        aurora_storage.open(f"nats://{nats_server.address}/{bucket}?{query}")
    text = str(err.value)
    assert option in text
    assert str(missing) in text
    assert "does not exist" in text


@pytest.mark.parametrize("option", ["tls_ca_file", "credentials", "mutual"])
def test_a_file_that_is_not_what_the_option_needs_is_named_at_open(
    option: str, nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    bad = tmp_path / "bad.txt"
    bad.write_text("this is not a certificate nor a credentials file\n")
    if option == "mutual":
        query = f"tls_cert_file={bad}&tls_key_file={bad}"
        named = "tls_cert_file"
    else:
        query = f"{option}={bad}"
        named = option
    with pytest.raises(ConfigurationError) as err:
        aurora_storage.open(f"nats://{nats_server.address}/{bucket}?{query}&connect_timeout=5")
    text = str(err.value)
    assert named in text
    assert str(bad) in text


# ---------------------------------------------------------------------------- messages


def test_only_the_errors_of_writes_say_a_write_may_have_been_applied(tmp_path: Path) -> None:
    # Every timeout and lost connection ended with "a write may or may not have been
    # applied", reads, scans and watches included. Now only writes say it; the others
    # say the client is reconnecting.
    server = Server(tmp_path, "away")
    server.start()
    url = f"nats://{server.address}/b?timeout=0.5&reconnect_time_wait=0.05"
    repo = aurora_storage.open(url)
    try:
        repo.put("t", "k", 1)
        pos = repo.last_position()
        server.kill()
        reads: dict[str, Any] = {
            "get": lambda: repo.get("t", "k"),
            "get_many": lambda: repo.get_many("t", ["k", "j"]),
            "scan": lambda: repo.list("t"),
            "count": lambda: repo.count("t"),
            "watch": lambda: list(repo.watch("t", after=pos, timeout=0.3)),
            "last_position": repo.last_position,
        }
        for name, call in reads.items():
            with pytest.raises((NATSTimeoutError, NATSConnectionError)) as err:
                call()
            assert "write" not in str(err.value), (name, str(err.value))
            assert "reconnect" in str(err.value), (name, str(err.value))
        writes: dict[str, Any] = {
            "put": lambda: repo.put("t", "k", 2),
            "put_many": lambda: repo.put_many("t", [("a", 1), ("b", 2)]),
        }
        for name, call in writes.items():
            with pytest.raises((NATSTimeoutError, NATSConnectionError)) as err:
                call()
            assert "may or may not have been applied" in str(err.value), (name, str(err.value))
    finally:
        repo.close()
        server.stop()


def test_position_expired_names_the_callers_position(nats_server: Server, bucket: str) -> None:
    # The message printed the stream's own sequence (a small number), not the position
    # the caller passed (its .position was right).
    with aurora_storage.open(f"nats://{nats_server.address}/{bucket}?history=2") as repo:
        repo.put("t", "hot", 0)
        start = repo.last_position()
        for i in range(1, 4):
            repo.put("t", "hot", i)
        with pytest.raises(PositionExpiredError) as err:
            list(repo.watch("t", after=start, timeout=0.3))
        assert err.value.position == start
        assert f"position {start} " in str(err.value)


def test_a_certificate_that_fails_verification_is_named(
    tmp_path: Path, certs: dict[str, Path]
) -> None:
    # A server whose certificate the client cannot verify (the system's CAs for a
    # certificate of a private CA, or the wrong tls_ca_file) was reported after
    # connect_timeout as "cannot reach any NATS server ... timed out; check the servers
    # are running": the certificate error is named now, with the fix.
    server, _ = _tls_server(tmp_path, certs)
    try:
        for query in ("tls=true", f"tls_ca_file={certs['server.pem']}"):
            url = f"nats://{server.address}/b?{query}&connect_timeout=30"
            with pytest.raises(ConfigurationError) as info:
                aurora_storage.open(url)
            text = str(info.value)
            assert "certificate" in text, text
            assert "tls_ca_file" in text, text
            assert "timed out" not in text, text
    finally:
        server.stop()


def test_a_lone_user_part_is_a_token_and_never_printed(tmp_path: Path) -> None:
    # nats://TOKEN@host is NATS's own form of token authentication (nats-py and the
    # nats CLI read it so). It was taken as a user name without a password - refused by
    # a token server - and printed in every error message. It is the token now, and
    # hidden like one; with a password option it is still the user's name.
    from aurora_storage.config import URL
    from aurora_storage_nats._config import config_from_url

    server = Server(tmp_path, "tok")
    server.conf.write_text(server.conf.read_text() + 'authorization { token: "s3cr%t" }\n')
    server.start()
    try:
        with aurora_storage.open(f"nats://s3cr%25t@{server.address}/b") as repo:
            repo.put("t", "k", 1)
            assert repo.get("t", "k") == 1
        with pytest.raises(NATSConnectionError) as info:
            aurora_storage.open(f"nats://wr0ngtok@{server.address}/b")
        assert "wr0ngtok" not in str(info.value)
        assert "refused the credentials" in str(info.value)
        cfg = config_from_url(URL.parse(f"nats://wr0ngtok@{server.address}/b"), {})
        assert (cfg.token, cfg.user) == ("wr0ngtok", None)
        assert "wr0ngtok" not in cfg.describe()
        assert "wr0ngtok" not in repr(cfg)
        cfg = config_from_url(URL.parse(f"nats://alice@{server.address}/b"), {"password": "pw"})
        assert (cfg.token, cfg.user, cfg.password) == (None, "alice", "pw")
    finally:
        server.stop()
