"""``watch()``'s ``after`` and ``timeout`` are checked in one place for every backend,
sync and async: any value either works or raises InvalidArgumentError - never a raw
``struct.error``/``OverflowError`` from inside the feed, and never a wait that a finite
small timeout does not end (NaN used to wait forever). ``timeout=inf`` (and any value
past ``threading.TIMEOUT_MAX``) means no timeout, like ``None``."""

from __future__ import annotations

import asyncio
import math
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import hypothesis.strategies as st
import pytest
from hypothesis import HealthCheck, example, given, settings

import aurora_storage
from aurora_storage import Repository
from aurora_storage.errors import InvalidArgumentError, PositionExpiredError

BACKENDS = ["memory", "rocksdb", "lmdb", "lmdb-log"]
#: How long a thread running a watch may take to finish after its timeout or close().
JOIN = 30.0


@pytest.fixture(scope="module", params=BACKENDS)
def repo(request: pytest.FixtureRequest, tmp_path_factory: Any) -> Iterator[Repository[Any, Any]]:
    d: Path = tmp_path_factory.mktemp(request.param)
    url = {
        "memory": "memory://",
        "rocksdb": f"rocksdb://{d}/s",
        "lmdb": f"lmdb://{d}/s?sync=false",
        "lmdb-log": f"lmdb://{d}/s?sync=false&change_log=true",
    }[request.param]
    with aurora_storage.open(url) as r:
        r.put("t", "k", 1)
        yield r


def _in_thread(fn: Any) -> list[Any]:
    """Run ``fn`` in a thread; what it returned or raised (the thread must end)."""
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(("ok", fn()))
        except BaseException as exc:  # reported to the test below
            out.append(("raised", exc))

    t = threading.Thread(target=run, daemon=True)
    t.start()
    t.join(JOIN)
    assert not t.is_alive(), "the watch did not end"
    return out


def _check(result: list[Any]) -> None:
    kind, value = result[0]
    if kind == "raised":
        # A valid position older than the feed keeps is a watch that works: it says so.
        assert isinstance(value, InvalidArgumentError | PositionExpiredError), repr(value)


numbers = st.one_of(
    st.integers(),
    st.integers(min_value=2**63, max_value=2**97),
    st.sampled_from([-1, 0, 2**64 - 1, 2**64, 2**96 - 1, 2**96, 10**30, -(10**30)]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, 1e308, -0.0]),
)
values = st.one_of(numbers, st.booleans(), st.text(max_size=3), st.none())


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(after=values)
@example(after=10**30)
@example(after=2**64)
@example(after=2**64 - 1)
@example(after=2**96 - 1)
@example(after=2**96)
@example(after=True)
@example(after=-1)
def test_any_after_works_or_is_refused(repo: Repository[Any, Any], after: Any) -> None:
    _check(_in_thread(lambda: list(repo.watch("t", after=after, timeout=0.01))))


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(timeout=values)
@example(timeout=math.nan)
@example(timeout=math.inf)
@example(timeout=1e308)
@example(timeout=10**400)
@example(timeout=True)
def test_any_timeout_works_or_is_refused(repo: Repository[Any, Any], timeout: Any) -> None:
    try:
        w = repo.watch("t", timeout=timeout)
    except InvalidArgumentError:
        valid = type(timeout) in (int, float) and not math.isnan(timeout) and timeout >= 0
        assert not valid
        return
    assert timeout is None or timeout >= 0
    done = threading.Event()
    out: list[Any] = []

    def run() -> None:
        try:
            out.append(("ok", list(w)))
        except BaseException as exc:
            out.append(("raised", exc))
        done.set()

    t = threading.Thread(target=run, daemon=True)
    t.start()
    # A small timeout ends by itself; a large one (or none) ends on close().
    if timeout is None or timeout > 0.05:
        done.wait(0.05)
        w.close()
    t.join(JOIN)
    assert not t.is_alive(), f"watch(timeout={timeout!r}) did not end"
    assert out
    assert out[0][0] == "ok", out


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(after=values, timeout=values)
@example(after=0, timeout=math.nan)
@example(after=10**30, timeout=0.01)
@example(after=None, timeout=math.inf)
def test_async_watch_arguments_work_or_are_refused(
    repo: Repository[Any, Any], after: Any, timeout: Any
) -> None:
    async def main() -> str:
        arepo = aurora_storage.AsyncRepository(repo)
        try:
            w = arepo.watch("t", after=after, timeout=timeout)
        except InvalidArgumentError:
            return "refused"
        try:
            # A large timeout (or none) is cut short here: what matters is that the
            # watch waits without raising.
            await asyncio.wait_for(_drain(w), 0.05)
        except TimeoutError:
            pass
        except InvalidArgumentError:
            return "refused"
        return "ok"

    _check(_in_thread(lambda: asyncio.run(main())))


async def _drain(w: Any) -> int:
    return len([c async for c in w])


def test_watch_argument_edges(repo: Repository[Any, Any]) -> None:
    bad: Any
    for bad in (math.nan, -1, -0.5, -math.inf, True, "1", 1j):
        with pytest.raises(InvalidArgumentError, match="timeout"):
            repo.watch("t", timeout=bad)
    for bad in (-1, 2**96, 10**30, True, 1.0, "0"):
        with pytest.raises(InvalidArgumentError, match="after"):
            repo.watch("t", after=bad)
    # The largest position is a valid argument; past the feed's last position, it is
    # one this feed never gave: refused when read (PositionExpiredError), not skipped to.
    with pytest.raises(PositionExpiredError, match="not given by this feed"):
        list(repo.watch("t", after=2**64 - 1, timeout=0))
    with pytest.raises(PositionExpiredError, match="not given by this feed"):
        list(repo.watch("t", after=2**96 - 1, timeout=0))
    assert repo.watch("t", timeout=2.5)._timeout == 2.5
    for forever in (math.inf, 1e308, 10**400, threading.TIMEOUT_MAX * 2):
        assert repo.watch("t", timeout=forever)._timeout is None


class _Loud(str):
    """A str subclass whose own methods would show through if the feed used them."""

    def __str__(self) -> str:
        return f"<tenant {str.__str__(self)}>"


def test_change_tenant_is_the_plain_str(repo: Repository[Any, Any]) -> None:
    """A str subclass given as the tenant reads back as its plain value, as tenants() and
    every read do (docs/concepts/keys.md): Change.tenant kept the caller's object, sync
    and async."""
    start = repo.last_position()
    repo.put("acme", "k", 1)
    got = next(iter(repo.watch(_Loud("acme"), after=start, timeout=1.0)))
    assert type(got.tenant) is str
    assert got.tenant == "acme"

    async def first() -> Any:
        return await repo.as_async().watch(_Loud("acme"), after=start, timeout=1.0).__anext__()

    got_async = asyncio.run(first())
    assert type(got_async.tenant) is str
    assert got_async.tenant == "acme"


def test_int_subclass_position_names_its_type(repo: Repository[Any, Any]) -> None:
    """A refused int subclass as ``after`` is shown with its type: the message showed
    just ``0``, a value that looks valid."""

    class Pos(int):
        pass

    with pytest.raises(InvalidArgumentError, match=r"got 0 \(of type .*Pos\)"):
        repo.watch("t", after=Pos(0))
