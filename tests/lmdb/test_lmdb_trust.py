"""Trust on disk (issue #10), LMDB side: full disks, growth under readers, opens racing
growth, damaged pages and keys, on-demand verification, bad paths and options.

Damage that could kill a process (SIGBUS, SIGABRT) is always exercised in a child
process, so a death shows as a signal exit instead of taking the test run down.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import shutil
import signal
import subprocess
import sys
import threading
import zlib
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import quote

import lmdb
import orjson
import pytest
import xxhash

import aurora_storage
from aurora_storage import encode_key
from aurora_storage._keys import encode_tenant
from aurora_storage.errors import (
    ConfigurationError,
    CorruptionError,
    StorageFullError,
)
from aurora_storage_lmdb import LMDBRepository

PAGE = 4096


def run_child(code: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    """Run ``code`` in a fresh interpreter; a death by signal shows as a negative code."""
    return subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=timeout
    )


def assert_alive(proc: subprocess.CompletedProcess[str]) -> None:
    assert proc.returncode >= 0, (
        f"the child died of signal {signal.Signals(-proc.returncode).name}: {proc.stderr[-500:]}"
    )


# ---------------------------------------------------------------------- a small filesystem


@contextlib.contextmanager
def small_filesystem(where: Path, size: str = "4m") -> Iterator[Path]:
    """A tmpfs of ``size`` mounted at ``where`` (root only), unmounted afterwards."""
    where.mkdir(parents=True, exist_ok=True)
    if not hasattr(os, "geteuid") or os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs to fill it needs root")
    if shutil.which("mount") is None:
        pytest.skip("no mount command to create a small filesystem")
    proc = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        pytest.skip(f"cannot mount a small tmpfs here: {proc.stderr.strip()}")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], capture_output=True)


def fill(fs: Path, *, leave: int = 0) -> Path:
    """Fill the filesystem, then free ``leave`` bytes again; return the filler file."""
    filler = fs / "filler"
    with open(filler, "ab", buffering=0) as f:
        with contextlib.suppress(OSError):
            while True:
                f.write(b"x" * 65536)
        with contextlib.suppress(OSError):
            while True:
                f.write(b"x" * 512)
    if leave:
        os.truncate(filler, max(0, filler.stat().st_size - leave))
    return filler


@pytest.fixture
def fs(tmp_path: Path) -> Iterator[Path]:
    with small_filesystem(tmp_path / "mnt") as mount:
        yield mount


_OPEN_AND_WRITE = """
import sys, aurora_storage
from aurora_storage.errors import StorageFullError
try:
    repo = aurora_storage.open(sys.argv[1])
    for i in range(100):
        repo.put("t", i, "v" * 2000)
    repo.close()
    print("ok")
except StorageFullError as exc:
    print("full:", exc)
"""


@pytest.mark.parametrize("leave", [0, 4096, 12288, 40960])
def test_creating_a_store_on_a_full_filesystem_is_storage_full_not_sigbus(
    fs: Path, leave: int
) -> None:
    fill(fs, leave=leave)
    proc = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_WRITE, f"lmdb://{fs}/store"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert_alive(proc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("full:"), proc.stdout
    if leave == 0:
        # The refused open left nothing behind.
        assert not (fs / "store").exists()


def test_tiered_with_an_lmdb_hot_tier_on_a_full_filesystem_raises_storage_full(
    fs: Path, tmp_path: Path
) -> None:
    fill(fs)
    cold = f"lmdb://{tmp_path}/cold"
    url = f"tiered://?hot={quote(f'lmdb://{fs}/hot', safe='')}&cold={quote(cold, safe='')}"
    proc = subprocess.run(
        [sys.executable, "-c", _OPEN_AND_WRITE, url], capture_output=True, text=True, timeout=60
    )
    assert_alive(proc)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.startswith("full:"), proc.stdout


def test_a_disk_filling_during_commits_raises_storage_full_and_the_handle_recovers(
    fs: Path,
) -> None:
    acked: dict[tuple[int | str, int], str] = {}
    errors: list[Exception] = []
    with aurora_storage.open(f"lmdb://{fs}/s?sync=false") as repo:
        repo.put("t", ("first", 0), "x")
        acked[("first", 0)] = "x"
        filler = fill(fs, leave=300_000)
        for b in range(120):
            batch: dict[tuple[int | str, int], str] = {
                (b, i): f"{b}-{i}-" + "v" * 1000 for i in range(50)
            }
            try:
                repo.put_many("t", batch)
            except StorageFullError as exc:
                errors.append(exc)
            else:
                acked.update(batch)
            try:
                repo.put("t", (b, 99), "w" * 5000)
            except StorageFullError as exc:
                errors.append(exc)
            else:
                acked[(b, 99)] = "w" * 5000
        # Every failure was typed (a plain StorageError would have escaped the loop),
        # and the disk did fill: both the ENOSPC and the short-write (EIO) kind.
        assert len(errors) > 10
        assert all("full" in str(e) for e in errors)
        filler.unlink()
        # The same handle accepts writes again once space is free.
        repo.put_many("t", {("after", i): i for i in range(100)})
        for key, value in acked.items():
            assert repo.get("t", key) == value
        assert repo.count("t") == len(acked) + 100
    with aurora_storage.open(f"lmdb://{fs}/s") as repo:
        assert repo.count("t") == len(acked) + 100
        assert repo.get_many("t", list(acked)) == list(acked.values())
        assert repo.verify().ok


# ---------------------------------------------------------------------- growth under readers


@pytest.mark.timeout(180)
def test_map_growth_is_not_starved_by_reader_threads(tmp_path: Path) -> None:
    repo = aurora_storage.open(f"lmdb://{tmp_path}/s?map_size=64KiB&sync=false")
    repo.put("t", "k", 1)
    stop = threading.Event()
    reads = [0, 0, 0]
    failures: list[BaseException] = []

    def reader(n: int) -> None:
        try:
            while not stop.is_set():
                assert repo.get("t", "k") == 1
                reads[n] += 1
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    def writer() -> None:
        try:
            for b in range(100):
                repo.put_many("t", {(b, i): f"{b}:{i}:" + "x" * 3000 for i in range(50)})
        except BaseException as exc:  # pragma: no cover - reported below
            failures.append(exc)

    readers = [threading.Thread(target=reader, args=(n,), daemon=True) for n in range(3)]
    for t in readers:
        t.start()
    w = threading.Thread(target=writer, daemon=True)
    w.start()
    # Liveness, not speed (benchmarks/lmdb_growth_readers.py measures that): before the
    # gate, the writer waited for a moment with no reader inside LMDB, which with
    # three looping readers did not come within a minute.
    w.join(90)
    finished = not w.is_alive()
    stop.set()
    for t in readers:
        t.join(30)
    try:
        assert finished, "the writer is still blocked behind the readers"
        assert not failures, failures
        assert all(reads), reads
        assert repo.stats()["map_size"] > 64 * 1024
        assert repo.count("t") == 5001
        assert repo.get("t", (99, 49)) == "99:49:" + "x" * 3000
    finally:
        if finished:
            repo.close()


# ---------------------------------------------------------------------- opens during growth

_GROWER = """
import sys, lmdb
env = lmdb.open(sys.argv[1], lib_version=0, max_spare_txns=0)
size = env.info()["map_size"]
print("ready", flush=True)
for i in range(1200):
    # Each commit uses pages beyond the previous map: an opener that read the old
    # size then begins its first transaction gets MDB_MAP_RESIZED.
    size += 80 << 10
    env.set_mapsize(size)
    with env.begin(write=True) as txn:
        txn.put(b"\\x02grow%d" % i, bytes(60 << 10))
"""


@pytest.mark.timeout(240)
def test_opens_retry_when_another_process_grows_the_map(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}?map_size=64KiB") as repo:
        repo.put("t", "k", "v")
    grower = subprocess.Popen(
        [sys.executable, "-c", _GROWER, str(path)], stdout=subprocess.PIPE, text=True
    )
    try:
        assert grower.stdout is not None
        assert grower.stdout.readline().strip() == "ready"
        opens = 0
        # map_size=64KiB: the opener's map is exactly the size recorded at its open.
        url = f"lmdb://{path}?map_size=64KiB&reader_cache=false"
        while grower.poll() is None:
            with aurora_storage.open(url) as repo:
                assert repo.get("t", "k") == "v"
            opens += 1
        assert grower.returncode == 0
        assert opens >= 100, opens
    finally:
        grower.kill()
        grower.communicate(timeout=30)


# ---------------------------------------------------------------------- damaged pages


def _store_with_records(path: Path, n: int = 3000) -> dict[int, str]:
    records = {i: f"value-{i}-" + "v" * 90 for i in range(n)}
    with aurora_storage.open(f"lmdb://{path}?sync=false") as repo:
        repo.put_many("t", records)
    return records


_SCAN = """
import sys, json, aurora_storage
from aurora_storage.errors import CorruptionError
try:
    with aurora_storage.open(sys.argv[1]) as repo:
        items = dict(repo.items("t"))
        print(json.dumps({"items": len(items), "count": repo.count("t"),
                          "ok": all(v == f"value-{k}-" + "v" * 90 for k, v in items.items())}))
except CorruptionError as exc:
    print(json.dumps({"corruption": str(exc)}))
"""


@pytest.mark.parametrize("verify", ["auto", "false"])
def test_a_zeroed_page_never_kills_the_process(tmp_path: Path, verify: str) -> None:
    src = tmp_path / "src"
    _store_with_records(src)
    pages = (src / "data.mdb").stat().st_size // PAGE
    outcomes: dict[str, int] = {}
    # A sample of pages (each copy costs a child process), plus the last pages, where
    # the root and branch pages of a freshly written tree live.
    sample = sorted(set(random.Random(pages).sample(range(2, pages), 10)) | {pages - 2, pages - 1})
    for page in sample:
        copy = tmp_path / f"p{page}"
        shutil.copytree(src, copy)
        with open(copy / "data.mdb", "r+b") as f:
            f.seek(page * PAGE)
            f.write(bytes(PAGE))
        if verify == "false":
            # Even with the structural check at open turned off, a scan must not
            # abort: the on-demand check (verify()) refuses before the engine reads.
            code = (
                "import sys, aurora_storage\n"
                "from aurora_storage.errors import CorruptionError\n"
                "try:\n"
                "    repo = aurora_storage.open(sys.argv[1] + '?verify=false')\n"
                "except CorruptionError:\n"
                "    print('corruption')\n"
                "else:\n"
                "    report = repo.verify()\n"
                "    print('problems' if report.problems else 'ok', report.records)\n"
            )
            proc = run_child(code.replace("sys.argv[1]", repr(f"lmdb://{copy}")))
        else:
            proc = subprocess.run(
                [sys.executable, "-c", _SCAN, f"lmdb://{copy}"],
                capture_output=True,
                text=True,
                timeout=60,
            )
        assert_alive(proc)
        assert proc.returncode == 0, proc.stderr[-500:]
        out = proc.stdout.strip()
        if verify == "auto":
            result = json.loads(out)
            if "corruption" not in result:
                # Readable: then every record is there and right (a free page).
                assert result == {"items": 3000, "count": 3000, "ok": True}, (page, result)
            kind = "corruption" if "corruption" in result else "intact"
        else:
            kind = out.split()[0]
            if kind == "ok":
                assert out == "ok 3000", (page, out)
        outcomes[kind] = outcomes.get(kind, 0) + 1
        shutil.rmtree(copy)
    # Most pages hold records: their damage was reported.
    assert outcomes.get("corruption", 0) + outcomes.get("problems", 0) > len(sample) // 2, outcomes


def test_damage_is_checked_at_open_only_when_the_store_was_not_closed_cleanly(
    tmp_path: Path,
) -> None:
    path = tmp_path / "s"
    _store_with_records(path, 200)
    with aurora_storage.open(f"lmdb://{path}") as repo:
        assert repo.stats()["verified_at_open"] is False  # closed cleanly: trusted
    # Something other than this library wrote the file (here: one byte rewritten as
    # it was, which changes its modification time): checked at the next open.
    with open(path / "data.mdb", "r+b") as f:
        f.seek(0)
        first = f.read(1)
        f.seek(0)
        f.write(first)
    with aurora_storage.open(f"lmdb://{path}") as repo:
        assert repo.stats()["verified_at_open"] is True
    with aurora_storage.open(f"lmdb://{path}") as repo:
        assert repo.stats()["verified_at_open"] is False
    # A process killed while it had the store open leaves no clean record either.
    code = (
        "import aurora_storage, os, signal\n"
        f"repo = aurora_storage.open('lmdb://{path}')\n"
        "repo.put('t', 'x', 1)\n"
        "os.kill(os.getpid(), signal.SIGKILL)\n"
    )
    assert run_child(code).returncode == -signal.SIGKILL
    with aurora_storage.open(f"lmdb://{path}") as repo:
        assert repo.stats()["verified_at_open"] is True
        assert repo.get("t", "x") == 1
        # While this process has it open, another opener must not walk the file
        # (the walk would race this process's writes): it joins without a check.
        code = (
            "import aurora_storage\n"
            f"r = aurora_storage.open('lmdb://{path}')\n"
            "print(r.stats()['verified_at_open']); r.close()\n"
        )
        proc = run_child(code)
        assert proc.stdout.strip() == "False", proc.stderr


def test_structural_damage_is_refused_at_open_after_an_unclean_close(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _store_with_records(path)
    data = bytearray((path / "data.mdb").read_bytes())
    # Zero every page holding records (pages 2.. are tree pages or free pages).
    for page in range(2, len(data) // PAGE):
        data[page * PAGE : (page + 1) * PAGE] = bytes(PAGE)
    (path / "data.mdb").write_bytes(bytes(data))
    with pytest.raises(CorruptionError, match="failed verification"):
        aurora_storage.open(f"lmdb://{path}")


def test_damage_written_in_place_with_the_mtime_put_back_is_still_checked(
    tmp_path: Path,
) -> None:
    """A tool that writes into the file and restores its modification time (os.utime)
    must not get past the clean-close record: the inode change time, which no user
    call can set back, is part of it."""
    path = tmp_path / "s"
    _store_with_records(path)
    data_file = path / "data.mdb"
    before = data_file.stat()
    with open(data_file, "r+b") as f:  # in place: same inode, same size
        for page in range(2, before.st_size // PAGE):
            f.seek(page * PAGE)
            f.write(bytes(PAGE))
    os.utime(data_file, ns=(before.st_atime_ns, before.st_mtime_ns))
    assert data_file.stat().st_mtime_ns == before.st_mtime_ns
    with pytest.raises(CorruptionError, match="failed verification"):
        aurora_storage.open(f"lmdb://{path}")


# ---------------------------------------------------------------------- keys and envelopes


def _flip(path: Path, needle: bytes) -> None:
    """Flip one bit in the middle of every copy of ``needle`` in the data file (old
    copies in freed pages included, so the live one is hit)."""
    data = bytearray((path / "data.mdb").read_bytes())
    at = data.find(needle)
    assert at >= 0
    while at >= 0:
        data[at + len(needle) // 2] ^= 0x01
        at = data.find(needle, at + 1)
    (path / "data.mdb").write_bytes(bytes(data))


def test_a_flipped_key_byte_is_reported_not_returned(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put("t", "KEY-TO-DAMAGE-0123456789", "the value")
        repo.put("t", "zz", "other")
    _flip(path, b"KEY-TO-DAMAGE-0123456789")
    # verify=false: the point is the envelope, not the structural check at open.
    with aurora_storage.open(f"lmdb://{path}?verify=false") as repo:
        with pytest.raises(CorruptionError, match="checksum"):
            list(repo.items("t"))
        with pytest.raises(CorruptionError):
            list(repo.values("t"))
        report = repo.verify()
        assert report.problem_count == 1
        (problem,) = report.problems
        assert problem.tenant == "t"
        # The damaged key is named as it now reads (one character off).
        assert isinstance(problem.key, str)
        assert len(problem.key) == len("KEY-TO-DAMAGE-0123456789")
        assert problem.key != "KEY-TO-DAMAGE-0123456789"
        assert repo.get("t", "zz") == "other"


def _v1(value: bytes) -> bytes:
    return value + zlib.crc32(value).to_bytes(4, "little")


def test_a_store_written_with_envelope_v1_still_reads_and_writes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    # The exact bytes the previous release wrote: envelope v1, CRC of the value only.
    env = lmdb.open(str(path), lib_version=0)
    prefix = encode_tenant("t")
    with env.begin(write=True) as txn:
        txn.put(b"\x00aurora:lmdb", _v1(orjson.dumps({"envelope": 1, "lmdb_format": 1})))
        txn.put(b"\x00aurora:meta", _v1(orjson.dumps({"format": 1, "codec": "json"})))
        for i in range(50):
            txn.put(prefix + encode_key(i), _v1(orjson.dumps({"n": i})))
    env.close()
    with aurora_storage.open(f"lmdb://{path}") as repo:
        assert repo.stats()["envelope_version"] == 1
        assert repo.get("t", 7) == {"n": 7}
        assert [v["n"] for v in repo.values("t")] == list(range(50))
        repo.put("t", 50, {"n": 50})
        repo.put_many("t", {i: {"n": i} for i in range(51, 60)})
        assert repo.verify().ok
    with aurora_storage.open(f"lmdb://{path}") as repo:
        assert repo.count("t") == 60
        assert repo.get("t", 55) == {"n": 55}
    # The v1 store keeps v1: its new records carry the v1 CRC.
    env = lmdb.open(str(path), lib_version=0)
    with env.begin() as txn:
        raw = txn.get(prefix + encode_key(55))
    env.close()
    assert raw == _v1(orjson.dumps({"n": 55}))
    # A flipped value byte in a v1 store is still caught.
    _flip(path, b'{"n":33}')
    with (
        aurora_storage.open(f"lmdb://{path}?verify=false") as repo,
        pytest.raises(CorruptionError),
    ):
        repo.get("t", 33)


def test_new_stores_use_envelope_v3_covering_the_key(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put("t", 1, "one")
        assert repo.stats()["envelope_version"] == 3
    env = lmdb.open(str(path), lib_version=0)
    key = encode_tenant("t") + encode_key(1)
    with env.begin() as txn:
        raw = txn.get(key)
    env.close()
    assert raw is not None
    assert raw[:-4] == b'"one"'
    # xxHash32 of the value seeded with xxHash32 of the key, big endian (canonical).
    assert raw[-4:] == xxhash.xxh32_digest(b'"one"', xxhash.xxh32_intdigest(key))


def _v2(key: bytes, value: bytes) -> bytes:
    return value + zlib.crc32(key + value).to_bytes(4, "little")


def test_a_store_written_with_envelope_v2_still_reads_and_writes(tmp_path: Path) -> None:
    path = tmp_path / "s"
    # The exact bytes the previous release wrote: envelope v2, CRC of key and value.
    env = lmdb.open(str(path), lib_version=0)
    prefix = encode_tenant("t")
    meta, plugin = b"\x00aurora:meta", b"\x00aurora:lmdb"
    with env.begin(write=True) as txn:
        txn.put(plugin, _v2(plugin, orjson.dumps({"envelope": 2, "lmdb_format": 1})))
        txn.put(meta, _v2(meta, orjson.dumps({"format": 1, "codec": "json"})))
        for i in range(50):
            k = prefix + encode_key(i)
            txn.put(k, _v2(k, orjson.dumps({"n": i})))
    env.close()
    with aurora_storage.open(f"lmdb://{path}") as repo:
        assert repo.stats()["envelope_version"] == 2
        assert repo.get("t", 7) == {"n": 7}
        assert repo.get_many("t", [1, 2, 99]) == [{"n": 1}, {"n": 2}, None]
        assert [v["n"] for v in repo.values("t")] == list(range(50))
        repo.put("t", 50, {"n": 50})
        repo.put_many("t", {i: {"n": i} for i in range(51, 60)})
        with repo.batch() as b:
            b.put("t", 60, {"n": 60})
        assert repo.verify().ok
    with aurora_storage.open(f"lmdb://{path}") as repo:
        assert repo.count("t") == 61
        assert repo.get("t", 55) == {"n": 55}
    # The v2 store keeps v2: its new records carry the v2 CRC.
    env = lmdb.open(str(path), lib_version=0)
    with env.begin() as txn:
        raws = {i: txn.get(prefix + encode_key(i)) for i in (50, 55, 60)}
    env.close()
    for i, raw in raws.items():
        assert raw == _v2(prefix + encode_key(i), orjson.dumps({"n": i}))
    # A flipped value byte in a v2 store is still caught, naming the record.
    _flip(path, b'{"n":33}')
    with aurora_storage.open(f"lmdb://{path}?verify=false") as repo:
        with pytest.raises(CorruptionError) as info:
            repo.get("t", 33)
        assert info.value.stored_key == prefix + encode_key(33)
        assert (info.value.tenant, info.value.key) == ("t", 33)


def test_a_flipped_value_byte_in_an_envelope_v3_store_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put_many("t", {f"k{i:03}": f"VALUE-{i:03}-" + "v" * 30 for i in range(100)})
        repo.put("t", "single", "SINGLE-VALUE-" + "s" * 30)
    _flip(path, b"VALUE-042-")
    _flip(path, b"SINGLE-VALUE-")
    with aurora_storage.open(f"lmdb://{path}?verify=false") as repo:
        assert repo.stats()["envelope_version"] == 3
        with pytest.raises(CorruptionError, match="checksum") as info:
            repo.get("t", "k042")
        assert info.value.stored_key == encode_tenant("t") + encode_key("k042")
        assert (info.value.tenant, info.value.key) == ("t", "k042")
        with pytest.raises(CorruptionError) as info:
            repo.get("t", "single")
        assert info.value.key == "single"
        with pytest.raises(CorruptionError):
            list(repo.values("t"))
        with pytest.raises(CorruptionError):
            repo.get_many("t", ["k041", "k042"])
        assert repo.get("t", "k041") == "VALUE-041-" + "v" * 30
        report = repo.verify()
        assert sorted(str(p.key) for p in report.problems) == ["k042", "single"]


def test_the_v3_envelope_of_every_value_round_trips_and_catches_one_flip() -> None:
    # The readable forms agree with the stored layout, for any key and value.
    from aurora_storage_lmdb._envelope import SEEDS, intact, unwrap, wrap

    key, value = b"\x01t\x00\x20k\x00", b'{"a":1}'
    stored = wrap(value, SEEDS[3](key), 3)
    assert stored == value + xxhash.xxh32_digest(value, xxhash.xxh32_intdigest(key))
    assert unwrap(stored, SEEDS[3](key), 3, key=key, path="p") == value
    for i in range(len(stored)):
        damaged = bytearray(stored)
        damaged[i] ^= 0x40
        assert not intact(bytes(damaged), SEEDS[3](key), 3)
    assert not intact(stored, SEEDS[3](key + b"x"), 3)  # another key
    assert not intact(b"abc", SEEDS[3](key), 3)  # shorter than a trailer


# ---------------------------------------------------------------------- verify()


def test_verify_of_a_healthy_store(tmp_path: Path) -> None:
    with aurora_storage.open(f"lmdb://{tmp_path}/s") as repo:
        repo.put_many("a", {i: i for i in range(500)})
        repo.put_many("b", {str(i): [i] for i in range(300)})
        report = repo.verify()
    assert report.ok
    assert report.records == 800  # the metadata records are checked, not counted
    assert report.structure_checked
    assert report.problems == ()


def test_verify_names_every_damaged_record_and_checks_the_rest(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put_many("t", {f"k{i:03}": f"PAYLOAD-{i:03}-" + "p" * 20 for i in range(300)})
    for i in (10, 150, 299):
        _flip(path, f"PAYLOAD-{i:03}-".encode())
    with aurora_storage.open(f"lmdb://{path}?verify=false") as repo:
        report = repo.verify()
        assert not report.ok
        assert report.records == 300
        assert report.problem_count == 3
        assert [(p.tenant, p.key) for p in report.problems] == [
            ("t", "k010"),
            ("t", "k150"),
            ("t", "k299"),
        ]


def test_verify_reports_values_the_codec_cannot_decode(tmp_path: Path) -> None:
    path = tmp_path / "s"
    with aurora_storage.open(f"lmdb://{path}") as repo:
        repo.put("t", "good", 1)
        # Bytes under a valid envelope that are not JSON (written below the codec).
        repo.backend.put(encode_tenant("t") + encode_key("bad"), b"\xff not json")
        report = repo.verify()
    assert report.problem_count == 1
    (problem,) = report.problems
    assert (problem.tenant, problem.key) == ("t", "bad")
    assert "json" in problem.message


def test_async_verify(tmp_path: Path) -> None:
    import asyncio

    async def main() -> None:
        arepo = aurora_storage.open_async(f"lmdb://{tmp_path}/s")
        await arepo.put_many("t", {i: i for i in range(10)})
        report = await arepo.verify()
        assert report.ok
        assert report.records == 10
        await arepo.close()

    asyncio.run(main())


# ---------------------------------------------------------------------- paths and options


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"max_readers": 2**31}, "max_readers must be between 1 and 65536"),
        ({"max_readers": 0}, "max_readers"),
        ({"growth_factor": float("inf")}, "growth_factor must be a number"),
        ({"growth_factor": float("nan")}, "growth_factor"),
        ({"growth_factor": 1e9}, "at most 64"),
        ({"map_size": "1PiB"}, "map_size must be at most"),
        ({"max_map_size": 2**60}, "max_map_size must be at most"),
    ],
)
def test_out_of_range_options_are_refused_and_leave_nothing(
    tmp_path: Path, options: dict[str, Any], match: str
) -> None:
    with pytest.raises(ConfigurationError, match=match):
        aurora_storage.open(f"lmdb://{tmp_path}/a/s", **options)
    query = "&".join(f"{k}={v}" for k, v in options.items())
    with pytest.raises(ConfigurationError, match=match):
        aurora_storage.open(f"lmdb://{tmp_path}/a/s?{query}")
    assert list(tmp_path.iterdir()) == []


def test_bad_paths_are_refused_saying_what_to_fix_and_leave_nothing(tmp_path: Path) -> None:
    base = tmp_path / "base"
    base.mkdir()
    with pytest.raises(ConfigurationError, match="NUL character"):
        LMDBRepository(base / "a\x00b")
    with pytest.raises(ConfigurationError, match="NUL character"):
        aurora_storage.open(f"lmdb://{base}/a%00b")
    with pytest.raises(ConfigurationError, match="file names are limited to"):
        LMDBRepository(base / "new" / ("x" * 300) / "s")
    (base / "file").write_text("not a store")
    with pytest.raises(ConfigurationError, match="is a file, not a directory"):
        aurora_storage.open(f"lmdb://{base}/file")
    # A directory cannot be created below a regular file.
    with pytest.raises(ConfigurationError, match="cannot create the directory"):
        aurora_storage.open(f"lmdb://{base}/file/sub/store")
    with pytest.raises(ConfigurationError, match="is a directory, but subdir=false"):
        aurora_storage.open(f"lmdb://{base}?subdir=false")
    assert sorted(p.name for p in base.iterdir()) == ["file"]
    assert (base / "file").read_text() == "not a store"


def test_an_unwritable_place_is_a_configuration_error_and_leaves_nothing(
    tmp_path: Path,
) -> None:
    with small_filesystem(tmp_path / "ro") as mount:
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        with pytest.raises(ConfigurationError, match="choose a path this process may write"):
            aurora_storage.open(f"lmdb://{mount}/s")
        assert list(mount.iterdir()) == []


def test_a_map_the_process_may_not_have_is_a_configuration_error(tmp_path: Path) -> None:
    code = (
        "import resource, aurora_storage, os\n"
        "from aurora_storage.errors import ConfigurationError\n"
        "resource.setrlimit(resource.RLIMIT_AS, (4 << 30, 4 << 30))\n"
        "try:\n"
        f"    aurora_storage.open('lmdb://{tmp_path}/new/s', map_size='1TiB')\n"
        "except ConfigurationError as exc:\n"
        "    print('refused:', exc)\n"
        f"print(os.path.exists('{tmp_path}/new'))\n"
    )
    proc = run_child(code)
    assert_alive(proc)
    lines = proc.stdout.strip().splitlines()
    assert lines[0].startswith("refused:"), proc
    assert "lower map_size" in lines[0]
    assert lines[1] == "False"


def test_read_only_opens_create_and_change_no_side_files(tmp_path: Path) -> None:
    path = tmp_path / "s"
    _store_with_records(path, 50)
    # A store from before the clean-close record and the growth lock existed.
    for name in ("aurora-open.lock", "aurora-grow.lock"):
        (path / name).unlink()
    before = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    with aurora_storage.open(f"lmdb://{path}?read_only=true") as repo:
        assert repo.count("t") == 50
    after = {p.name: p.stat().st_mtime_ns for p in path.iterdir()}
    before.pop("lock.mdb")  # liblmdb's reader table
    after.pop("lock.mdb")
    assert after == before


def test_a_write_on_a_read_only_filesystem_is_told_how_to_write(tmp_path: Path) -> None:
    # Breaker finding: a put on a read-only filesystem was advised to "open the store
    # with read_only=true", which fixes no write.
    with small_filesystem(tmp_path / "ro") as mount:
        with aurora_storage.open(f"lmdb://{mount}/s") as repo:
            repo.put("t", "k", "v")
        subprocess.run(["mount", "-o", "remount,ro", str(mount)], check=True)
        with pytest.raises(ConfigurationError) as info:
            aurora_storage.open(f"lmdb://{mount}/s")
        text = str(info.value)
        assert "read-only filesystem" in text, text
        assert "copy the store to a writable place" in text, text
        assert "read_only=true" in text, text  # reading still works that way
        with aurora_storage.open(f"lmdb://{mount}/s?read_only=true") as repo:
            assert repo.get("t", "k") == "v"


def test_a_full_disk_at_commit_says_to_free_space_and_retry(tmp_path: Path) -> None:
    # Breaker finding: liblmdb's ENOSPC at commit (lmdb.DiskError, seen with sync=true
    # on a filling tmpfs) became "mdb_txn_commit: No space left on device" with no
    # advice, where the short-write (EIO) kind said to free space and retry.
    from aurora_storage_lmdb._errors import translate

    err = translate(
        lmdb.DiskError("mdb_txn_commit: No space left on device"),
        "put",
        path=str(tmp_path),
        max_readers=126,
    )
    assert isinstance(err, StorageFullError)
    assert "Free space and retry" in str(err)
    assert "No space left on device" in str(err)
