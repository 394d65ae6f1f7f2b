"""The store's metadata record: format version and codec written on creation, checked on
every open. Runs over a small persistent backend of this file (a dict that outlives the
repository, like a file would), registered at run time as ``dictkv://``."""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import orjson
import pytest

import aurora_storage
from aurora_storage import (
    FORMAT_VERSION,
    URL,
    Backend,
    BackendSpec,
    Capabilities,
    Codec,
    ConfigurationError,
    CorruptionError,
    register_backend,
)
from aurora_storage._repository import META_KEY
from aurora_storage.backend import Op
from aurora_storage.plugins import unregister_backend

#: The "disk": store name -> records; survives closing the backend.
DISK: dict[str, dict[bytes, bytes]] = {}


class DictBackend(Backend):
    """A persistent-looking backend over a dict shared between opens."""

    scheme = "dictkv"

    def __init__(self, data: dict[bytes, bytes], *, read_only: bool = False) -> None:
        super().__init__()
        self.data = data
        self.closed = False
        self.capabilities = Capabilities(persistent=True, read_only=read_only)

    def get(self, key: bytes) -> bytes | None:
        return self.data.get(key)

    def put(self, key: bytes, value: bytes) -> None:
        self.data[key] = value

    def delete(self, key: bytes) -> bool:
        return self.data.pop(key, None) is not None

    def write(self, ops: Sequence[Op]) -> None:
        for k, v in ops:
            if v is None:
                self.data.pop(k, None)
            else:
                self.data[k] = v

    def scan(
        self, start: bytes, stop: bytes, *, reverse: bool = False
    ) -> Iterator[tuple[bytes, bytes]]:
        keys = sorted(self.data)
        chosen = keys[bisect.bisect_left(keys, start) : bisect.bisect_left(keys, stop)]
        for k in reversed(chosen) if reverse else chosen:
            yield k, self.data[k]

    def close(self) -> None:
        self.closed = True


OPENED: list[DictBackend] = []


def _open(url: URL, options: Mapping[str, Any]) -> DictBackend:
    backend = DictBackend(DISK.setdefault(url.path, {}), read_only=bool(options.get("ro")))
    OPENED.append(backend)
    return backend


@pytest.fixture(autouse=True)
def dictkv() -> Iterator[None]:
    register_backend(BackendSpec("dictkv", _open, "test: dict shared between opens"))
    try:
        yield
    finally:
        unregister_backend("dictkv")
        DISK.clear()
        OPENED.clear()


def _meta(path: str) -> dict[str, Any]:
    meta: dict[str, Any] = orjson.loads(DISK[path][META_KEY])
    return meta


def test_codec_is_recorded_at_creation_and_reused() -> None:
    with aurora_storage.open("dictkv:///s", codec="msgpack") as repo:
        repo.put("t", "k", b"binary")  # msgpack keeps bytes; json could not store them
    assert _meta("/s") == {"format": FORMAT_VERSION, "codec": "msgpack"}
    with aurora_storage.open("dictkv:///s") as repo:
        assert repo.codec.name == "msgpack"
        assert repo.get("t", "k") == b"binary"
    with aurora_storage.open("dictkv:///s?codec=msgpack") as repo:
        assert repo.codec.name == "msgpack"


def test_default_codec_is_json_and_recorded() -> None:
    with aurora_storage.open("dictkv:///d") as repo:
        assert repo.codec.name == "json"
    assert _meta("/d")["codec"] == "json"
    with aurora_storage.open("dictkv:///d") as repo:
        assert repo.codec.name == "json"


@pytest.mark.parametrize(
    ("url", "kwargs"),
    [("dictkv:///m", {"codec": "json"}), ("dictkv:///m?codec=json", {})],
    ids=["keyword", "query"],
)
def test_codec_mismatch_is_refused_and_closes_the_backend(url: str, kwargs: Any) -> None:
    with aurora_storage.open("dictkv:///m", codec="msgpack") as repo:
        repo.put("t", "k", 1)
    with pytest.raises(ConfigurationError) as info:
        aurora_storage.open(url, **kwargs)
    message = str(info.value)
    assert "created with codec 'msgpack'" in message
    assert "'json'" in message
    assert OPENED[-1].closed
    # Nothing was changed: the record still names msgpack.
    assert _meta("/m")["codec"] == "msgpack"


def test_newer_format_version_is_refused() -> None:
    DISK["/n"] = {META_KEY: orjson.dumps({"format": FORMAT_VERSION + 1, "codec": "json"})}
    with pytest.raises(ConfigurationError, match="newer") as info:
        aurora_storage.open("dictkv:///n")
    assert f"format version {FORMAT_VERSION + 1}" in str(info.value)
    assert OPENED[-1].closed


def test_same_or_older_format_version_opens() -> None:
    DISK["/o"] = {META_KEY: orjson.dumps({"format": FORMAT_VERSION, "codec": "raw"})}
    with aurora_storage.open("dictkv:///o") as repo:
        assert repo.codec.name == "raw"


@pytest.mark.parametrize(
    "raw",
    [b"not json", b"{}", b'{"format": "x", "codec": "json"}', b"[1, 2]"],
    ids=["garbage", "empty", "bad-format", "wrong-shape"],
)
def test_damaged_metadata_is_corruption(raw: bytes) -> None:
    DISK["/c"] = {META_KEY: raw}
    with pytest.raises(CorruptionError, match="metadata record"):
        aurora_storage.open("dictkv:///c")
    assert OPENED[-1].closed


def test_unknown_recorded_codec_is_a_configuration_error() -> None:
    DISK["/u"] = {META_KEY: orjson.dumps({"format": FORMAT_VERSION, "codec": "zstd-json"})}
    with pytest.raises(ConfigurationError, match="unknown codec 'zstd-json'"):
        aurora_storage.open("dictkv:///u")


def test_custom_codec_object_is_recorded_by_name() -> None:
    upper = Codec("test-upper", lambda v: str(v).upper().encode(), lambda b: b.decode())
    with aurora_storage.open("dictkv:///x", codec=upper) as repo:
        repo.put("t", "k", "abc")
    assert _meta("/x")["codec"] == "test-upper"
    with aurora_storage.open("dictkv:///x", codec=upper) as repo:
        assert repo.get("t", "k") == "ABC"


def test_metadata_record_is_invisible_to_tenants_and_scans() -> None:
    with aurora_storage.open("dictkv:///v") as repo:
        assert list(repo.tenants()) == []
        repo.put("t", "k", 1)
        assert list(repo.tenants()) == ["t"]
        assert repo.drop_tenant("t") == 1
        assert list(repo.tenants()) == []
    assert META_KEY in DISK["/v"]


def test_read_only_open_of_a_new_store_writes_nothing() -> None:
    with aurora_storage.open("dictkv:///r", ro=True) as repo:
        assert repo.codec.name == "json"
    assert DISK["/r"] == {}


def test_codec_keyword_overrides_the_query_string() -> None:
    with aurora_storage.open("dictkv:///k?codec=json", codec="msgpack") as repo:
        assert repo.codec.name == "msgpack"
    assert _meta("/k")["codec"] == "msgpack"
