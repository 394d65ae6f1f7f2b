"""Importing stores written by the TypeScript package (``tenantId:JSON(key)`` keys, JSON
values), built here with rocksdict exactly as that package lays them out."""

from __future__ import annotations

import hashlib
import json
import os
from pathlib import Path
from typing import Any

import pytest
import rocksdict
from hypothesis import given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import errors
from aurora_storage.migrate import (
    SeedKeyError,
    SeedSourceError,
    SeedSplit,
    import_seed,
    split_seed_key,
)

from .conftest import run_cli


def js_stringify(value: Any) -> str:
    """``JSON.stringify`` for the values used here (no whitespace, non-ASCII as is)."""
    return json.dumps(value, separators=(",", ":"), ensure_ascii=False)


def build_seed_store(path: Path, records: list[tuple[bytes, bytes]]) -> None:
    """A RocksDB store holding exactly ``records``, as the TypeScript package leaves it
    (rocksdict's own side file removed: the package's binding writes none)."""
    db = rocksdict.Rdict(str(path), options=rocksdict.Options(raw_mode=True))
    for key, value in records:
        db[key] = value
    db.close()
    os.remove(path / "rocksdict-config.json")


def seed_record(tenant: str, key: Any, value: Any) -> tuple[bytes, bytes]:
    """One record in the package's layout: ``tenant + ":" + JSON.stringify(key)``."""
    return (f"{tenant}:{js_stringify(key)}".encode(), js_stringify(value).encode())


def fingerprint(path: Path) -> dict[str, tuple[int, int, str]]:
    """Every file under ``path``: size, modification time and content hash."""
    out = {}
    for name in sorted(os.listdir(path)):
        p = path / name
        out[name] = (
            p.stat().st_size,
            p.stat().st_mtime_ns,
            hashlib.sha256(p.read_bytes()).hexdigest(),
        )
    return out


def expected_items(pairs: list[tuple[str, Any, Any]]) -> dict[str, list[tuple[Any, Any]]]:
    """What a target must hold: the same pairs put through the repository API."""
    with aurora_storage.open("memory://") as ref:
        for tenant, key, value in pairs:
            ref.put(tenant, key, value)
        return {t: list(ref.items(t)) for t in sorted(ref.tenants())}


#: Tenants and keys that defeat a split at the first or the last ':'.
GOOD: list[tuple[str, Any, Any]] = [
    ("acme", "event:123", {"type": "OrderCreated", "orderId": "123"}),
    ("acme", "event:124", {"type": "OrderPaid"}),
    ("a", 1, "tenant a, number key"),
    ("a:1", 2, "tenant with ':' and a digit"),
    ("a:b", "c:d", [1, 2, 3]),
    ("a:b", ["x:1", 7, "y"], None),
    ("a:b:", 'quote " and colon :', True),
    ('x:"y', {"k:1": "v:2", "n": [1, {"z": ":"}]}, 3.5),
    ("ünï:cödé", "ключ:1", {"nested": {"deep": [1, "2:3"]}}),
    ("tenant1", {"tenantId": "tenant1", "timestamp": 1700000000000, "sequence": 1}, {}),
    # Beyond 2**53 (JSON.parse reads every number as a double: this one is one exactly).
    ("big", 2**60, "an integer beyond JavaScript's safe integers as a key"),
]


def test_import_recovers_every_tenant_and_key(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    build_seed_store(src, [seed_record(*r) for r in GOOD])
    before = fingerprint(src)
    target = f"lmdb://{tmp_path}/out"
    report = import_seed(src, target)
    assert report.ok, report.problems
    assert (report.records, report.imported) == (len(GOOD), len(GOOD))
    assert report.tenants["a:b"] == 2
    with aurora_storage.open(target) as repo:
        got = {t: list(repo.items(t)) for t in sorted(repo.tenants())}
    assert got == expected_items(GOOD)
    # The source was only read: not a file added, changed or touched.
    assert fingerprint(src) == before


def test_import_into_rocksdb_and_again_overwrites(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    build_seed_store(src, [seed_record(*r) for r in GOOD])
    target = f"rocksdb://{tmp_path}/out"
    first = import_seed(src, target)
    again = import_seed(src, target)
    assert first.to_json()["imported"] == again.to_json()["imported"] == len(GOOD)
    with aurora_storage.open(target) as repo:
        got = {t: list(repo.items(t)) for t in sorted(repo.tenants())}
    assert got == expected_items(GOOD)


BAD: list[tuple[bytes, bytes, str]] = [
    (b"acme:undefined", b"{}", "unsplittable"),  # JSON.stringify(undefined)
    (b"no-separator", b"1", "unsplittable"),
    (b"acme:order-7", b"1", "unsplittable"),  # written by other code: no JSON after a ":"
    (b"\xff\xfe:1", b"1", "not-utf8"),
    (b'acme:"not json value"', b"{oops", "bad-value"),
    (b'acme:"nan value"', b"NaN", "bad-value"),
    (b":1", b"1", "refused"),  # an empty tenant
    (b'acme:"' + b"k" * 600 + b'"', b"1", "refused"),  # over the key-size limit
    (b'acme:{"x":1,"y":2}', b'"first"', ""),
    (b'acme:{"y":2,"x":1}', b'"second"', "collision"),  # the same dict, as aurora compares
    (b"acme:0.5e1", b'"five, written 0.5e1"', "collision"),  # stored before acme:5, still loses
    (b"acme:5", b'"five"', ""),
    (b"acme:1", b'"one"', ""),
    (b"acme:1.0", b'"one point zero"', "collision"),  # 1.0 is the key 1
]


def test_problems_are_reported_never_guessed(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    build_seed_store(src, [seed_record(*r) for r in GOOD] + [(k, v) for k, v, _ in BAD])
    target = f"lmdb://{tmp_path}/out"
    report = import_seed(src, target)
    reasons = [r for _, _, r in BAD if r]
    assert not report.ok
    assert report.problem_count == {r: reasons.count(r) for r in set(reasons)}
    assert report.imported == len(GOOD) + 3
    assert report.records == len(GOOD) + len(BAD)
    by_key = {p.key: p for p in report.problems}
    assert by_key["\\xff\\xfe:1"].reason == "not-utf8"
    assert "acme:undefined" in by_key["acme:undefined"].message
    assert '\'acme:{"x":1,"y":2}\'' in by_key['acme:{"y":2,"x":1}'].message
    with aurora_storage.open(target) as repo:
        # The first of the colliding keys (in stored key order) won; nothing overwrote it.
        assert repo.get("acme", {"y": 2, "x": 1}) == "first"
        assert repo.get("acme", 5) == "five"
        assert repo.get("acme", 1) == "one"
        assert not repo.has("acme", "undefined")
        assert not repo.has("acme", "order-7")
        assert sorted(repo.tenants()) == sorted({t for t, _, _ in GOOD})


def test_known_tenants_resolve_and_restrict(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    build_seed_store(
        src,
        [
            seed_record("acme", "k", 1),
            (b"acme:undefined", b"2"),  # resolved: tenant acme, text key "undefined"
            seed_record("a:b", 1, 3),  # JSON names a:b; tenant a is known too -> ambiguous
            seed_record("zeta", "k", 4),  # not a known tenant
            (b"acme:x:junk", b"5"),  # two known tenants are prefixes, no JSON -> ambiguous
        ],
    )
    before = fingerprint(src)
    plain = import_seed(src, None, dry_run=True)
    assert plain.problem_count == {"unsplittable": 2}

    report = import_seed(src, f"lmdb://{tmp_path}/out", known_tenants=["acme", "a", "acme:x"])
    assert report.problem_count == {"ambiguous": 2, "unknown-tenant": 1}
    assert report.text_keys == 1
    ambiguous = {p.key: p.candidates for p in report.problems if p.reason == "ambiguous"}
    assert ambiguous == {"a:b:1": ("a:b", "a"), "acme:x:junk": ("acme", "acme:x")}
    with aurora_storage.open(f"lmdb://{tmp_path}/out") as repo:
        assert dict(repo.items("acme")) == {"k": 1, "undefined": 2}
        assert not repo.has("zeta", "k")

    # Naming the right tenants resolves the rest.
    fixed = import_seed(src, f"lmdb://{tmp_path}/out2", known_tenants=["acme", "a:b", "zeta"])
    assert fixed.ok, fixed.problems
    with aurora_storage.open(f"lmdb://{tmp_path}/out2") as repo:
        assert repo.get("a:b", 1) == 3
        assert repo.get("zeta", "k") == 4
        assert repo.get("acme", "x:junk") == 5
    assert fingerprint(src) == before


def test_a_text_key_never_overwrites_the_json_string_key(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    build_seed_store(src, [(b"acme:undefined", b"1"), seed_record("acme", "undefined", 2)])
    report = import_seed(src, f"lmdb://{tmp_path}/out", known_tenants=["acme"])
    assert report.problem_count == {"collision": 1}
    assert report.problems[0].key == "acme:undefined"
    with aurora_storage.open(f"lmdb://{tmp_path}/out") as repo:
        assert dict(repo.items("acme")) == {"undefined": 2}


def test_dry_run_writes_nothing(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    build_seed_store(src, [seed_record(*r) for r in GOOD] + [(k, v) for k, v, _ in BAD])
    before = fingerprint(src)
    dry = import_seed(src, f"lmdb://{tmp_path}/out", dry_run=True)
    assert not (tmp_path / "out").exists()
    assert fingerprint(src) == before
    real = import_seed(src, f"lmdb://{tmp_path}/out")
    # The dry run found exactly what the real import then met.
    assert dry.to_json() | {"dry_run": False} == real.to_json()


def test_sources_that_are_not_seed_stores(tmp_path: Path) -> None:
    with pytest.raises(SeedSourceError, match="does not exist"):
        import_seed(tmp_path / "missing", "memory://")
    (tmp_path / "empty").mkdir()
    with pytest.raises(SeedSourceError, match="no CURRENT"):
        import_seed(tmp_path / "empty", "memory://")
    with aurora_storage.open(f"rocksdb://{tmp_path}/aurora") as repo:
        repo.put("t", "k", 1)
    with pytest.raises(SeedSourceError, match="aurora-storage store"):
        import_seed(tmp_path / "aurora", "memory://")
    src = tmp_path / "seed"
    build_seed_store(src, [seed_record("t", "k", 1)])
    with pytest.raises(errors.ConfigurationError, match="source store itself"):
        import_seed(src, f"rocksdb://{src}")
    assert not (src / "aurora-store.json").exists()


# ------------------------------------------------------------------ the split rule

json_values = st.recursive(
    st.none()
    | st.booleans()
    # JavaScript's integers (beyond, JSON.parse reads the nearest double: see
    # test_import_seed_recovery).
    | st.integers(min_value=-(2**53), max_value=2**53)
    | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=12,
)
#: Tenants rich in what confuses a split: ':', quotes, backslashes, brackets, digits.
tenants = st.text(alphabet=st.sampled_from(':"\\{}[],0123456789abé -'), min_size=1) | st.text(
    min_size=1
)


@settings(max_examples=300, deadline=None)
@given(tenant=tenants, key=json_values)
def test_split_recovers_tenant_and_key(tenant: str, key: Any) -> None:
    text = f"{tenant}:{js_stringify(key)}"
    assert split_seed_key(text) == SeedSplit(tenant, key)
    assert split_seed_key(text, known_tenants={tenant}) == SeedSplit(tenant, key)
    # The proof in aurora_storage.migrate._split, checked: no other ':' of the whole
    # stored key is followed by a JSON text.
    fits = []
    for i, ch in enumerate(text):
        if ch == ":":
            try:
                json.loads(text[i + 1 :])
            except ValueError:
                continue
            fits.append(i)
    assert fits == [len(tenant)]


@settings(max_examples=200, deadline=None)
@given(tenant=tenants, text_key=st.text().filter(lambda s: s.strip() == s))
def test_text_after_a_known_tenant(tenant: str, text_key: str) -> None:
    stored = f"{tenant}:{text_key}"
    try:
        json.loads(text_key)
        is_json = bool(text_key)
    except ValueError:
        is_json = False
    reading: SeedSplit | SeedKeyError
    try:
        reading = split_seed_key(stored, known_tenants={tenant})
    except SeedKeyError as exc:
        reading = exc
    if isinstance(reading, SeedKeyError):
        # Only when the stored key also reads as another (unknown) tenant's JSON key.
        assert reading.reason == "ambiguous"
        assert tenant in reading.candidates
        return
    assert reading.tenant == tenant
    if not is_json:
        assert reading == SeedSplit(tenant, text_key, text_key=True)


@settings(max_examples=300, deadline=None)
@given(
    text=st.text(alphabet=st.sampled_from(':"ab1[] '), max_size=12),
    known=st.sets(st.text(alphabet=st.sampled_from(':"ab1[] '), min_size=1, max_size=6)),
)
def test_known_tenant_candidates_match_the_definition(text: str, known: set[str]) -> None:
    # The split finds its known-tenant candidates from the key's own ':' positions (not
    # by testing every known tenant: 20,000 tenant ids made each key cost milliseconds).
    # Same outcome as the definition: every known tenant t with text.startswith(t + ':').
    expected = sorted(t for t in known if text.startswith(t + ":"))
    try:
        got: SeedSplit | SeedKeyError = split_seed_key(text, known_tenants=known)
    except SeedKeyError as exc:
        got = exc
    if isinstance(got, SeedSplit):
        if got.text_key:
            assert expected == [got.tenant]
        else:
            assert got.tenant in known or got.tenant not in expected
    elif got.reason == "ambiguous":
        assert set(expected) <= set(got.candidates)
        assert set(got.candidates) - set(expected) <= {text.split(":")[0]} | {
            c for c in got.candidates if c not in known
        }
    else:
        assert not expected


# ------------------------------------------------------------ the command line


def test_cli_import_seed(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    build_seed_store(src, [seed_record(*r) for r in GOOD] + [(b"acme:undefined", b"1")])
    target = f"lmdb://{tmp_path}/out"

    dry = run_cli("import-seed", str(src), target, "--dry-run")
    assert dry.returncode == 5, dry.stderr
    err = dry.stderr.decode()
    assert f"would import {len(GOOD)} of {len(GOOD) + 1} records" in err
    assert "not imported (unsplittable)" in err
    assert "acme:undefined" in err
    assert not (tmp_path / "out").exists()

    tenants_file = tmp_path / "tenants.txt"
    tenants_file.write_text(
        "# tenants of the application\n" + "\n".join(sorted({t for t, _, _ in GOOD})) + "\n\n"
    )
    done = run_cli("import-seed", str(src), target, "--tenants-file", str(tenants_file), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["imported"] == report["records"] == len(GOOD) + 1
    assert report["text_keys"] == 1
    assert report["problems"] == []
    with aurora_storage.open(target) as repo:
        assert repo.get("acme", "undefined") == 1
        assert repo.get("a:b", "c:d") == [1, 2, 3]

    again = run_cli("import-seed", str(src), target, "--tenant-id", "acme", "--json", "-q")
    assert again.returncode == 5
    assert json.loads(again.stdout)["problem_count"] == {"unknown-tenant": len(GOOD) - 2}

    missing = run_cli("import-seed", str(tmp_path / "nope"), target)
    assert missing.returncode == 4
    assert missing.stderr.decode().startswith("error: NoStoreError: no RocksDB store at")


# ------------------------------------------------------------- review findings


def test_a_target_that_is_no_aurora_store_is_refused(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    build_seed_store(src, [seed_record(*r) for r in GOOD])
    other = tmp_path / "other-ts-store"  # another TypeScript store: never spoil it
    build_seed_store(other, [seed_record("t", "k", 1)])
    plain = tmp_path / "plain"  # any non-empty folder that holds no aurora store
    plain.mkdir()
    (plain / "notes.txt").write_text("mine")
    for folder, scheme in ((other, "rocksdb"), (plain, "rocksdb"), (plain, "lmdb")):
        before = fingerprint(folder)
        with pytest.raises(errors.ConfigurationError, match="no aurora-storage store"):
            import_seed(src, f"{scheme}://{folder}")
        done = run_cli("import-seed", str(src), f"{scheme}://{folder}")
        assert done.returncode == 4, done.stderr
        err = done.stderr.decode()
        assert str(folder) in err
        assert "holds no aurora-storage store" in err
        assert "empty directory" in err  # says what to do
        assert fingerprint(folder) == before
    # An empty folder, or one holding an aurora store of the same engine, is a target.
    (tmp_path / "empty").mkdir()
    assert import_seed(src, f"lmdb://{tmp_path}/empty").ok
    assert import_seed(src, f"lmdb://{tmp_path}/empty").ok


def test_a_target_holding_the_other_engines_store(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    build_seed_store(src, [seed_record(*r) for r in GOOD])
    with aurora_storage.open(f"rocksdb://{tmp_path}/rocks") as repo:
        repo.put("t", "k", 1)
    before = fingerprint(tmp_path / "rocks")
    done = run_cli("import-seed", str(src), f"lmdb://{tmp_path}/rocks")
    put = run_cli("put", f"lmdb://{tmp_path}/rocks", "t", "k", "2")
    assert done.returncode == put.returncode == 4, done.stderr
    assert "holds a rocksdb store, not a lmdb one" in done.stderr.decode()
    assert "holds a rocksdb store, not a lmdb one" in put.stderr.decode()
    assert fingerprint(tmp_path / "rocks") == before


def test_lone_surrogates_in_keys_and_tenants_are_refused(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    # JSON.stringify writes a lone surrogate as an escape: valid UTF-8 on disk.
    lone = [
        (b'acme:"\\ud800"', b"1"),
        (b'acme:["x","\\udfff"]', b"2"),
        (b'acme:{"\\ud83d":1}', b"3"),
        ('bad\udc80tenant:"k"'.encode("utf-8", "surrogatepass"), b"4"),
        (b'acme:"value"', b'"\\ud800"'),
    ]
    build_seed_store(src, [seed_record(*r) for r in GOOD] + lone)
    target = f"lmdb://{tmp_path}/out"
    report = import_seed(src, target)
    assert report.imported == len(GOOD)
    reasons = {p.key: p.reason for p in report.problems}
    assert len(reasons) == len(lone)
    # The tenant's surrogate bytes are no UTF-8 at all; the JSON escapes are refused.
    assert report.problem_count == {"refused": 4, "not-utf8": 1}
    assert "lone surrogate" in next(p.message for p in report.problems if "ud800" in p.key)
    exported = run_cli("export", target)
    assert exported.returncode == 0, exported.stderr
    listed = run_cli("keys", target, "acme")
    assert listed.returncode == 0, listed.stderr


def _many_problems(tmp_path: Path, n: int) -> Path:
    src = tmp_path / "seed"
    build_seed_store(
        src,
        [seed_record("acme", "good", 1)] + [(f"bad-{i:05d}".encode(), b"1") for i in range(n)],
    )
    return src


def test_problems_beyond_the_cap_are_marked_and_all_go_to_a_file(tmp_path: Path) -> None:
    n = 1000 + 37
    src = _many_problems(tmp_path, n)
    report = import_seed(src, None, dry_run=True)
    out = report.to_json()
    assert out["problems_truncated"] is True
    assert out["not_imported"] == n
    assert len(out["problems"]) == 1000

    problems = tmp_path / "problems.jsonl"
    target = f"lmdb://{tmp_path}/out"
    done = run_cli("import-seed", str(src), target, "--problems-file", str(problems))
    assert done.returncode == 5
    err = done.stderr.decode()
    assert f"... and {n - 20} more (all are in {problems})" in err
    lines = [json.loads(line) for line in problems.read_text().splitlines()]
    assert [p["key"] for p in lines] == [f"bad-{i:05d}" for i in range(n)]
    assert {p["reason"] for p in lines} == {"unsplittable"}

    bare = run_cli("import-seed", str(src), target)
    assert f"... and {n - 20} more (use --problems-file F to get all)" in bare.stderr.decode()
    js = run_cli("import-seed", str(src), target, "--json")
    got = json.loads(js.stdout)
    assert got["problems_truncated"] is True
    assert got["not_imported"] == n
    few = run_cli("import-seed", str(_many_problems(tmp_path / "few", 3)), target, "--json")
    assert json.loads(few.stdout)["problems_truncated"] is False
    nowhere = run_cli("import-seed", str(src), target, "--problems-file", str(tmp_path / "no/p"))
    assert nowhere.returncode == 2, nowhere.stderr
    assert "--problems-file" in nowhere.stderr.decode()


def test_known_tenants_are_checked(tmp_path: Path) -> None:
    src = tmp_path / "seed"
    build_seed_store(src, [seed_record("acme", "k", 1)])
    for bad in ("acme", b"acme", ["acme", ""], ["acme", 7]):
        with pytest.raises(errors.InvalidArgumentError, match="known_tenants"):
            import_seed(src, None, dry_run=True, known_tenants=bad)  # type: ignore[arg-type]  # wrong on purpose
    target = f"lmdb://{tmp_path}/out"
    empty = run_cli("import-seed", str(src), target, "--tenant-id", "")
    assert empty.returncode == 2, empty.stderr
    assert "--tenant-id" in empty.stderr.decode()
    assert not (tmp_path / "out").exists()
    # A tenants file saved with a byte order mark (as some Windows editors do).
    bom = tmp_path / "tenants.txt"
    bom.write_bytes("\ufeffacme\n".encode())
    done = run_cli("import-seed", str(src), target, "--tenants-file", str(bom), "--json")
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["tenants"] == {"acme": 1}


def test_help_and_docstring_say_batches_follow_the_targets_bound() -> None:
    # Both said "one atomic batch per 2000 records", though a target that bounds its
    # atomic batches (Capabilities.max_batch_ops, a NATS bucket's max_batch) gets fewer.
    done = run_cli("import-seed", "--help")
    assert done.returncode == 0, done.stderr
    text = " ".join(done.stdout.decode().split())
    assert "per 2000 records" not in text, text
    assert "max_batch" in text, text
    doc = " ".join((import_seed.__doc__ or "").split())
    assert "one atomic batch per :data:`CHUNK` records" not in doc
    assert "max_batch_ops" in doc
