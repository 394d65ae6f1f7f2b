"""A projection or a rebuild's ``progress`` whose call does not run its body is refused.

An ``async def`` projection, or a generator function, takes ``(record, state)``, so it
passed the signature check; calling it only creates a coroutine (a generator), and its
body never ran: every write landed in history and counted as applied (``lag`` 0), nothing
was parked, no error was raised, and ``rebuild()`` reproduced the empty projection (a
``RuntimeWarning`` for ``async def``, nothing at all for a generator). The same held for
an ``async def`` progress callback. Now:

- a projection that is a coroutine function, an async generator function or a generator
  function (or a callable object, bound method or ``functools.partial`` whose function is
  one) is refused when the pair is opened or the name registered (``ConfigurationError``),
  before anything is written; a ``progress`` of that kind is refused at the call
  (``InvalidArgumentError``), by the sync pair and the async one alike;
- a projection *call* that returns a coroutine, a generator, an async generator or any
  awaitable (a wrapper the inspection cannot see through) has its result closed (no
  ``RuntimeWarning``), and nothing of that call is written: a write is rejected
  (``ProjectionError``, ``durable=False``, nothing in either tier); catch-up, a rebuild
  and ``retry_parked()`` raise ``ProjectionError`` (``durable=True``) and park nothing,
  whatever the ``on_poison`` policy: it is the projection that is wrong, not the record.
  A ``progress`` call returning one abandons the rebuild (``InvalidArgumentError``).
"""

from __future__ import annotations

import asyncio
import functools
import gc
import warnings
from collections.abc import Callable, Generator, Iterator
from contextlib import contextmanager
from typing import Any
from urllib.parse import quote

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from tiered_helpers import Crash, FlakyBackend, crashed, flaky

import aurora_storage
from aurora_storage import Repository
from aurora_storage.errors import ConfigurationError, InvalidArgumentError
from aurora_storage.tiered import (
    AsyncTieredRepository,
    HistoryRecord,
    HotTierError,
    ProjectionError,
    ProjectionState,
    RebuildProgress,
    TieredConfig,
    TieredRepository,
    register_projection,
    unregister_projection,
)
from aurora_storage.tiered import _config as tiered_config
from aurora_storage.tiered._config import Policy
from aurora_storage.tiered._log import REBUILD, SHADOW, SHADOW_END

Repo = Repository[Any, Any]
Tiered = TieredRepository[Any, Any]


def memory(data: dict[bytes, bytes] | None = None) -> Repo:
    return Repository(FlakyBackend(data))


def raw(repo: Repo) -> dict[bytes, bytes]:
    """Every record of a store, system records included."""
    return dict(repo.backend.scan(b"\x00", b"\xff"))


@contextmanager
def no_runtime_warning() -> Iterator[None]:
    """Fail if the block (or the collection of what it dropped) warns that a coroutine
    was never awaited (or any other RuntimeWarning)."""
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        yield
        gc.collect()
    assert [w for w in caught if issubclass(w.category, RuntimeWarning)] == []


def count(record: HistoryRecord, state: ProjectionState) -> None:
    state.put("n", state.get("n", 0) + 1)


# --------------------------------------------------------------------------- the kinds

# Projections whose call only creates a coroutine / generator: the body never runs.


async def async_count(record: HistoryRecord, state: ProjectionState) -> None:
    count(record, state)


async def async_gen_count(record: HistoryRecord, state: ProjectionState) -> Any:
    count(record, state)
    yield


def gen_count(record: HistoryRecord, state: ProjectionState) -> Generator[None]:
    count(record, state)
    yield


async def async_count_bound(extra: Any, record: HistoryRecord, state: ProjectionState) -> None:
    count(record, state)


def gen_count_bound(extra: Any, record: HistoryRecord, state: ProjectionState) -> Generator[None]:
    count(record, state)
    yield


class AsyncCall:
    async def __call__(self, record: HistoryRecord, state: ProjectionState) -> None:
        count(record, state)


class GenCall:
    def __call__(self, record: HistoryRecord, state: ProjectionState) -> Generator[None]:
        count(record, state)
        yield


class AsyncGenCall:
    async def __call__(self, record: HistoryRecord, state: ProjectionState) -> Any:
        count(record, state)
        yield


class Methods:
    async def project(self, record: HistoryRecord, state: ProjectionState) -> None:
        count(record, state)

    def project_gen(self, record: HistoryRecord, state: ProjectionState) -> Generator[None]:
        count(record, state)
        yield


#: name -> (what the message calls it, a fresh projection of that kind)
KINDS: dict[str, tuple[str, Callable[[], Any]]] = {
    "async def": ("coroutine function", lambda: async_count),
    "async generator": ("async generator function", lambda: async_gen_count),
    "generator": ("generator function", lambda: gen_count),
    "async __call__": ("coroutine function", AsyncCall),
    "generator __call__": ("generator function", GenCall),
    "async generator __call__": ("async generator function", AsyncGenCall),
    "async bound method": ("coroutine function", lambda: Methods().project),
    "generator bound method": ("generator function", lambda: Methods().project_gen),
    "partial of async def": (
        "coroutine function",
        lambda: functools.partial(async_count_bound, "x"),
    ),
    "partial of generator": (
        "generator function",
        lambda: functools.partial(gen_count_bound, "x"),
    ),
}


def wrapped(kind: str, partials: int) -> Any:
    fn = KINDS[kind][1]()
    for _ in range(partials):
        fn = functools.partial(fn)
    return fn


@settings(max_examples=60, deadline=None)
@given(kind=st.sampled_from(sorted(KINDS)), partials=st.integers(0, 3))
def test_a_projection_whose_call_does_not_run_it_is_refused_at_open(
    kind: str, partials: int
) -> None:
    projection = wrapped(kind, partials)
    what = KINDS[kind][0]
    hot, cold = memory(), memory()
    before = raw(hot), raw(cold)
    makers: list[Callable[[], object]] = [
        lambda: TieredRepository(hot=hot, cold=cold, projection=projection),
        lambda: TieredRepository(hot=hot, cold=cold, config=TieredConfig(projection=projection)),
        lambda: register_projection("unrunnable", projection),
    ]
    with no_runtime_warning():
        for make in makers:
            with pytest.raises(ConfigurationError) as info:
                make()
            message = str(info.value)
            assert what in message
            assert "plain synchronous function" in message
            assert "state" in message
    assert (raw(hot), raw(cold)) == before
    assert not hot.closed
    assert not cold.closed
    unregister_projection("unrunnable")


@pytest.mark.parametrize("kind", sorted(KINDS))
def test_a_named_projection_of_such_a_kind_is_refused_by_open_and_open_async(
    tmp_path: Any, kind: str
) -> None:
    """register_projection refuses it; one that reached the registry anyway (an entry
    point resolves the same way) is refused by open() and open_async()."""
    projection = wrapped(kind, 0)
    with pytest.raises(ConfigurationError, match="plain synchronous function"):
        register_projection("unrunnable", projection)
    tiered_config._registry["unrunnable"] = projection  # around the check, as a test
    try:
        url = (
            "tiered://?hot="
            + quote(f"lmdb://{tmp_path}/hot", safe="")
            + "&cold="
            + quote(f"rocksdb://{tmp_path}/cold", safe="")
            + "&projection=unrunnable"
        )
        with no_runtime_warning():
            with pytest.raises(ConfigurationError, match="plain synchronous function"):
                aurora_storage.open(url)
            with pytest.raises(ConfigurationError, match="plain synchronous function"):
                aurora_storage.open_async(url)
        assert not (tmp_path / "hot").exists()
        assert not (tmp_path / "cold").exists()
    finally:
        unregister_projection("unrunnable")


def test_the_breakers_reproducer_is_refused(tmp_path: Any) -> None:
    projections: list[Any] = [async_count, gen_count]
    for proj in projections:
        d = tmp_path / proj.__name__
        hot = aurora_storage.open(f"lmdb://{d}/hot")
        cold = aurora_storage.open(f"rocksdb://{d}/cold")
        with pytest.raises(ConfigurationError, match="plain synchronous function"):
            TieredRepository(hot=hot, cold=cold, projection=proj)
        hot.close()
        cold.close()


def test_plain_callables_are_still_accepted() -> None:
    """A sync function that runs async code to completion itself is a plain function."""

    async def inner(record: HistoryRecord, state: ProjectionState) -> None:
        count(record, state)

    @functools.wraps(inner)
    def runs_it(record: HistoryRecord, state: ProjectionState) -> None:
        asyncio.run(inner(record, state))

    class Call:
        def __call__(self, record: HistoryRecord, state: ProjectionState) -> None:
            count(record, state)

    plain: list[Any] = [count, runs_it, Call(), functools.partial(functools.partial(count))]
    for fn in plain:
        t: Tiered = TieredRepository(hot=memory(), cold=memory(), projection=fn)
        with t:
            t.put("acme", "e1", {})
            t.put_many("acme", {"e2": {}, "e3": {}})
            assert (t.get("acme", "n"), t.lag) == (3, 0)
            assert t.rebuild() == 3
            assert t.get("acme", "n") == 3


# --------------------------------------------------------------------------- at apply time

# A plain function the inspection cannot see through, returning what it should have run.


class Awaitable:
    """An awaitable that is not a coroutine (``__await__``)."""

    def __init__(self) -> None:
        self.closed = False

    def __await__(self) -> Generator[None]:
        yield

    def close(self) -> None:
        self.closed = True


RETURNS: dict[str, Callable[[HistoryRecord, ProjectionState], Any]] = {
    "coroutine": lambda r, s: async_count(r, s),
    "generator": lambda r, s: gen_count(r, s),
    "async generator": lambda r, s: async_gen_count(r, s),
    "awaitable": lambda r, s: Awaitable(),
}


class Switch:
    """A projection that counts, until told to return what it should have run (and to
    put something first, which must be dropped with the call)."""

    def __init__(self) -> None:
        self.returns: str | None = None
        self.put_first = False
        self.results: list[Any] = []

    def __call__(self, record: HistoryRecord, state: ProjectionState) -> Any:
        if self.returns is None:
            count(record, state)
            return None
        if self.returns == "raises":  # an ordinary poison record
            raise ValueError("poison")
        if self.put_first:
            state.put(("half", record.key), 1)
        result = RETURNS[self.returns](record, state)
        self.results.append(result)
        return result


def assert_closed(results: list[Any]) -> None:
    """Every returned coroutine / generator / awaitable was closed by the pair."""
    assert results
    for result in results:
        if isinstance(result, Awaitable):
            assert result.closed
        elif hasattr(result, "ag_frame"):
            assert result.ag_frame is None
        elif hasattr(result, "cr_frame"):
            assert result.cr_frame is None
        else:
            assert result.gi_frame is None


def write(t: Tiered, how: str, i: int) -> None:
    if how == "put":
        t.put("acme", f"w{i}", {})
    elif how == "insert":
        t.insert("acme", f"w{i}", {})
    elif how == "put_many":
        t.put_many("acme", {f"w{i}a": {}, f"w{i}b": {}})
    elif how == "batch":
        with t.batch() as b:
            b.put("globex", f"w{i}", {})
            b.put("acme", f"w{i}", {})
    else:
        t.tenant("acme").put(f"w{i}", {})


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(
    returns=st.sampled_from(sorted(RETURNS)),
    put_first=st.booleans(),
    how=st.sampled_from(["put", "insert", "put_many", "batch", "tenant_view"]),
    policy=st.sampled_from(["stop", "park"]),
)
def test_a_write_whose_projection_returns_an_awaitable_is_rejected(
    returns: str, put_first: bool, how: str, policy: str
) -> None:
    proj = Switch()
    t: Tiered = TieredRepository(
        hot=memory(), cold=memory(), projection=proj, on_poison=policy_of(policy)
    )
    t.put("acme", "e0", {})
    proj.returns, proj.put_first = returns, put_first
    before = raw(t.hot), raw(t.cold)
    with no_runtime_warning():
        with pytest.raises(ProjectionError) as info:
            write(t, how, 1)
        assert_closed(proj.results)
        proj.results.clear()
    error = info.value
    assert error.durable is False
    assert "nothing was written" in str(error)
    assert "plain synchronous function" in str(error)
    assert isinstance(error.__cause__, ConfigurationError)
    assert (raw(t.hot), raw(t.cold)) == before
    assert (t.lag, t.parked()) == (0, [])
    proj.returns = None
    write(t, how, 2)
    assert t.get("acme", "n") == (3 if how == "put_many" else 2)
    t.close()


def policy_of(name: str) -> Policy:
    assert name in ("stop", "park")
    return "stop" if name == "stop" else "park"


def _behind(policy: str) -> tuple[Tiered, Switch, FlakyBackend, Repo, Repo]:
    """A pair whose last history record is not applied to hot (its hot write failed)."""
    proj = Switch()
    hot, cold = memory(), memory()
    t: Tiered = TieredRepository(hot=hot, cold=cold, projection=proj, on_poison=policy_of(policy))
    t.put("acme", "e0", {})
    hb = flaky(hot)
    hb.fail("write", exc=OSError)
    with pytest.raises(HotTierError):
        t.put("acme", "e1", {})
    hb.heal()
    return t, proj, hb, hot, cold


@pytest.mark.parametrize("policy", ["stop", "park"])
@pytest.mark.parametrize("returns", sorted(RETURNS))
def test_catch_up_meeting_an_awaitable_raises_and_parks_nothing(policy: str, returns: str) -> None:
    t, proj, _hb, hot, cold = _behind(policy)
    proj.returns = returns
    before = raw(hot), raw(cold)
    with no_runtime_warning():
        with pytest.raises(ProjectionError) as info:
            t.catch_up()
        assert_closed(proj.results)
        # A write first catches hot up: it meets the same record, and is rejected.
        with pytest.raises(ProjectionError) as on_write:
            t.put("acme", "e2", {})
        proj.results.clear()
    assert info.value.durable is True
    assert info.value.seq == 2
    assert info.value.key == "e1"
    assert "plain synchronous function" in str(info.value)
    assert on_write.value.durable is False
    assert "nothing was written" in str(on_write.value)
    assert (raw(hot), raw(cold)) == before
    assert (t.lag, t.parked(), t.get("acme", "n")) == (1, [], 1)
    proj.returns = None
    assert t.catch_up() == 1
    assert (t.lag, t.get("acme", "n")) == (0, 2)
    t.close()


@pytest.mark.parametrize("policy", ["stop", "park"])
def test_an_open_whose_catch_up_meets_an_awaitable_fails_and_parks_nothing(policy: str) -> None:
    t, proj, _hb, hot, cold = _behind(policy)
    crashed(t)
    proj.returns = "coroutine"
    hot2, cold2 = memory(flaky(hot).snapshot()), memory(flaky(cold).snapshot())
    snapshot = raw(hot2), raw(cold2)
    with no_runtime_warning():
        with pytest.raises(ProjectionError) as info:
            TieredRepository(hot=hot2, cold=cold2, projection=proj, on_poison=policy_of(policy))
        proj.results.clear()
    assert info.value.durable is True
    assert (raw(hot2), raw(cold2)) == snapshot
    proj.returns = None
    again: Tiered = TieredRepository(
        hot=hot2, cold=cold2, projection=proj, on_poison=policy_of(policy)
    )
    with again:
        assert (again.lag, again.parked(), again.get("acme", "n")) == (0, [], 2)


@pytest.mark.parametrize("policy", ["stop", "park"])
@pytest.mark.parametrize("tenant", [None, "acme"])
def test_a_rebuild_meeting_an_awaitable_is_abandoned(policy: str, tenant: str | None) -> None:
    proj = Switch()
    t: Tiered = TieredRepository(
        hot=memory(), cold=memory(), projection=proj, on_poison=policy_of(policy), rebuild_chunk=2
    )
    for i in range(5):
        t.put("acme", f"e{i}", {})
    proj.returns = "generator"
    live = dict(t.hot.items("acme"))
    with no_runtime_warning():
        with pytest.raises(ProjectionError) as info:
            t.rebuild(tenant)
        assert_closed(proj.results)
        proj.results.clear()
    assert info.value.durable is True
    assert "previous projection is still served" in str(info.value)
    assert dict(t.hot.items("acme")) == live
    assert list(t.hot.backend.scan(SHADOW, SHADOW_END)) == []
    assert t.hot.backend.get(REBUILD) is None
    assert (t.lag, t.parked()) == (0, [])
    t.close()


def test_retry_parked_meeting_an_awaitable_raises_and_keeps_it_parked() -> None:
    proj = Switch()
    t: Tiered = TieredRepository(hot=memory(), cold=memory(), projection=proj, on_poison="park")
    t.put("acme", "e0", {})
    hb = flaky(t.hot)
    hb.fail("write", exc=OSError)
    with pytest.raises(HotTierError):
        t.put("acme", "e1", {})
    hb.heal()

    proj.returns = "raises"
    assert t.catch_up() == 1
    parked = t.parked()
    assert [p.key for p in parked] == ["e1"]
    proj.returns = "coroutine"
    with no_runtime_warning():
        with pytest.raises(ProjectionError) as info:
            t.retry_parked()
        assert_closed(proj.results)
        proj.results.clear()
    assert info.value.durable is True
    assert t.parked() == parked
    proj.returns = None
    assert t.retry_parked() == 1
    assert (t.parked(), t.get("acme", "n")) == ([], 2)
    t.close()


# --------------------------------------------------------------------------- progress


async def async_progress(info: RebuildProgress) -> None:
    raise AssertionError("never run")


def gen_progress(info: RebuildProgress) -> Generator[None]:
    yield


async def async_gen_progress(info: RebuildProgress) -> Any:
    yield


class AsyncProgress:
    async def __call__(self, info: RebuildProgress) -> None:
        raise AssertionError("never run")


async def async_progress_bound(extra: Any, info: RebuildProgress) -> None:
    raise AssertionError("never run")


PROGRESS_KINDS: dict[str, Callable[[], Any]] = {
    "async def": lambda: async_progress,
    "generator": lambda: gen_progress,
    "async generator": lambda: async_gen_progress,
    "async __call__": AsyncProgress,
    "partial of async def": lambda: functools.partial(async_progress_bound, 1),
}


def _pair(**kw: Any) -> Tiered:
    t: Tiered = TieredRepository(hot=memory(), cold=memory(), rebuild_chunk=1, **kw)
    for i in range(3):
        t.put("acme", f"e{i}", {})
    return t


@pytest.mark.parametrize("mode", ["projection", "cache"])
@pytest.mark.parametrize("side", ["sync", "async"])
@pytest.mark.parametrize("kind", sorted(PROGRESS_KINDS))
def test_a_progress_whose_call_does_not_run_it_is_refused_before_anything(
    kind: str, side: str, mode: str
) -> None:
    t = _pair(projection=count) if mode == "projection" else _pair()
    before = raw(t.hot), raw(t.cold)
    progress = PROGRESS_KINDS[kind]()

    def rebuild() -> None:
        if side == "sync":
            t.rebuild(progress=progress)
        else:
            arepo: AsyncTieredRepository[Any, Any] = t.as_async()
            asyncio.run(arepo.rebuild(progress=progress))

    with no_runtime_warning(), pytest.raises(InvalidArgumentError) as info:
        rebuild()
    message = str(info.value)
    assert "plain synchronous function" in message
    assert "nothing was written" in message
    assert (raw(t.hot), raw(t.cold)) == before
    seen: list[RebuildProgress] = []
    assert t.rebuild(progress=seen.append) == 3
    assert seen[-1].done == 3
    t.close()


@pytest.mark.parametrize("mode", ["projection", "cache"])
@pytest.mark.parametrize("returns", ["coroutine", "generator", "awaitable"])
def test_a_progress_call_returning_an_awaitable_abandons_the_rebuild(
    mode: str, returns: str
) -> None:
    t = _pair(projection=count) if mode == "projection" else _pair()
    made: list[Any] = []

    def opaque(info: RebuildProgress) -> Any:
        result: Any = {
            "coroutine": lambda: async_progress(info),
            "generator": lambda: gen_progress(info),
            "awaitable": Awaitable,
        }[returns]()
        made.append(result)
        return result

    live = dict(t.hot.items("acme"))
    with no_runtime_warning():
        with pytest.raises(InvalidArgumentError, match="plain synchronous function"):
            t.rebuild(progress=opaque)
        assert_closed(made)
        made.clear()
    assert dict(t.hot.items("acme")) == live
    assert list(t.hot.backend.scan(SHADOW, SHADOW_END)) == []
    assert t.lag == 0
    t.close()


def test_a_crash_is_not_caught_by_the_checks() -> None:
    """The apply-time check runs on what the call returned; a BaseException from the
    projection passes through it untouched (the crash tests rely on it)."""

    def crashing(record: HistoryRecord, state: ProjectionState) -> None:
        raise Crash("killed")

    t: Tiered = TieredRepository(hot=memory(), cold=memory(), projection=crashing)
    with pytest.raises(Crash):
        t.put("acme", "e", {})
    crashed(t)
