"""Issue 12's numbered cases, each with its kind, faults injected through a wrapping
backend (FaultBackend: a hot tier that raises before or after its commit, or in the
middle of a multi-commit catch-up), a projection that raises on chosen records, and an
undecodable history record."""

from __future__ import annotations

import logging
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from tiered_helpers import (
    Broken,
    Counting,
    FaultBackend,
    crashed,
    dump,
    faulty_repo,
    flaky_repo,
    fold_counting,
    present,
)

from aurora_storage import Repository
from aurora_storage.errors import ConfigurationError, KeyExistsError
from aurora_storage.tiered import (
    DurableWriteError,
    HotTierError,
    ParkedRecord,
    ProjectionError,
    TenantStoppedError,
    TieredRepository,
)
from aurora_storage.tiered import _log as tlog

Repo = Repository[Any, Any]


def ev(i: int, mark: str = "") -> dict[str, Any]:
    return {"i": i, "mark": mark}


def pair(
    proj: Counting | None = None, **kw: Any
) -> tuple[TieredRepository[Any, Any], Repo, FaultBackend, Repo, Counting]:
    proj = proj or Counting()
    hot, fb = faulty_repo()
    cold = flaky_repo()
    return TieredRepository(hot=hot, cold=cold, projection=proj, **kw), hot, fb, cold, proj


def reopen(t: TieredRepository[Any, Any], proj: Counting, **kw: Any) -> TieredRepository[Any, Any]:
    crashed(t)  # what a restart does: the process that held t went away
    return TieredRepository(hot=t.hot, cold=t.cold, projection=proj, **kw)


def assert_exact(
    t: TieredRepository[Any, Any], proj: Counting, skip: frozenset[Any] = frozenset()
) -> None:
    """Hot equals a fresh projection of cold (minus ``skip``): each record applied once
    (a record applied twice would show ``("seen", key) == 2`` and a larger ``n``)."""
    assert dump(t.hot) == fold_counting(t.history, set(skip))


# Each way of writing an event; returns how many records it appended.
def _put(t: TieredRepository[Any, Any], i: int) -> int:
    t.put("acme", (i, "e"), ev(i))
    return 1


def _put_many(t: TieredRepository[Any, Any], i: int) -> int:
    t.put_many("acme", [((i, "e"), ev(i)), ((i, "f"), ev(i))])
    return 2


def _batch(t: TieredRepository[Any, Any], i: int) -> int:
    with t.batch() as b:
        b.put("acme", (i, "e"), ev(i))
        b.put("globex", (i, "e"), ev(i))
    return 2


WRITES: dict[str, Callable[[TieredRepository[Any, Any], int], int]] = {
    "put": _put,
    "put_many": _put_many,
    "batch": _batch,
}


# --------------------------------------------------------------------------- case 1


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("write", list(WRITES))
@pytest.mark.parametrize("repair", ["next_write", "catch_up", "reopen"])
def test_case1_hot_commit_fault_applies_each_record_once(
    when: str, write: str, repair: str
) -> None:
    """Case 1: a hot commit that raises - before it applied, or after (a lost ack) -
    must not make the next write, catch_up() or reopen apply the event again."""
    t, _hot, fb, _cold, proj = pair()
    do = WRITES[write]
    do(t, 1)
    fb.fail(when=when)
    with pytest.raises(HotTierError) as info:
        do(t, 2)
    assert info.value.durable is True
    assert isinstance(info.value.__cause__, Broken)
    if repair == "next_write":
        do(t, 3)
    elif repair == "catch_up":
        t.catch_up()
    else:
        t = reopen(t, proj)
    assert t.lag == 0
    assert_exact(t, proj)


def test_case1_fault_in_the_middle_of_a_catch_up() -> None:
    """Case 1, 'during': a catch-up of several groups whose second commit raises after
    applying; the next catch-up must resume from what hot really holds."""
    t, _hot, fb, _cold, proj = pair()
    fb.fail(when="before")
    with pytest.raises(HotTierError):
        t.put("acme", (0, "e"), ev(0))
    # 600 events in history the hot tier never saw (several catch-up groups)
    for i in range(1, 600):
        fb.fail(when="before")
        with pytest.raises(HotTierError):
            t.put("acme", (i, "e"), ev(i))
    assert t.lag == 600
    fb.fail(when="after", after=1)
    with pytest.raises(Broken):
        t.catch_up()
    assert 0 < t.lag < 600
    assert t.catch_up() > 0
    assert_exact(t, proj)


def test_case1_cache_mode_kind() -> None:
    """Case 1 in cache mode: replays are idempotent; hot still ends equal to cold."""
    hot, fb = faulty_repo()
    cold = flaky_repo()
    t: TieredRepository[Any, Any] = TieredRepository(hot=hot, cold=cold)
    t.put("acme", 1, 1)
    for when in ("before", "after"):
        fb.fail(when=when)
        with pytest.raises(HotTierError):
            t.put("acme", 2, when)
        t.delete("acme", 1)
        t.put("acme", 1, when)
    assert dump(hot) == dump(cold)


# --------------------------------------------------------------------------- case 2


@pytest.mark.parametrize("when", ["before", "after"])
def test_case2_rejected_event_writes_nothing_even_after_a_hot_fault(when: str) -> None:
    """Case 2: after a HotTierError, a write whose projection raises used to be durably
    appended while the caller got a ProjectionError saying nothing was written; every
    later write then failed too (the wedge)."""
    t, _hot, fb, cold, proj = pair()
    t.put("acme", (1, "e"), ev(1))
    fb.fail(when=when)
    with pytest.raises(HotTierError):
        t.put("acme", (2, "e"), ev(2))
    proj.poison.add("bad")
    with pytest.raises(ProjectionError) as info:
        t.put("acme", (3, "e"), ev(3, "bad"))
    assert info.value.durable is False
    # A rejected event has no place in history: no change-log number, and the message
    # does not call it a history record (docs/tiered.md: `seq` means "in history").
    assert info.value.seq is None
    assert "history record" not in str(info.value)
    assert not cold.has("acme", (3, "e"))  # the truth: nothing written
    # no wedge: later writes, catch_up and reopen work
    t.put("acme", (4, "e"), ev(4))
    assert t.catch_up() == 0
    t = reopen(t, proj)
    t.put("acme", (5, "e"), ev(5))
    assert t.parked() == []
    assert_exact(t, proj)


def test_case2_hot_down_event_is_durable_and_says_so() -> None:
    """Case 2, the other branch: hot cannot be brought current, so the event is written
    to history and the error says it is durable; its projection runs at catch-up,
    where the poison policy handles a raising projection."""
    t, _hot, fb, cold, proj = pair(on_poison="park")
    fb.fail(when="before")
    with pytest.raises(HotTierError):
        t.put("acme", (1, "e"), ev(1))
    proj.poison.add("bad")
    fb.fail(when="before")  # the catch-up inside the next write fails
    with pytest.raises(HotTierError) as info:
        t.put("acme", (2, "e"), ev(2, "bad"))
    assert info.value.durable
    assert isinstance(info.value, DurableWriteError)
    assert cold.has("acme", (2, "e"))
    with pytest.raises(KeyExistsError):  # a retry under the same key is refused
        t.put("acme", (2, "e"), ev(2))
    assert t.catch_up() == 2
    assert [(r.tenant, r.key, r.reason) for r in t.parked()] == [("acme", (2, "e"), "raised")]
    assert_exact(t, proj, frozenset({("acme", (2, "e"))}))


# --------------------------------------------------------------------------- cases 2+3: poison


def _poison_in_history(t: TieredRepository[Any, Any], fb: FaultBackend, proj: Counting) -> None:
    """Put a record of tenant acme into history while hot is down, then make the
    projection raise on it: a poison record waiting in the change log."""
    fb.fail(when="before")
    with pytest.raises(HotTierError):
        t.put("acme", (2, "e"), ev(2, "bad"))
    proj.poison.add("bad")


@pytest.mark.parametrize("kind", ["raised", "undecodable"])
def test_case3_poison_stops_only_its_tenant(kind: str, caplog: pytest.LogCaptureFixture) -> None:
    """Cases 2-3: a history record that cannot be projected or decoded used to stop every
    tenant (every write raised; reopen raised CorruptionError). Policy 'stop' stops only
    its tenant; others go on; reopen works; history writes are never blocked."""
    t, _hot, fb, cold, proj = pair(on_poison="stop")
    t.put("acme", (1, "e"), ev(1))
    t.put("globex", (1, "e"), ev(1))
    with caplog.at_level(logging.ERROR, logger="aurora_storage.tiered"):
        if kind == "raised":
            _poison_in_history(t, fb, proj)
            t.catch_up()
        else:
            full = cold._full("acme", (2, "e"))
            cold.backend.write([(full, b"\xff not json"), (tlog.log_key(3), tlog.one(full))])
            t = reopen(t, proj)  # used to raise CorruptionError
    assert "stopped" in caplog.text
    t.put("globex", (2, "e"), ev(2))  # another tenant: unaffected
    assert t.get("globex", "n") == 2
    with pytest.raises(TenantStoppedError) as info:  # same tenant: durable, parked
        t.put("acme", (3, "e"), ev(3))
    assert info.value.durable
    assert cold.has("acme", (3, "e"))
    parked = t.parked("acme")
    assert [(r.key, r.reason) for r in parked] == [((2, "e"), kind), ((3, "e"), "held")]
    assert isinstance(parked[0], ParkedRecord)
    assert parked[0].tenant == "acme"
    t = reopen(t, proj)  # reopen is never blocked
    assert len(t.parked()) == 2
    skip = frozenset({("acme", (2, "e")), ("acme", (3, "e"))})
    assert_exact(t, proj, skip)
    # fix: the raising projection is fixed; the undecodable record stays parked
    proj.poison.clear()
    applied = t.retry_parked()
    if kind == "raised":
        assert applied == 2
        assert t.parked() == []
        t.put("acme", (4, "e"), ev(4))
        assert_exact(t, proj)
    else:
        assert applied == 0
        assert [(r.key, r.reason) for r in t.parked()] == [
            ((2, "e"), "undecodable"),
            ((3, "e"), "held"),
        ]


@pytest.mark.parametrize("kind", ["raised", "undecodable"])
def test_case3_park_policy_parks_and_goes_on(kind: str) -> None:
    t, _hot, fb, cold, proj = pair(on_poison="park")
    t.put("acme", (1, "e"), ev(1))
    if kind == "raised":
        _poison_in_history(t, fb, proj)
        t.catch_up()
    else:
        full = cold._full("acme", (2, "e"))
        cold.backend.write([(full, b"\xff not json"), (tlog.log_key(2), tlog.one(full))])
        t = reopen(t, proj, on_poison="park")
    t.put("acme", (3, "e"), ev(3))  # the same tenant goes on
    assert [(r.key, r.reason) for r in t.parked()] == [((2, "e"), kind)]
    assert_exact(t, proj, frozenset({("acme", (2, "e"))}))
    t.rebuild()  # a rebuild parks it again, and keeps the rest
    assert [(r.key, r.reason) for r in t.parked()] == [((2, "e"), kind)]


def test_case3_poison_seen_by_a_later_write_is_handled_by_policy() -> None:
    """The write that finds a poison record in its catch-up is not blamed for it."""
    t, _hot, fb, _cold, proj = pair(on_poison="stop")
    t.put("globex", (1, "e"), ev(1))
    _poison_in_history(t, fb, proj)
    t.put("globex", (2, "e"), ev(2))  # catches up first: acme stops, globex goes on
    assert [r.key for r in t.parked("acme")] == [(2, "e")]
    assert t.get("globex", "n") == 2


# --------------------------------------------------------------------------- case 4


@pytest.mark.parametrize("tenant", [None, "acme"])
def test_case4_failed_rebuild_keeps_serving_the_old_projection(tenant: str | None) -> None:
    """Case 4: a rebuild whose projection raises on an old record used to leave hot
    cleared (reads {} with lag 0) and project new events onto the empty state."""
    t, hot, _fb, _cold, proj = pair(on_poison="stop")
    for i in range(30):
        t.put("acme" if i % 2 else "globex", (i, "e"), ev(i))
    before = dump(hot)
    proj.poison.add("")  # now it raises on every old record
    with pytest.raises(ProjectionError) as info:
        t.rebuild(tenant)
    assert info.value.durable is True
    assert dump(hot) == before
    assert t.lag == 0
    assert t.get("acme", "n") == 15
    proj.poison.clear()
    t.put("acme", (99, "e"), ev(99))
    assert t.get("acme", "n") == 16  # onto the old state, not an empty one
    assert_exact(t, proj)


@pytest.mark.parametrize("after", [0, 1, 2, 5])
def test_case4_hot_fault_during_rebuild_keeps_the_old_projection(after: int) -> None:
    t, hot, fb, _cold, proj = pair(rebuild_chunk=5)
    for i in range(30):
        t.put("acme", (i, "e"), ev(i))
    before = dump(hot)
    fb.fail(when="before", after=after)
    with pytest.raises(Broken):
        t.rebuild()
    assert dump(hot) == before
    t2 = reopen(t, proj, rebuild_chunk=5)
    assert dump(t2.hot) == before
    assert t2.rebuild() == 30


# --------------------------------------------------------------------------- case 5


def test_case5_mode_is_recorded_open_by_url(tmp_path: Any) -> None:
    from urllib.parse import quote

    import aurora_storage

    hot = quote(f"lmdb://{tmp_path}/hot", safe="")
    cold = quote(f"rocksdb://{tmp_path}/cold", safe="")
    url = f"tiered://?hot={hot}&cold={cold}"
    with aurora_storage.open(url + "&projection=orders") as repo:
        repo.put("acme", (1, "e"), {"type": "OrderPaid", "order": "o-1", "amount": 1})
    with pytest.raises(ConfigurationError, match="created in projection mode"):
        aurora_storage.open(url)
    with aurora_storage.open(url + "&projection=orders") as repo:
        assert isinstance(repo, TieredRepository)
        assert present(repo.get("acme", "o-1"))["status"] == "paid"
        assert repo.recovered_on_open == 0


# --------------------------------------------------------------------------- case 7


@pytest.fixture
def vault_scheme() -> Any:
    """A scheme whose URLs carry a password and a token (it opens a memory store)."""
    from aurora_storage.memory._backend import MemoryBackend
    from aurora_storage.plugins import BackendSpec, register_backend, unregister_backend

    register_backend(
        BackendSpec(scheme="vaultmem", open=lambda url, options: MemoryBackend(), package="tests"),
        replace=True,
    )
    yield
    unregister_backend("vaultmem")


SECRET_HOT = "vaultmem://admin:s3cretpw@db.example:5432/x?token=t0ken-value"


def _secret_url() -> str:
    from urllib.parse import quote

    return (
        f"tiered://?hot={quote(SECRET_HOT, safe='')}"
        f"&cold={quote('vaultmem://u:c0ldpw@h/y', safe='')}"
    )


def _no_secret(text: str) -> None:
    for secret in ("s3cretpw", "t0ken-value", "c0ldpw"):
        assert secret not in text, text


def test_case7_secrets_hidden_in_every_printed_form(vault_scheme: Any) -> None:
    """Case 7: a password inside hot= or cold= used to show in repr(), str(), the
    RepositoryClosedError message and `aurora-storage info`."""
    import aurora_storage
    from aurora_storage.errors import RepositoryClosedError

    repo = aurora_storage.open(_secret_url())
    assert isinstance(repo, TieredRepository)
    _no_secret(repr(repo))
    _no_secret(str(repo.url))
    _no_secret(repr(repo.url))
    assert repo.url is not None
    assert "s3cretpw" in repo.url.render(hide_secrets=False)  # still there when asked
    assert "%2A%2A%2A" in str(repo.url)  # "***", URL-encoded inside hot=
    repo.close()
    with pytest.raises(RepositoryClosedError) as info:
        repo.get("acme", "k")
    _no_secret(str(info.value))
    _no_secret(repr(repo))
    with pytest.raises(ConfigurationError) as info2:
        aurora_storage.open(_secret_url() + "&bogus=1")
    _no_secret(str(info2.value))
    with pytest.raises(ConfigurationError) as info3:
        aurora_storage.open(_secret_url().replace("tiered://?", "tiered://host/?"))
    _no_secret(str(info3.value))


def test_case7_secrets_hidden_in_the_info_command(vault_scheme: Any) -> None:
    from click.testing import CliRunner

    from aurora_storage.cli import cli

    result = CliRunner().invoke(cli, ["info", _secret_url()])
    assert result.exit_code == 0, result.output
    assert "tiered" in result.output
    _no_secret(result.output)


# --------------------------------------------------------------------------- case 8


@pytest.mark.parametrize(
    "spec", ["os:system", "tiered_helpers:orders", "subprocess:run", "builtins:eval", "a b"]
)
def test_case8_urls_never_import_code(spec: str) -> None:
    """Case 8: projection=module:function in a URL used to import any module."""
    from urllib.parse import quote

    import aurora_storage

    url = f"tiered://?hot={quote('memory://', safe='')}&cold={quote('memory://', safe='')}"
    with pytest.raises(ConfigurationError, match="not valid") as info:
        aurora_storage.open(url + "&projection=" + quote(spec, safe=""))
    if ":" in spec:
        assert "register_projection" in str(info.value)


def test_case8_an_empty_projection_name_is_refused(tmp_path: Path) -> None:
    """Review of issue 12: ``projection=`` with an empty value (an unset environment
    variable) silently opened a new store in cache mode, recorded as such."""
    from urllib.parse import quote

    import aurora_storage

    url = (
        f"tiered://?hot={quote(f'lmdb://{tmp_path}/hot', safe='')}"
        f"&cold={quote(f'rocksdb://{tmp_path}/cold', safe='')}"
    )
    with pytest.raises(ConfigurationError, match="projection= is empty"):
        aurora_storage.open(url + "&projection=")
    assert not (tmp_path / "hot").exists()
    assert not (tmp_path / "cold").exists()
    with aurora_storage.open(url) as repo:  # leaving the option out still means cache mode
        assert repo.stats()["mode"] == "cache"


def test_case8_projections_by_name() -> None:
    from urllib.parse import quote

    import aurora_storage
    from aurora_storage.cli._demo import order_projection
    from aurora_storage.tiered import (
        register_projection,
        resolve_projection,
        unregister_projection,
    )

    counting = Counting()
    register_projection("counting-test", counting)
    try:
        with pytest.raises(ConfigurationError, match="already registered"):
            register_projection("counting-test", Counting())
        url = (
            f"tiered://?hot={quote('memory://', safe='')}&cold={quote('memory://', safe='')}"
            "&projection=counting-test&on_poison=park"
        )
        with aurora_storage.open(url) as repo:
            assert isinstance(repo, TieredRepository)
            assert repo.projection is counting
            assert repo.config.on_poison == "park"
            repo.put("acme", 1, ev(1))
            assert repo.get("acme", "n") == 1
    finally:
        unregister_projection("counting-test")
    with pytest.raises(ConfigurationError, match="no projection named 'counting-test'"):
        resolve_projection("counting-test")
    # published through the entry point group aurora_storage.projections
    assert resolve_projection("demo-orders") is order_projection


# --------------------------------------------------------------------------- case 9


def test_case9_same_store_as_hot_and_cold(tmp_path: Any) -> None:
    """Case 9: the same store as hot and cold used to fail with an engine lock error."""
    import os
    from urllib.parse import quote

    import aurora_storage

    def url(hot: str, cold: str) -> str:
        return f"tiered://?hot={quote(hot, safe='')}&cold={quote(cold, safe='')}"

    d = tmp_path / "store"
    with pytest.raises(ConfigurationError, match="two different stores"):
        aurora_storage.open(url(f"rocksdb://{d}", f"rocksdb://{d}"))
    aurora_storage.open(f"lmdb://{d}").close()  # now it exists: compared by identity
    os.symlink(d, tmp_path / "link")
    with pytest.raises(ConfigurationError, match="two different stores"):
        aurora_storage.open(url(f"lmdb://{d}", f"lmdb://{tmp_path / 'link'}"))
    with pytest.raises(ConfigurationError, match="two different stores"):
        aurora_storage.open(url(f"lmdb://{d}/", f"lmdb://{d}/../store"))
    mem = flaky_repo()
    with pytest.raises(ConfigurationError, match="two different stores"):
        TieredRepository(hot=mem, cold=mem)


# --------------------------------------------------------------------------- around the cases


def test_drop_tenant_removes_its_parked_records_and_stop() -> None:
    t, _hot, fb, _cold, proj = pair(on_poison="stop")
    t.put("globex", (1, "e"), ev(1))
    _poison_in_history(t, fb, proj)
    t.catch_up()
    with pytest.raises(TenantStoppedError):
        t.put("acme", (3, "e"), ev(3))
    assert len(t.parked("acme")) == 2
    t.drop_tenant("acme")
    assert t.parked() == []
    t.put("acme", (4, "e"), ev(4))  # a new acme starts clean: not stopped
    assert t.get("acme", "n") == 1
    assert_exact(t, proj)


def test_stores_of_the_previous_version_keep_their_mode() -> None:
    """A cold tier whose metadata has no mode (written before it was recorded) takes
    the mode its hot tier recorded (a refused open leaves the record as it was; the next
    accepted open completes it); an old-format rebuild marker is rebuilt from scratch."""
    import orjson

    t, hot, _fb, cold, proj = pair()
    t.put("acme", (1, "e"), ev(1))
    meta = orjson.loads(present(cold.backend.get(tlog.COLD_META)))
    cold.backend.put(tlog.COLD_META, orjson.dumps({"id": meta["id"]}))
    crashed(t)
    with pytest.raises(ConfigurationError, match="created in projection mode"):
        TieredRepository(hot=hot, cold=cold)
    assert "mode" not in orjson.loads(present(cold.backend.get(tlog.COLD_META)))
    hot.backend.put(tlog.REBUILD, b"*")  # an interrupted rebuild of the previous layout
    t2 = reopen(t, proj)
    assert orjson.loads(present(cold.backend.get(tlog.COLD_META)))["mode"] == "projection"
    assert hot.backend.get(tlog.REBUILD) is None
    assert_exact(t2, proj)


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"projection": "orders", "on_poison": "ignore"}, "on_poison must be"),
        ({"on_poison": "park"}, "applies to projection mode only"),
        ({"projection": "orders", "fill": "none"}, "applies to cache mode only"),
        ({"fill": "always"}, "fill must be"),
        ({"trim_every": "0"}, "trim_every must be a positive int"),
        ({"rebuild_chunk": "many"}, "not an integer"),
        ({"projection": "nothing-registered"}, "no projection named"),
    ],
)
def test_config_is_checked_once_from_the_url(options: dict[str, str], match: str) -> None:
    from aurora_storage.tiered import TieredConfig

    with pytest.raises(ConfigurationError, match=match):
        TieredConfig.from_options(options)


@pytest.mark.parametrize("when", ["before", "after"])
@pytest.mark.parametrize("after", [0, 1])
def test_case1_hot_fault_inside_drop_tenant(when: str, after: int) -> None:
    """Case 1's kind for a multi-commit write: drop_tenant clears hot in several
    commits; a fault at any of them (before or after applying) leaves a pair that the
    next write repairs exactly."""
    t, _hot, fb, cold, proj = pair()
    for i in range(6):
        t.put("acme" if i % 2 else "globex", (i, "e"), ev(i))
    fb.fail(when=when, after=after)
    with pytest.raises(HotTierError) as info:
        t.drop_tenant("acme")
    assert info.value.durable
    assert cold.count("acme") == 0
    t.put("acme", (9, "e"), ev(9))  # the new acme is not the dropped one plus one
    assert t.get("acme", "n") == 1
    assert_exact(t, proj)
    assert_exact(reopen(t, proj), proj)
