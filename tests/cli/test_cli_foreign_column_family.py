"""A RocksDB store another program wrote is refused wherever its records are: in a column
family other than RocksDB's default one (which aurora-storage never creates) as well as
in the default one, by every open, every command - ``restore --yes`` included, which
replaced and deleted a TypeScript store - and ``import-seed`` says what it cannot read
instead of importing 0 records with success.

Breaker findings: a store whose records were only in a column family ``events`` was
taken for an empty one, adopted and written into (every command then showed it empty,
exit 0), and ``import-seed`` imported 0 of its records with exit 0; ``restore BACKUP
rocksdb:TS_STORE --yes`` deleted a TypeScript store (exit 0, no ``.replaced`` copy)."""

from __future__ import annotations

import hashlib
import os
import tempfile
from pathlib import Path

import pytest
import rocksdict
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage._stores import MARKER_NAME
from aurora_storage.errors import ForeignStoreError
from aurora_storage.migrate import SeedSourceError, import_seed
from aurora_storage_rocksdb import RocksDBRepository

from .conftest import run_cli

_NO_STORE = 4

Records = dict[bytes, bytes]


def build_store(path: Path, default: Records, families: dict[str, Records]) -> None:
    """A store as another program leaves it: raw records in the default column family
    and in ``families``, no rocksdict side file."""
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    for key, value in default.items():
        db[key] = value
    for name, records in families.items():
        family = db.create_column_family(name, rocksdict.Options(raw_mode=True))
        for key, value in records.items():
            family[key] = value
        del family
    db.close()
    os.remove(path / "rocksdict-config.json")


def fingerprint(path: Path) -> dict[str, tuple[int, str]]:
    return {
        name: ((path / name).stat().st_size, hashlib.sha256((path / name).read_bytes()).hexdigest())
        for name in sorted(os.listdir(path))
    }


EVENTS = {b'acme:"event:123"': b'{"type":"OrderCreated"}'}

# RocksDB takes any name but "default" (which is always there); NUL cannot be passed.
family_names = st.text(
    st.characters(exclude_categories=["Cs"], exclude_characters="\x00"),
    min_size=1,
    max_size=12,
).filter(lambda name: name != "default")
records = st.dictionaries(st.binary(min_size=1, max_size=8), st.binary(max_size=8), max_size=3)


@settings(
    max_examples=25,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    families=st.dictionaries(family_names, records, min_size=1, max_size=3),
    default=st.sampled_from([{}, EVENTS]),
)
def test_a_store_with_a_column_family_is_refused_by_every_open(
    families: dict[str, Records], default: Records
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "events"
        build_store(store, default, families)
        before = fingerprint(store)
        # read_only first, then read_write: in one process the second open raised
        # StoreLockedError "(this process)" after the first had opened the store.
        for url in (
            f"rocksdb://{store}?mode=read_only",
            f"rocksdb://{store}",
            f"rocksdb://{store}?mode=secondary",
            f"rocksdb://{store}?mode=read_only",
        ):
            with pytest.raises(ForeignStoreError) as info:
                aurora_storage.open(url).close()
            message = str(info.value)
            assert str(store) in message
            assert "column famil" in message
            assert repr(sorted(families)[0]) in message
            assert "\n" not in message
            assert fingerprint(store) == before, url
        with pytest.raises(ForeignStoreError):
            RocksDBRepository(str(store))
        assert fingerprint(store) == before
        assert rocksdict.Rdict.list_cf(str(store)) == ["default", *families]


def test_the_command_line_refuses_a_column_family_store_with_status_4(tmp_path: Path) -> None:
    store = tmp_path / "events"
    build_store(store, {}, {"events": EVENTS})
    before = fingerprint(store)
    url = f"rocksdb:{store}"
    ours = tmp_path / "ours"
    with aurora_storage.open(f"rocksdb://{ours}") as repo:
        repo.put("acme", "k", 1)
    backup = tmp_path / "backup"
    assert run_cli("backup", "-q", f"rocksdb:{ours}", str(backup)).returncode == 0
    dump = tmp_path / "dump.jsonl"
    assert run_cli("export", f"rocksdb:{ours}", "-o", str(dump)).returncode == 0
    ts_source = tmp_path / "ts"
    build_store(ts_source, EVENTS, {})
    for args in (
        ("info", url),
        ("info", f"{url}?mode=read_only"),
        ("tenants", url),
        ("keys", url, "acme"),
        ("count", f"{url}?mode=secondary", "acme"),
        ("verify", url),
        ("export", url, "-o", str(tmp_path / "out.jsonl")),
        ("put", url, "acme", "x", "1"),
        ("drop-tenant", url, "acme", "--yes"),
        ("import", url, str(dump)),
        ("copy", url, "memory://"),
        ("copy", "memory://", url, "--resume"),
        ("backup", url, str(tmp_path / "bk2")),
        ("compact", url),
        ("restore", str(backup), url, "--yes"),
        ("import-seed", str(ts_source), url),
    ):
        done = run_cli(*args)
        err = done.stderr.decode()
        assert done.returncode == _NO_STORE, (args, done.stdout, err)
        assert err.count("\n") == 1, err  # one line
        if args[0] != "import-seed":  # import-seed's own wording for its target
            assert "column famil" in err, (args, err)
        assert fingerprint(store) == before, args
    assert not Path(f"{store}.replaced").exists()
    assert not (tmp_path / "bk2").exists()


@pytest.mark.parametrize("kind", ["default", "column family"])
def test_restore_yes_never_replaces_a_store_another_program_wrote(
    tmp_path: Path, kind: str
) -> None:
    store = tmp_path / "events"
    if kind == "default":
        build_store(store, EVENTS, {})
    else:
        build_store(store, {}, {"events": EVENTS})
    before = fingerprint(store)
    ours = tmp_path / "ours"
    with aurora_storage.open(f"rocksdb://{ours}") as repo:
        repo.put("acme", "k", 1)
    backup = tmp_path / "backup"
    assert run_cli("backup", "-q", f"rocksdb:{ours}", str(backup)).returncode == 0
    for extra in (("--yes",), ()):
        done = run_cli("restore", str(backup), f"rocksdb:{store}", *extra)
        err = done.stderr.decode()
        assert done.returncode == _NO_STORE, (extra, done.stdout, err)
        assert err.startswith("error: ForeignStoreError: "), err
        assert "nothing was changed" in err or "nothing was written" in err, err
        assert fingerprint(store) == before
        assert sorted(os.listdir(tmp_path)) == ["backup", "events", "ours"]


def test_restore_still_replaces_an_unmarked_store_of_ours(tmp_path: Path) -> None:
    # Adopted without a marker (see test_cli_foreign_store.py): an empty engine store and
    # one holding the metadata record. restore replaces both.
    ours = tmp_path / "ours"
    with aurora_storage.open(f"rocksdb://{ours}") as repo:
        repo.put("acme", "k", 1)
    backup = tmp_path / "backup"
    assert run_cli("backup", "-q", f"rocksdb:{ours}", str(backup)).returncode == 0
    unmarked = tmp_path / "unmarked"
    with aurora_storage.open(f"rocksdb://{unmarked}") as repo:
        repo.put("acme", "old", 2)
    os.remove(unmarked / MARKER_NAME)
    empty = tmp_path / "empty"
    build_store(empty, {}, {})
    for target in (unmarked, empty):
        done = run_cli("restore", "-q", str(backup), f"rocksdb:{target}", "--yes")
        assert done.returncode == 0, done.stderr
        with aurora_storage.open(f"rocksdb://{target}?mode=read_only") as repo:
            assert dict(repo.items("acme")) == {"k": 1}


@settings(
    max_examples=15,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture],
)
@given(
    families=st.dictionaries(family_names, records, min_size=1, max_size=3).filter(
        lambda families: any(families.values())
    ),
    default=st.sampled_from([{}, EVENTS]),
)
def test_import_seed_refuses_records_in_a_column_family_it_does_not_read(
    families: dict[str, Records], default: Records
) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        source = Path(tmp) / "events"
        build_store(source, default, families)
        before = fingerprint(source)
        target = Path(tmp) / "imported"
        for dry_run in (True, False):
            with pytest.raises(SeedSourceError) as info:
                import_seed(source, f"lmdb://{target}", dry_run=dry_run)
            message = str(info.value)
            assert "column famil" in message
            full = sorted(name for name, held in families.items() if held)
            assert repr(full[0]) in message
            assert not target.exists()
            assert fingerprint(source) == before


def test_import_seed_on_the_command_line_says_what_it_cannot_read(tmp_path: Path) -> None:
    source = tmp_path / "events"
    build_store(source, {}, {"events": EVENTS})
    done = run_cli("import-seed", str(source), f"lmdb:{tmp_path}/imported")
    err = done.stderr.decode()
    assert done.returncode == _NO_STORE, (done.stdout, err)
    assert err.startswith("error: SeedSourceError: ") or "column famil" in err, err
    assert "'events'" in err
    assert err.count("\n") == 1
    assert not (tmp_path / "imported").exists()
    # An empty column family beside the records hides nothing: they are imported.
    other = tmp_path / "other"
    build_store(other, EVENTS, {"empty": {}})
    done = run_cli("import-seed", str(other), f"lmdb:{tmp_path}/imported2")
    assert done.returncode == 0, done.stderr
    with aurora_storage.open(f"lmdb://{tmp_path}/imported2") as repo:
        assert repo.get("acme", "event:123") == {"type": "OrderCreated"}
