"""Every error of the tree crosses a process boundary: ``pickle`` (multiprocessing,
``concurrent.futures.ProcessPoolExecutor`` send a worker's exception back that way) and
``copy`` keep its type, message and attributes. Before, an error whose constructor
takes required keyword-only arguments (``KeyTooLargeError(message, size=, limit=)``,
``BatchTooLargeError``, core and NATS, ``PositionExpiredError``, ``DurableWriteError``
...) pickled, but unpickling it raised ``TypeError: ... missing 2 required keyword-only
arguments: 'size' and 'limit'`` - in the parent, far from the error.

Each class is built from its own constructor's signature, every argument drawn by
Hypothesis; the walk covers the public tree (``aurora_storage.errors.__all__``), the
engine plugins' errors and every other subclass of ``StorageError`` the packages define,
so a new class with a constructor of its own is covered without being listed here.
"""

from __future__ import annotations

import concurrent.futures
import copy
import importlib
import inspect
import pickle
import pkgutil
import threading
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import errors
from aurora_storage.errors import BatchTooLargeError, KeyTooLargeError, StorageError

#: The packages whose errors are walked: the core and the engine plugins it ships.
PACKAGES = (
    "aurora_storage",
    "aurora_storage_rocksdb",
    "aurora_storage_lmdb",
    "aurora_storage_nats",
)


def _import_all() -> None:
    for name in PACKAGES:
        package = importlib.import_module(name)
        for info in pkgutil.walk_packages(package.__path__, f"{name}."):
            if not info.name.endswith("__main__"):  # runs the command line when imported
                importlib.import_module(info.name)


def _subclasses(cls: type[BaseException]) -> set[type[BaseException]]:
    out: set[type[BaseException]] = set()
    for sub in cls.__subclasses__():
        out |= {sub, *_subclasses(sub)}
    return out


def _classes() -> list[type[BaseException]]:
    _import_all()
    found: set[type[BaseException]] = {StorageError, *_subclasses(StorageError)}
    return sorted(
        (
            c
            for c in found
            # Classes a test defines (not importable by name, so never picklable).
            if c.__module__.startswith(PACKAGES) and "<locals>" not in c.__qualname__
        ),
        key=lambda c: f"{c.__module__}.{c.__qualname__}",
    )


CLASSES = _classes()

_text = st.text(max_size=40)
_keys = st.one_of(
    st.none(),
    st.integers(),
    st.text(max_size=20),
    st.binary(max_size=20),
    st.tuples(st.text(max_size=10), st.integers()),
)
_ints = st.integers(-1, 2**40)

#: A value for each constructor argument, by its name (a constructor with an argument not
#: named here fails the test: add it).
ARGUMENTS: dict[str, st.SearchStrategy[Any]] = {
    "message": _text,
    "tenant": st.none() | _text,
    "key": _keys,
    "backend": st.none() | st.sampled_from(["memory", "rocksdb", "lmdb", "nats", "tiered"]),
    "path": st.none() | _text,
    "stored_key": st.none() | st.binary(max_size=30),
    "size": _ints,
    "limit": _ints,
    "internal": _ints,
    "key_size": _ints,
    "position": _ints,
    "oldest": _ints,
    "seq": _ints,
    "durable": st.booleans(),
    "keys": st.none() | st.lists(_keys, max_size=3),
    "expected": st.none() | _ints | st.binary(max_size=8),
    "actual": st.none() | _ints | st.binary(max_size=8),
    "value_path": st.none() | _text,
    "distribution": st.none() | _text,
    "distributions": st.lists(_text, max_size=3),
    "reason": st.sampled_from(["unsplittable", "ambiguous", "unknown-tenant"]),
    "candidates": st.lists(_text, max_size=3).map(tuple),
    "failed": st.lists(st.tuples(_ints, st.none() | st.binary(max_size=8)), max_size=3),
    "what": _text,
}

#: The context every StorageError takes through a constructor's ``**context``.
CONTEXT = ("tenant", "key", "backend", "path", "stored_key")


@st.composite
def _built(draw: st.DrawFn, cls: type[BaseException]) -> BaseException:
    """An instance of ``cls`` from its own constructor, every argument drawn (optional
    ones too, sometimes left out)."""
    args: list[Any] = []
    kwargs: dict[str, Any] = {}
    takes_context = False
    for p in list(inspect.signature(cls.__init__).parameters.values())[1:]:
        if p.kind is p.VAR_KEYWORD:
            takes_context = True
            continue
        if p.kind is p.VAR_POSITIONAL:
            continue
        assert p.name in ARGUMENTS, f"{cls.__qualname__}({p.name}=...): add a strategy"
        if p.default is not p.empty and not draw(st.booleans()):
            continue
        value = draw(ARGUMENTS[p.name])
        if p.kind is p.KEYWORD_ONLY:
            kwargs[p.name] = value
        else:
            args.append(value)
    if takes_context:
        for name in CONTEXT:
            if name not in kwargs and draw(st.booleans()):
                kwargs[name] = draw(ARGUMENTS[name])
    return cls(*args, **kwargs)


def _same(back: BaseException, error: BaseException) -> None:
    assert type(back) is type(error)
    assert str(back) == str(error)
    assert back.args == error.args
    assert vars(back) == vars(error)
    if isinstance(error, OSError):
        assert isinstance(back, OSError)
        assert (back.errno, back.strerror, back.filename) == (
            error.errno,
            error.strerror,
            error.filename,
        )


def test_the_walk_covers_the_public_tree_and_the_plugins() -> None:
    import aurora_storage_nats
    import aurora_storage_rocksdb

    public = {getattr(errors, n) for n in errors.__all__}
    for package in (aurora_storage_nats, aurora_storage_rocksdb):
        public |= {
            obj
            for n in package.__all__
            if isinstance(obj := getattr(package, n), type) and issubclass(obj, StorageError)
        }
    assert public <= set(CLASSES)
    assert len(CLASSES) > len(errors.__all__)


@pytest.mark.parametrize("cls", CLASSES, ids=lambda c: f"{c.__module__}.{c.__qualname__}")
@settings(max_examples=30, deadline=None)
@given(data=st.data())
def test_every_error_pickles_and_copies_with_its_message_and_attributes(
    cls: type[BaseException], data: st.DataObject
) -> None:
    error = data.draw(_built(cls))
    for protocol in range(pickle.HIGHEST_PROTOCOL + 1):
        _same(pickle.loads(pickle.dumps(error, protocol)), error)
    _same(copy.copy(error), error)
    _same(copy.deepcopy(error), error)


def test_the_reported_errors_unpickle() -> None:
    # What the re-check found: unpickling raised TypeError (missing keyword-only
    # arguments 'size' and 'limit').
    from aurora_storage_nats import BatchTooLargeError as NATSBatchTooLargeError

    for error in (
        KeyTooLargeError("m", size=600, limit=511),
        BatchTooLargeError("m", size=8, limit=7),
        NATSBatchTooLargeError("m", size=8, limit=7, internal=1),
    ):
        back = pickle.loads(pickle.dumps(error))
        assert type(back) is type(error)
        assert (back.size, back.limit, str(back)) == (error.size, error.limit, "m")


class _Unpicklable(Exception):
    """An engine's exception that cannot cross a process (it holds a lock)."""

    def __init__(self, text: str) -> None:
        super().__init__(text)
        self.lock = threading.Lock()


def test_a_raised_error_with_a_chained_cause_and_notes_pickles() -> None:
    # Pickling drops __cause__ (and every traceback), as for any exception; it must
    # not fail on a cause that cannot be pickled, and the notes come along.
    try:
        try:
            raise _Unpicklable("engine said no")
        except _Unpicklable as exc:
            raise KeyTooLargeError("too large", size=9, limit=8, tenant="acme") from exc
    except KeyTooLargeError as exc:
        exc.add_note("(a note)")
        error = exc
    assert error.__cause__ is not None
    assert error.__traceback__ is not None
    back = pickle.loads(pickle.dumps(error))
    assert type(back) is KeyTooLargeError
    assert (str(back), back.size, back.limit, back.tenant) == ("too large", 9, 8, "acme")
    assert back.__notes__ == ["(a note)"]
    assert back.__cause__ is None
    _same(copy.copy(error), error)


def _raise_in_worker(size: int) -> None:
    with aurora_storage.open("memory://") as repo:
        repo.put("acme", "x" * size, 1)


def test_an_error_raised_in_a_worker_process_reaches_the_caller_as_itself() -> None:
    # ProcessPoolExecutor sends the worker's exception back pickled: before, the parent
    # got a TypeError from unpickling it (or a BrokenProcessPool) instead.
    with (
        concurrent.futures.ProcessPoolExecutor(1) as pool,
        pytest.raises(KeyTooLargeError) as info,
    ):
        pool.submit(_raise_in_worker, 100_000).result()
    assert info.value.size > info.value.limit
    assert info.value.tenant == "acme"
