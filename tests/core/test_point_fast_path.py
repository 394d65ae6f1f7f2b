"""Repository.get's fast path: the str key encoded inline, the engine's own read
(``Backend.fast_get``) called without a frame in between, and errors translated only
when they happen - by asking the backend's ``get`` the same question."""

from __future__ import annotations

from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import (
    CorruptionError,
    InvalidKeyError,
    InvalidTenantError,
    KeyTooLargeError,
    encode_stored_key,
)
from aurora_storage.memory import MemoryBackend

PURE = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


class _FastRead(MemoryBackend):
    """A memory backend with a fast_get that fails as told (an engine's raw error), and
    whose get() translates it."""

    def __init__(self) -> None:
        super().__init__()
        self.fast_get = self._fast
        self.fast_failures = 0
        self.broken = False
        self.slow_calls = 0

    def _fast(self, key: bytes) -> bytes | None:
        if self.fast_failures:
            self.fast_failures -= 1
            raise OSError("engine hiccup")
        if self.broken:
            raise OSError("engine says: block checksum mismatch")
        return super().get(key)

    def get(self, key: bytes) -> bytes | None:
        self.slow_calls += 1
        if self.broken:
            raise CorruptionError("damaged", backend="memory", stored_key=key)
        return super().get(key)


def test_get_uses_the_engine_read_and_translates_only_failures() -> None:
    backend = _FastRead()
    repo: aurora_storage.Repository[Any, Any] = aurora_storage.Repository(backend)
    repo.put("t", "k", 1)
    calls = backend.slow_calls
    assert repo.get("t", "k") == 1
    assert repo.get("t", "absent", "d") == "d"
    assert backend.slow_calls == calls  # no get() while the engine read works
    # A passing failure: get() answers the same question.
    backend.fast_failures = 1
    assert repo.get("t", "k") == 1
    assert backend.slow_calls == calls + 1
    # A lasting one: the typed error of get(), named with the user's tenant and key.
    backend.broken = True
    with pytest.raises(CorruptionError) as info:
        repo.get("t", "k")
    assert (info.value.tenant, info.value.key) == ("t", "k")
    assert info.value.stored_key == encode_stored_key("t", "k")


def test_a_closed_rocksdb_store_raises_the_typed_error(tmp_path: object) -> None:
    repo = aurora_storage.open(f"rocksdb://{tmp_path}/s")
    repo.put("t", "k", 1)
    backend = repo.backend
    repo.close()
    with pytest.raises(aurora_storage.RepositoryClosedError):
        repo.get("t", "k")
    # Also when the backend is closed under the repository (its engine read then
    # raises the engine's own error, which get() translates).
    repo2 = aurora_storage.open(f"rocksdb://{tmp_path}/s2")
    repo2.put("t", "k", 1)
    repo2.backend.close()
    with pytest.raises(aurora_storage.RepositoryClosedError):
        repo2.get("t", "k")
    assert backend.fast_get is not None


str_keys = st.text(st.characters(codec=None, exclude_categories=()), max_size=10) | st.sampled_from(
    ["a\x00", "\x00", "\ud800x", "x" * 400, "y" * 600]
)


@PURE
@given(str_keys, st.sampled_from(["acme", "a\x00b", "\ud800"]))
def test_get_finds_what_put_stored_for_every_str_key(key: str, tenant: str) -> None:
    # The inlined encoding of get() must give put()'s stored key, or its error.
    repo = aurora_storage.open("memory://")
    try:
        encode_stored_key(tenant, key)
    except KeyTooLargeError:
        with pytest.raises(KeyTooLargeError):
            repo.get(tenant, key)
        return
    assert repo.get(tenant, key, "absent") == "absent"
    repo.put(tenant, key, [len(key)])
    assert repo.get(tenant, key) == [len(key)]
    assert repo.get(tenant, key + "z", "absent") == "absent"


class _KeysSeen(MemoryBackend):
    """A memory backend that records the stored keys its get() is asked for."""

    def __init__(self) -> None:
        super().__init__()
        self.asked: list[bytes] = []

    def get(self, key: bytes) -> bytes | None:
        self.asked.append(key)
        return super().get(key)


@PURE
@given(
    str_keys,
    st.sampled_from(["acme", "a\x00b", "\ud800", "ü", "t:1/é"])
    | st.text(st.characters(codec=None, exclude_categories=()), min_size=1, max_size=5),
)
def test_get_asks_the_engine_for_the_stored_key_or_raises_the_same_error(
    key: str, tenant: str
) -> None:
    # get() builds a str key from the tenant's text head: it must hand the engine the
    # very bytes encode_stored_key gives (every tenant and key: escaped NULs, lone
    # surrogates, non-ASCII), or raise the error encode_stored_key raises - on the
    # first call (tenant not cached yet) and on the next (cached).
    backend = _KeysSeen()
    repo: aurora_storage.Repository[Any, Any] = aurora_storage.Repository(backend)
    try:
        expected = encode_stored_key(tenant, key)
    except KeyTooLargeError:
        for _ in range(2):
            with pytest.raises(KeyTooLargeError):
                repo.get(tenant, key)
        return
    for _ in range(2):
        backend.asked.clear()
        assert repo.get(tenant, key, "absent") == "absent"
        assert backend.asked == [expected]


def test_bad_tenants_and_keys_still_raise() -> None:
    repo = aurora_storage.open("memory://")
    with pytest.raises(InvalidTenantError):
        repo.get("", "k")
    with pytest.raises(InvalidTenantError):
        repo.get(["t"], "k")  # type: ignore[arg-type]  # a wrong tenant type on purpose
    with pytest.raises(InvalidKeyError):
        repo.get("t", object())
