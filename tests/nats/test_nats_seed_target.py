"""``aurora-storage import-seed`` into a NATS bucket: what its failure note says when the
bucket stops it, and which codec its dry run checks values with. A real nats-server,
real TypeScript stores (``tenant:JSON(key)`` -> JSON value, built with rocksdict as the
package lays them out).

Before: a full bucket (max_batch=100) ended the import with "... written before this
(atomic batches of up to 2000 records): run import-seed again into the same target once
the source reads" - the wrong batch size, and advice about the source when the target
was at fault; and ``--dry-run`` into an existing msgpack bucket checked values with
json (a bucket has no path whose marker names its codec), reporting as ``refused``
records the import then stored."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import rocksdict
from nats_servers import Server

import aurora_storage
from aurora_storage import errors
from aurora_storage.migrate import import_seed
from conftest import delete_bucket


def run_cli(*args: str) -> subprocess.CompletedProcess[bytes]:
    """The command line in a subprocess, importing this checkout's package."""
    env = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}
    env.pop("COLUMNS", None)
    return subprocess.run(
        [sys.executable, "-m", "aurora_storage", *args],
        capture_output=True,
        timeout=300,
        env=env,
        check=False,
    )


def _seed(path: Path, records: list[tuple[bytes, bytes]]) -> Path:
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    for key, value in records:
        db[key] = value
    db.close()
    os.remove(path / "rocksdict-config.json")  # the package's binding writes none
    return path


#: Records the json codec refuses and msgpack stores: 1e400 (JSON.parse reads it as
#: Infinity) and arrays nested 600 deep (beyond json's nesting limit).
_MSGPACK_ONLY = [
    (b'acme:"inf"', b"1e400"),
    (b'acme:"deep"', b"[" * 600 + b"]" * 600),
    (b'acme:"ok"', b"1"),
]


def test_a_full_bucket_names_the_batch_size_and_the_target_as_the_cause(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    records = [
        (f'a:b:["e",{i}]'.encode(), json.dumps({"i": i, "p": "q" * 100}).encode())
        for i in range(5000)
    ]
    src = _seed(tmp_path / "seed", records)
    url = f"nats://{nats_server.address}/{bucket}?max_bytes=300KiB&max_batch=100"
    done = run_cli("import-seed", str(src), url)
    err = done.stderr.decode()
    assert done.returncode == 3, err
    assert "StorageFullError" in err, err
    with aurora_storage.open(url) as repo:
        held = repo.count("a:b")
        assert repo.capabilities.max_batch_ops == 100
    assert 0 < held < 5000
    assert f"{held} records were written to" in err, (held, err)
    assert "atomic batches of up to 100 records" in err, err
    assert "2000" not in err, err
    # The cause may be the target (here: the bucket is full), not only the source.
    assert "once the source reads" not in err, err
    assert "the source or the target" in err, err
    # Through the API, the same note on the target's own error (a bucket of its own:
    # the first one is full).
    other = url.replace(bucket, f"{bucket}api")
    try:
        with pytest.raises(errors.StorageFullError) as info:
            import_seed(src, other)
        assert "atomic batches of up to 100 records" in str(info.value)
        assert "the source or the target" in str(info.value)
    finally:
        delete_bucket(nats_server.address, f"{bucket}api")


def test_the_dry_run_checks_with_an_existing_buckets_codec(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    src = _seed(tmp_path / "seed", _MSGPACK_ONLY)
    url = f"nats://{nats_server.address}/{bucket}"
    with aurora_storage.open(f"{url}?codec=msgpack") as repo:
        repo.put("x", "y", 1)
    dry = run_cli("import-seed", str(src), url, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr.decode()
    report = json.loads(dry.stdout)
    assert report["imported"] == 3, report["problems"]
    assert report["codec"] == "msgpack"
    # The summary line says which codec the dry run checked with.
    plain = run_cli("import-seed", str(src), url, "--dry-run")
    assert plain.returncode == 0, plain.stderr.decode()
    assert b"msgpack codec" in plain.stderr, plain.stderr
    # The dry run wrote nothing; the import then does what it said.
    with aurora_storage.open(url) as repo:
        assert list(repo.tenants()) == ["x"]
    real = run_cli("import-seed", str(src), url, "--json")
    assert real.returncode == 0, real.stderr.decode()
    assert report | {"dry_run": False} == json.loads(real.stdout)


def test_the_dry_run_into_a_missing_bucket_creates_none_and_checks_with_json(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    src = _seed(tmp_path / "seed", _MSGPACK_ONLY)
    url = f"nats://{nats_server.address}/{bucket}"
    report = import_seed(src, url, dry_run=True)
    assert report.codec == "json"
    assert report.problem_count == {"refused": 2}
    # No bucket was created: a read-only open of it still finds none.
    with pytest.raises(errors.ConfigurationError, match="does not exist"):
        aurora_storage.open(f"{url}?read_only=true")


def test_the_dry_run_says_when_it_cannot_read_the_buckets_codec(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    # No server on the port: the dry run still checks the source, with json, and says
    # why (the import itself would fail to reach the server).
    src = _seed(tmp_path / "seed", _MSGPACK_ONLY)
    with caplog.at_level("WARNING", logger="aurora_storage.migrate"):
        report = import_seed(src, "nats://127.0.0.1:1/nobucket?connect_timeout=0.5", dry_run=True)
    assert (report.codec, report.problem_count) == ("json", {"refused": 2})
    (record,) = [r for r in caplog.records if r.name == "aurora_storage.migrate"]
    assert "could not read the codec of nats://127.0.0.1:1/nobucket" in record.getMessage()
