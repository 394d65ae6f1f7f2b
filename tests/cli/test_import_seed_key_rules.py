"""import-seed's rules for records that share an aurora key, for the dry run's checks,
for JSON whitespace around a stored key, and for an empty tenant id (real seed stores).

Before: a record whose canonical twin was refused was reported as colliding with it
"(imported)" and both were lost; ``--dry-run`` checked values with the json codec
whatever the target's was; a key with whitespace before its JSON was ``unsplittable``
(or a text key with ``--tenant-id``) though ``JSON.parse`` reads it, while values were
read leniently; an empty tenant id was refused without a word of what to do."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any
from urllib.parse import quote

from hypothesis import given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage.migrate import SeedSplit, import_seed, split_seed_key

from .conftest import run_cli
from .test_import_seed import build_seed_store, js_stringify

_DEEP: Any = 1
for _ in range(300):
    _DEEP = [_DEEP]
#: Nested 300 deep: the json codec refuses it (254 levels at most), msgpack stores it.
DEEP = json.dumps(_DEEP).encode()


def _items(url: str) -> dict[str, list[tuple[Any, Any]]]:
    with aurora_storage.open(url) as repo:
        return {t: list(repo.items(t)) for t in sorted(repo.tenants())}


# ------------------------------------------------------------ twins (finding 3)


def test_a_twin_refused_leaves_the_other_record_imported(tmp_path: Path) -> None:
    src = tmp_path / "ts"
    build_seed_store(
        src,
        [
            (b'acme:{"b":1,"a":2}', b'{"keep":"me"}'),  # written first by the app
            (b'acme:{"a":2,"b":1}', DEEP),  # canonical form, too deep for json
            (b'acme:{"y":1,"x":2}', b'{"keep":"me too"}'),
            (b'acme:{"x":2,"y":1}', b'{"broken'),  # canonical form, not JSON
            # The non-canonical twin first in stored key order: 0.5e1 is the key 5.
            (b"acme:0.5e1", b'"five"'),
            (b"acme:5", b"NaN"),  # canonical, not JSON
        ],
    )
    target = f"lmdb://{tmp_path}/out"
    report = import_seed(src, target)
    assert report.problem_count == {"bad-value": 2, "refused": 1}, report.problems
    assert report.imported == 3
    assert _items(target) == {
        "acme": [
            (5, "five"),
            ({"a": 2, "b": 1}, {"keep": "me"}),
            ({"x": 2, "y": 1}, {"keep": "me too"}),
        ]
    }
    # Nothing calls a refused record "imported".
    for problem in report.problems:
        assert "(imported)" not in problem.message
    # The command line says the same.
    done = run_cli("import-seed", str(src), f"rocksdb:{tmp_path}/cli", "--json")
    assert done.returncode == 5
    assert json.loads(done.stdout)["problem_count"] == {"bad-value": 2, "refused": 1}


def test_a_twin_the_target_codec_stores_wins(tmp_path: Path) -> None:
    src = tmp_path / "ts"
    build_seed_store(
        src, [(b'acme:{"b":1,"a":2}', b'{"keep":"me"}'), (b'acme:{"a":2,"b":1}', DEEP)]
    )
    target = f"lmdb://{tmp_path}/out?codec=msgpack"
    report = import_seed(src, target)
    assert report.problem_count == {"collision": 1}
    assert report.problems[0].key == 'acme:{"b":1,"a":2}'
    with aurora_storage.open(target) as repo:
        assert repo.get("acme", {"a": 2, "b": 1}) == _DEEP


def test_two_non_canonical_twins_of_a_refused_one(tmp_path: Path) -> None:
    src = tmp_path / "ts"
    build_seed_store(
        src,
        [
            (b'acme:{"a":2,"b":1}', b"{oops"),  # canonical, not JSON
            (b'acme:{"b":1,"a":2.0}', b'"first"'),
            (b'acme:{"b":1.0,"a":2}', b'"second"'),
        ],
    )
    report = import_seed(src, f"lmdb://{tmp_path}/out")
    assert report.problem_count == {"bad-value": 1, "collision": 1}
    collision = next(p for p in report.problems if p.reason == "collision")
    # The one imported is named as imported: it was.
    assert collision.key == 'acme:{"b":1.0,"a":2}'
    assert '\'acme:{"b":1,"a":2.0}\' (imported)' in collision.message
    assert _items(f"lmdb://{tmp_path}/out") == {"acme": [({"a": 2, "b": 1}, "first")]}


# ---------------------------------------------------- the dry run's codec (finding 5)


def test_the_dry_run_checks_with_the_targets_codec(tmp_path: Path) -> None:
    src = tmp_path / "ts"
    build_seed_store(src, [(b'acme:"deep"', DEEP), (b'acme:"flat"', b"1")])
    # The codec named in the URL.
    target = f"lmdb:{tmp_path}/out?codec=msgpack"
    dry = run_cli("import-seed", str(src), target, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    assert json.loads(dry.stdout)["imported"] == 2
    assert not (tmp_path / "out").exists()
    real = run_cli("import-seed", str(src), target, "--json")
    assert real.returncode == 0, real.stderr
    assert json.loads(dry.stdout) | {"dry_run": False} == json.loads(real.stdout)
    # The codec recorded in an existing store (the URL names none).
    again = run_cli("import-seed", str(src), f"lmdb:{tmp_path}/out", "--dry-run", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["imported"] == 2
    # Through the API too; and the json codec (the default) still refuses it.
    assert import_seed(src, f"lmdb://{tmp_path}/out", dry_run=True).ok
    plain = import_seed(src, f"lmdb://{tmp_path}/new", dry_run=True)
    assert plain.problem_count == {"refused": 1}
    assert not (tmp_path / "new").exists()
    # An open repository as the target: its codec.
    with aurora_storage.open("memory://", codec="msgpack") as repo:
        assert import_seed(src, repo, dry_run=True).ok
        assert repo.count("acme") == 0


def _pair(tmp_path: Path, name: str) -> str:
    hot = quote(f"lmdb:{tmp_path}/{name}-hot", safe="")
    cold = quote(f"lmdb:{tmp_path}/{name}-cold", safe="")
    return f"tiered://?hot={hot}&cold={cold}"


def _state(tmp_path: Path) -> dict[str, tuple[int, int]]:
    """Size and modification time of the pair's data files and markers."""
    files = [*tmp_path.glob("mp-*/data.mdb"), *tmp_path.glob("mp-*/aurora-store.json")]
    return {str(p): (p.stat().st_size, p.stat().st_mtime_ns) for p in files}


def test_the_dry_run_checks_with_an_existing_tiered_pairs_codec(tmp_path: Path) -> None:
    # A pair has no path of its own whose marker names its codec: the dry run checked
    # with json, and reported as refused the records the import then stored.
    src = tmp_path / "ts"
    build_seed_store(src, [(b'acme:"deep"', DEEP), (b'acme:"inf"', b"1e400"), (b'acme:"ok"', b"1")])
    pair = _pair(tmp_path, "mp")
    with aurora_storage.open(pair, codec="msgpack") as repo:
        repo.put("x", "y", 1)
    before = _state(tmp_path)
    dry = run_cli("import-seed", str(src), pair, "--dry-run", "--json")
    assert dry.returncode == 0, dry.stderr
    report = json.loads(dry.stdout)
    assert report["imported"] == 3, report["problems"]
    assert report["codec"] == "msgpack"
    # Nothing of the pair was written (its tiers were opened read-only, if at all).
    assert _state(tmp_path) == before
    real = run_cli("import-seed", str(src), pair, "--json")
    assert real.returncode == 0, real.stderr
    assert report | {"dry_run": False} == json.loads(real.stdout)
    # A new pair: json, and nothing is created.
    new = import_seed(src, _pair(tmp_path, "new"), dry_run=True)
    assert (new.codec, new.problem_count) == ("json", {"refused": 2})
    assert not list(tmp_path.glob("new-*"))


# --------------------------------------------------- whitespace (finding 6)


def test_json_whitespace_around_a_key_reads_as_json_parse_reads_it(tmp_path: Path) -> None:
    src = tmp_path / "ts"
    build_seed_store(
        src,
        [
            (b'acme: "spaced"', b' { "a" : 1 } '),
            (b'acme:\t["tab", 1]\n', b"2"),
            (b'acme:"plain"', b"3"),
            (b'acme: "plain"', b"4"),  # the same key as acme:"plain": a collision
        ],
    )
    expected = {"acme": [("plain", 3), ("spaced", {"a": 1}), (("tab", 1), 2)]}
    for extra in ((), ("--tenant-id", "acme")):
        target = f"lmdb:{tmp_path}/out{len(extra)}"
        done = run_cli("import-seed", str(src), target, *extra, "--json")
        report = json.loads(done.stdout)
        assert report["problem_count"] == {"collision": 1}, report["problems"]
        assert report["problems"][0]["key"] == 'acme: "plain"'
        assert report["text_keys"] == 0
        assert _items(target.replace(":", "://", 1)) == expected


@settings(max_examples=200, deadline=None)
@given(
    tenant=st.text(alphabet=st.sampled_from(':"\\{}[],01ab -'), min_size=1),
    key=st.recursive(
        st.none() | st.booleans() | st.integers(-1000, 1000) | st.text(max_size=5),
        lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(), inner, max_size=3),
        max_leaves=6,
    ),
    before=st.text(alphabet=" \t\n\r", max_size=3),
    after=st.text(alphabet=" \t\n\r", max_size=3),
)
def test_whitespace_json_allows_changes_no_split(
    tenant: str, key: Any, before: str, after: str
) -> None:
    text = f"{tenant}:{before}{js_stringify(key)}{after}"
    assert split_seed_key(text) == SeedSplit(tenant, key)
    assert split_seed_key(text, known_tenants={tenant}) == SeedSplit(tenant, key)


# ----------------------------------------------------- empty tenant (finding 4)


def test_an_empty_tenant_says_what_to_do(tmp_path: Path) -> None:
    src = tmp_path / "ts"
    build_seed_store(src, [(b':"k"', b'{"v":1}'), (b'acme:"k"', b"1")])
    report = import_seed(src, f"lmdb://{tmp_path}/out")
    assert report.problem_count == {"refused": 1}
    message = report.problems[0].message
    assert "empty tenant" in message
    assert "aurora-storage put" in message  # what to do
