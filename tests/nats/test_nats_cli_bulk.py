"""The bulk commands of the command line (``import``, ``copy``) into a NATS bucket with
the client's default ``max_batch`` (1,000 operations per atomic batch), as a user moving
from an embedded engine writes them: each command sizes its atomic batches to what the
target takes (``Capabilities.max_batch_ops``) instead of its own chunk (2,000 records
per import batch, 10,000 per raw copy batch), which NATS refused whole
(BatchTooLargeError) before anything was written.

The session's server allows 10,000 messages per atomic publish: the bound met here is
the client's ``max_batch``, as a bucket opened by URL without the option has it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import quote

import orjson
import pytest
from nats_servers import Server

import aurora_storage
from aurora_storage.errors import BatchTooLargeError

#: More than two import chunks and two copy chunks of the old sizes, well over 1,000.
RECORDS = 5000


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


def _records() -> dict[str, dict[Any, Any]]:
    out: dict[str, dict[Any, Any]] = {"acme": {}, "globex": {}, "a:b": {}}
    tenants = list(out)
    for i in range(RECORDS):
        key: Any = ("order", i) if i % 2 else f"k{i:05d}"
        out[tenants[i % 3]][key] = {"i": i, "note": "x" * (i % 40)}
    return out


def _dump(url: str) -> dict[str, dict[Any, Any]]:
    with aurora_storage.open(url) as repo:
        return {t: dict(repo.items(t)) for t in repo.tenants()}


def _source(tmp_path: Path) -> str:
    url = f"lmdb://{tmp_path / 'src'}"
    with aurora_storage.open(url) as repo:
        for tenant, records in _records().items():
            repo.put_many(tenant, records)
    return url


def _default_url(server: Server, bucket: str, **options: str) -> str:
    """A bucket URL without max_batch: the client's default of 1,000 applies."""
    query = "&".join(f"{k}={v}" for k, v in options.items())
    return f"nats://{server.address}/{bucket}" + (f"?{query}" if query else "")


def test_a_default_bucket_states_its_batch_bound_and_refuses_one_more(
    nats_server: Server, bucket: str
) -> None:
    with aurora_storage.open(_default_url(nats_server, bucket)) as repo:
        assert repo.capabilities.max_batch_ops == 1000
        with pytest.raises(BatchTooLargeError) as info:
            repo.put_many("t", {i: i for i in range(1001)})
        assert (info.value.size, info.value.limit) == (1001, 1000)
        assert list(repo.tenants()) == []


def test_import_of_5000_records_into_a_default_bucket(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    # Breaker finding: the import wrote 2,000 records per atomic batch and failed at
    # once with BatchTooLargeError, nothing written.
    src = _source(tmp_path)
    export = tmp_path / "events.jsonl"
    done = run_cli("export", src, "-o", str(export), "--quiet")
    assert done.returncode == 0, done.stderr
    target = _default_url(nats_server, bucket)
    done = run_cli("import", target, str(export))
    assert done.returncode == 0, done.stderr.decode()
    assert f"imported {RECORDS} records" in done.stderr.decode()
    assert _dump(target) == _records()


@pytest.mark.parametrize("path", ["raw", "decoded"])
def test_copy_of_5000_records_from_lmdb_into_a_default_bucket(
    nats_server: Server, bucket: str, tmp_path: Path, path: str
) -> None:
    # The same codec copies stored bytes (10,000 records per batch before the fix);
    # another codec goes through the public API (2,000 per batch).
    src = _source(tmp_path)
    target = _default_url(
        nats_server, bucket, **({"codec": "msgpack"} if path == "decoded" else {})
    )
    done = run_cli("copy", src, target)
    assert done.returncode == 0, done.stderr.decode()
    out = done.stderr.decode()  # the command's report goes to stderr
    assert f"copied {RECORDS} records" in out
    assert f"verified: the target holds the source's {RECORDS} records" in out
    assert _dump(target) == _records()


def test_import_raises_sequence_counters_in_batches_the_bucket_takes(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    # Counters were raised 500 per compare-and-set batch, over a bucket's max_batch=100.
    src = f"lmdb://{tmp_path / 'events'}"
    with aurora_storage.open(src) as repo:
        for s in range(300):
            with repo.batch() as b:
                b.append("acme", f"seq{s}", {"s": s})
    export = tmp_path / "events.jsonl"
    done = run_cli("export", src, "-o", str(export), "--quiet")
    assert done.returncode == 0, done.stderr
    assert orjson.loads(export.read_bytes().splitlines()[-1])["sequences"] == 300
    target = _default_url(nats_server, bucket, max_batch="100")
    done = run_cli("import", target, str(export))
    assert done.returncode == 0, done.stderr.decode()
    with aurora_storage.open(target) as repo:
        assert repo.count("acme") == 300
        assert all(repo.last_sequence("acme", f"seq{s}") == 1 for s in range(300))


def test_copy_into_a_tiered_pair_with_a_default_nats_cold_tier(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    # Each write of a pair adds its change-log entry (and, on a cold tier other
    # processes may write, its HEAD record) to the cold batch: the copy's batches leave
    # room for them.
    src = _source(tmp_path)
    hot = quote(f"lmdb://{tmp_path / 'hot'}", safe="")
    cold = quote(_default_url(nats_server, bucket), safe="")
    target = f"tiered://?hot={hot}&cold={cold}"
    done = run_cli("copy", src, target)
    assert done.returncode == 0, done.stderr.decode()
    assert f"copied {RECORDS} records" in done.stderr.decode()
    assert _dump(target) == _records()


def test_a_tiered_pair_states_what_its_default_nats_cold_tier_takes(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    # Cold's 1,000 less the change-log entry and HEAD the pair adds to each cold batch.
    hot = quote(f"lmdb://{tmp_path / 'hot'}", safe="")
    cold = quote(_default_url(nats_server, bucket), safe="")
    with aurora_storage.open(f"tiered://?hot={hot}&cold={cold}") as repo:
        assert repo.capabilities.max_batch_ops == 998
        repo.put_many("t", {i: i for i in range(998)})
        with pytest.raises(BatchTooLargeError):
            repo.put_many("u", {i: i for i in range(999)})
        assert list(repo.tenants()) == ["t"]
        assert repo.count("t") == 998


def test_an_import_cut_by_a_full_bucket_says_what_earlier_batches_imported(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    # The error of a later batch said nothing of the batches before it, which stay
    # imported (a copy's error says so); running the import again is safe.
    export = tmp_path / "big.jsonl"
    lines = [orjson.dumps({"aurora-storage-export": 2, "codec": "json", "values": "json"})]
    lines += [
        orjson.dumps({"tenant": "acme", "key": i, "value": "v" * 2000}) for i in range(RECORDS)
    ]
    lines.append(orjson.dumps({"aurora-storage-export-end": True, "records": RECORDS}))
    export.write_bytes(b"\n".join(lines) + b"\n")
    target = _default_url(nats_server, bucket, max_bytes="3MiB")
    done = run_cli("import", target, str(export), "--quiet")
    err = done.stderr.decode()
    assert done.returncode != 0, err
    with aurora_storage.open(target) as repo:
        held = repo.count("acme")
    assert held > 0, err
    assert held % 1000 == 0, (held, err)  # whole batches only
    assert (
        f"({held} records were imported into {target} before this error, in atomic "
        "batches of 1000" in err
    ), err
    assert "run the import again: it is safe" in err, err


def test_import_seed_of_5000_records_into_a_default_bucket(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    # A TypeScript store (``tenant:JSON(key)`` -> JSON(value), as the package writes it;
    # see tests/cli/test_import_seed.py) imported straight into a default bucket: the
    # import wrote 2,000 records per atomic batch, which the bucket refused whole.
    seed, expected = _seed_store(tmp_path, lambda i: {"i": i})
    url = _default_url(nats_server, bucket)
    done = run_cli("import-seed", str(seed), url)
    assert done.returncode == 0, done.stderr.decode()
    assert _dump(url) == expected


def test_an_import_seed_cut_by_a_full_bucket_counts_only_committed_batches(
    nats_server: Server, bucket: str, tmp_path: Path
) -> None:
    # The note of a failed import-seed counted the records of the batch that failed
    # (counted as they were added to it, before its commit) as written.
    seed, _ = _seed_store(tmp_path, lambda i: "v" * 2000)
    target = _default_url(nats_server, bucket, max_bytes="3MiB")
    done = run_cli("import-seed", str(seed), target)
    err = done.stderr.decode()
    assert done.returncode != 0, err
    with aurora_storage.open(target) as repo:
        held = sum(repo.count(t) for t in repo.tenants())
    assert held > 0, err
    assert f"{held} records were written to " in err, (held, err)


def _seed_store(tmp_path: Path, value: Any) -> tuple[Path, dict[str, dict[Any, Any]]]:
    """A TypeScript store of RECORDS records over two tenants (``tenant:JSON(key)`` ->
    ``JSON(value(i))``, as the package writes them) and the records it holds."""
    import rocksdict

    seed = tmp_path / "seed"
    db = rocksdict.Rdict(str(seed), options=rocksdict.Options(raw_mode=True))
    expected: dict[str, dict[Any, Any]] = {"acme": {}, "globex": {}}
    for i in range(RECORDS):
        tenant = "acme" if i % 2 else "globex"
        key = f"k{i:05d}"
        db[f"{tenant}:{orjson.dumps(key).decode()}".encode()] = orjson.dumps(value(i))
        expected[tenant][key] = value(i)
    db.close()
    os.remove(seed / "rocksdict-config.json")  # the package's binding writes none
    return seed, expected
