"""Values over LMDB's record size are refused before the engine, as values (LMDB).

LMDB stores at most 4 GiB - 1 byte per record (MAXDATASIZE); the engine's own refusal
(MDB_BAD_VALSIZE) names keys and values alike, so the plugin checks the value's size
first and raises ValueTooLargeError (an InvalidArgumentError) naming the record, the
size and the limit. Most tests lower the limit (the module constant, read when a store
is opened) so no test allocates 4 GiB; the real case runs only where memory allows.
"""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

import aurora_storage
from aurora_storage.errors import InvalidKeyError, ValueTooLargeError
from aurora_storage_lmdb import _backend

LIMIT = 1000


@pytest.fixture
def low_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_backend, "MAX_VALUE_SIZE", LIMIT)


def test_the_limit_is_lmdbs_record_size_less_the_envelope_and_the_change_logs_room() -> None:
    # MAXDATASIZE (0xffffffff) in liblmdb's mdb.c; 4 bytes of checksum; a change-log
    # record adds a tag byte, the key's 2-byte length and the key (at most 511 bytes).
    assert _backend.MAX_VALUE_SIZE == 0xFFFFFFFF - 4 - 3 - 511


_WRITES: dict[str, Callable[[Any, bytes], object]] = {
    "put": lambda repo, v: repo.put("t", "big", v),
    "put_many": lambda repo, v: repo.put_many("t", [("a", b"a"), ("big", v), ("z", b"z")]),
    "put_many_iter": lambda repo, v: repo.put_many(
        "t", iter([("a", b"a"), ("big", v), ("z", b"z")])
    ),
    "insert": lambda repo, v: repo.insert("t", "big", v),
    "compare_and_set": lambda repo, v: repo.compare_and_set("t", "big", v, version=None),
    "batch_put": lambda repo, v: _batch(
        repo, lambda b: (b.put("t", "a", b"a"), b.put("t", "big", v))
    ),
    "batch_put_delete": lambda repo, v: _batch(
        repo, lambda b: (b.delete("t", "gone"), b.put("t", "big", v))
    ),
    "batch_append": lambda repo, v: _batch(repo, lambda b: b.append("t", "seq", v)),
}


def _batch(repo: Any, fill: Callable[[Any], object]) -> None:
    with repo.batch() as b:
        fill(b)


@pytest.mark.usefixtures("low_limit")
@pytest.mark.parametrize("change_log", ["false", "true"])
@pytest.mark.parametrize("write", sorted(_WRITES))
def test_an_oversized_value_is_refused_as_a_value_naming_the_record(
    tmp_path: Path, write: str, change_log: str
) -> None:
    url = f"lmdb://{tmp_path}/s?codec=raw&change_log={change_log}"
    with aurora_storage.open(url) as repo:
        with pytest.raises(ValueTooLargeError) as info:
            _WRITES[write](repo, b"\x01" * (LIMIT + 1))
        err = info.value
        assert not isinstance(err, InvalidKeyError)
        assert isinstance(err, ValueError)
        assert (err.tenant, err.key) == ("t", "big" if write != "batch_append" else ("seq", 1))
        text = str(err)
        assert f"{LIMIT + 1:,} bytes" in text
        assert f"at most {LIMIT:,} bytes" in text
        assert "4 GiB" in text
        assert "Nothing was written" in text
        assert (err.size, err.limit) == (LIMIT + 1, LIMIT)
        assert "MDB_BAD_VALSIZE" not in text
        # Nothing of the refused write was stored; a value at the limit is.
        assert repo.count("t") == 0
        assert repo.last_sequence("t", "seq") == 0
        _WRITES[write](repo, b"\x02" * LIMIT)
        big = repo.get("t", "big") if write != "batch_append" else repo.get("t", ("seq", 1))
        assert big == b"\x02" * LIMIT


def _available_memory() -> int:
    try:
        with open("/proc/meminfo") as f:
            for line in f:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except OSError:
        pass
    return 0


_REAL_CASE = """
import json, resource, sys
# At most 8 GiB of address space: the 4 GiB value, the map and the interpreter fit; a
# regression that copies the value again fails here instead of exhausting the machine.
resource.setrlimit(resource.RLIMIT_AS, (8 << 30, 8 << 30))
import aurora_storage
from aurora_storage.errors import StorageError
value = b"\\x01" * (2**32 - 4)  # stored with its 4-byte checksum: 2**32 bytes
with aurora_storage.open(f"lmdb://{sys.argv[1]}?codec=raw") as repo:
    try:
        repo.put("t", "big", value)
        out = {"error": None}
    except StorageError as exc:
        out = {"error": type(exc).__name__, "key": [exc.tenant, exc.key], "text": str(exc)}
    del value
    out["count"] = repo.count("t")
print(json.dumps(out))
"""


@pytest.mark.slow
@pytest.mark.skipif(
    _available_memory() < 8 * 2**30, reason="needs 8 GiB of free memory (a 4 GiB value)"
)
def test_a_4_gib_value_is_refused_before_the_engine(tmp_path: Path) -> None:
    # The real case, in a child process with a cap on its memory. (put_many's is the
    # same check, above, with a lowered limit: it wraps a second 4 GiB copy before
    # refusing it.)
    proc = subprocess.run(
        [sys.executable, "-c", _REAL_CASE, str(tmp_path / "s")],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    out = json.loads(proc.stdout)
    assert out["error"] == "ValueTooLargeError", out
    assert out["key"] == ["t", "big"]
    assert "4,294,967,292 bytes" in out["text"]
    assert out["count"] == 0
