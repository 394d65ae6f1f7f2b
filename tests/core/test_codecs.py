"""Value codecs: the built-in three round-trip their documented values; the registry is
extensible at run time and through the plugin hook, and never silently replaces a name."""

from __future__ import annotations

import contextlib
import json
import types
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import (
    Codec,
    ConfigurationError,
    PluginError,
    SerializationError,
    available_codecs,
    get_codec,
    register_codec,
)
from aurora_storage import codecs as codecs_module
from aurora_storage._registry import registry
from aurora_storage.plugins import hookimpl, plugin_failures

PURE = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])

_text = st.text(st.characters(codec="utf-8"), max_size=10)
json_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**63 - 1)
    | st.floats(allow_nan=False, allow_infinity=False)
    | _text,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(_text, inner, max_size=4),
    max_leaves=12,
)
msgpack_values = st.recursive(
    st.none()
    | st.booleans()
    | st.integers(-(2**63), 2**64 - 1)
    | st.floats(allow_nan=False)
    | _text
    | st.binary(max_size=10),
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(_text | st.integers(-100, 100), inner, max_size=4)
    ),
    max_leaves=12,
)


@pytest.fixture
def clean_codecs() -> Iterator[None]:
    """Restore the codec registry (module state) after a test that registers codecs."""
    before = dict(codecs_module._codecs)
    yield
    codecs_module._codecs.clear()
    codecs_module._codecs.update(before)


@PURE
@given(json_values)
def test_json_round_trip(value: Any) -> None:
    codec = get_codec("json")
    data = codec.encode(value)
    assert isinstance(data, bytes)
    assert codec.decode(data) == value
    # It is plain JSON: other tools can read the stored values.
    assert json.loads(data) == value


@PURE
@given(msgpack_values)
def test_msgpack_round_trip(value: Any) -> None:
    codec = get_codec("msgpack")
    data = codec.encode(value)
    assert isinstance(data, bytes)
    assert codec.decode(data) == value


@PURE
@given(st.binary(max_size=64))
def test_raw_round_trip(value: bytes) -> None:
    codec = get_codec("raw")
    assert codec.encode(value) == value
    assert codec.encode(bytearray(value)) == value
    assert codec.encode(memoryview(value)) == value
    assert codec.decode(codec.encode(value)) == value


@pytest.mark.parametrize("value", ["text", 1, None, {"a": b"x"}])
def test_raw_codec_refuses_non_bytes(value: Any) -> None:
    with pytest.raises(TypeError, match="bytes only"):
        get_codec("raw").encode(value)
    with aurora_storage.open("memory://", codec="raw") as repo:
        with pytest.raises(SerializationError, match="raw codec"):
            repo.put("t", "k", value)
        assert repo.count("t") == 0


def test_json_unencodable_value_is_a_serialization_error_and_writes_nothing() -> None:
    with aurora_storage.open("memory://") as repo:
        for bad in ({1, 2}, object(), 2**64, b"bytes"):
            with pytest.raises(SerializationError) as info:
                repo.put("t", "k", bad)
            assert info.value.tenant == "t"
            assert info.value.key == "k"
            assert info.value.__cause__ is not None
        assert repo.get("t", "k") is None


def test_builtin_codecs_are_available() -> None:
    assert {"json", "msgpack", "raw"} <= set(available_codecs())
    assert available_codecs() == sorted(available_codecs())
    for name in ("json", "msgpack", "raw"):
        assert get_codec(name).name == name
    codec = get_codec("json")
    assert get_codec(codec) is codec


def test_unknown_codec_lists_known_ones() -> None:
    with pytest.raises(ConfigurationError, match="unknown codec 'nope'") as info:
        get_codec("nope")
    for name in ("json", "msgpack", "raw"):
        assert name in str(info.value)
    with pytest.raises(ConfigurationError, match="unknown codec"):
        aurora_storage.open("memory://", codec="nope")
    with pytest.raises(ConfigurationError, match="unknown codec"):
        aurora_storage.open("memory://?codec=nope")


def test_codec_is_frozen() -> None:
    codec = get_codec("json")
    with pytest.raises(AttributeError):
        codec.name = "other"  # type: ignore[misc]  # frozen: the point of the test


def test_register_codec_and_use_it(clean_codecs: None) -> None:
    upper = Codec("upper", lambda v: str(v).upper().encode(), lambda b: b.decode())
    register_codec(upper)
    assert "upper" in available_codecs()
    # Registering the very same object again is harmless.
    register_codec(upper)
    with aurora_storage.open("memory://", codec="upper") as repo:
        repo.put("t", "k", "hello")
        assert repo.backend.get(repo._full("t", "k")) == b"HELLO"
        assert repo.get("t", "k") == "HELLO"
        assert repo.codec is upper


def test_register_codec_never_silently_replaces(clean_codecs: None) -> None:
    first = Codec("twice", repr, lambda b: b)  # type: ignore[arg-type]  # a stand-in: never encodes
    second = Codec("twice", str, lambda b: b)  # type: ignore[arg-type]  # a stand-in: never encodes
    register_codec(first)
    with pytest.raises(ConfigurationError, match="already registered"):
        register_codec(second)
    assert get_codec("twice") is first
    register_codec(second, replace=True)
    assert get_codec("twice") is second
    with pytest.raises(ConfigurationError, match="already registered"):
        register_codec(Codec("json", repr, repr))  # type: ignore[arg-type]  # a stand-in: refused
    assert get_codec("json") is codecs_module.JSON


class _CodecPlugin:
    """A plugin object providing a codec through the ``aurora_storage_codecs`` hook."""

    codec = Codec("reversed", lambda v: bytes(v)[::-1], lambda b: b[::-1])

    @hookimpl
    def aurora_storage_codecs(self) -> list[Codec[Any]]:
        return [self.codec]


def test_plugin_codec_hook(clean_codecs: None) -> None:
    plugin = _CodecPlugin()
    assert "reversed" not in available_codecs()
    registry.register_plugin(plugin, name="test-codec-plugin")
    try:
        assert get_codec("reversed") is plugin.codec
        assert "reversed" in available_codecs()
        with aurora_storage.open("memory://", codec="reversed") as repo:
            repo.put("t", "k", b"abc")
            assert repo.backend.get(repo._full("t", "k")) == b"cba"
            assert repo.get("t", "k") == b"abc"
    finally:
        registry.pm.unregister(plugin)


def test_plugin_codec_does_not_override_a_builtin(clean_codecs: None) -> None:
    class Hostile:
        @hookimpl
        def aurora_storage_codecs(self) -> list[Codec[Any]]:
            return [Codec("json", repr, repr)]  # type: ignore[arg-type]  # a stand-in: ignored

    plugin = Hostile()
    registry.register_plugin(plugin, name="test-hostile-codec")
    try:
        available_codecs()
        assert get_codec("json") is codecs_module.JSON
        assert "is taken by the built-in codec 'json'" in plugin_failures()["test-hostile-codec"]
    finally:
        registry.pm.unregister(plugin)
        registry.failures.pop("test-hostile-codec", None)


@contextlib.contextmanager
def _codec_plugin(name: str, hook: Callable[[], Any]) -> Iterator[types.ModuleType]:
    """A runtime plugin module whose ``aurora_storage_codecs`` is ``hook``; removed (and
    its recorded failure forgotten) afterwards."""
    module = types.ModuleType(name)
    module.aurora_storage_codecs = hookimpl(hook)  # type: ignore[attr-defined]  # a module built at run time
    registry.register_plugin(module)
    try:
        yield module
    finally:
        registry.pm.unregister(module)
        registry.failures.pop(name, None)


def test_a_raising_codec_hook_is_isolated_and_reported(clean_codecs: None) -> None:
    # It made available_codecs(), get_codec() and open() raise ZeroDivisionError on
    # every lookup, and plugin_failures() stayed empty.
    good = Codec("goodcodec", lambda v: repr(v).encode(), lambda b: b)
    with (
        _codec_plugin("test_raising_codecs", lambda: 1 / 0),
        _codec_plugin("test_good_codecs", lambda: [good]),
    ):
        names = available_codecs()
        assert {"json", "msgpack", "raw", "goodcodec"} <= set(names)
        assert get_codec("goodcodec") is good
        assert get_codec("json") is codecs_module.JSON
        failure = plugin_failures()["test_raising_codecs"]
        assert "aurora_storage_codecs()" in failure
        assert "ZeroDivisionError" in failure
        with pytest.raises(PluginError, match="test_raising_codecs") as info:
            get_codec("mine")
        assert "unknown codec 'mine'" in str(info.value)
        assert isinstance(info.value.__cause__, ZeroDivisionError)
        with pytest.raises(PluginError, match="test_raising_codecs"):
            aurora_storage.open("memory://?codec=mine")
        with aurora_storage.open("memory://", codec="goodcodec") as repo:
            repo.put("t", "k", 1)


@pytest.mark.parametrize(
    "result",
    [["json"], None, 5, "json", Codec("solo", repr, repr), [Codec("", repr, repr)]],  # type: ignore[arg-type]  # wrong on purpose
    ids=["list-of-str", "none", "int", "str", "bare-codec", "empty-name"],
)
def test_a_codec_hook_returning_no_list_of_codecs_is_reported(
    result: Any, clean_codecs: None
) -> None:
    # ["json"] gave AttributeError: 'str' object has no attribute 'name' on every lookup.
    with _codec_plugin("test_malformed_codecs", lambda: result):
        assert {"json", "msgpack", "raw"} <= set(available_codecs())
        assert "list of Codec" in plugin_failures()["test_malformed_codecs"]
        with pytest.raises(PluginError, match="test_malformed_codecs"):
            get_codec("mine")
        assert get_codec("raw") is codecs_module.RAW


def test_a_plugin_codec_clashing_with_a_builtin_is_reported(clean_codecs: None) -> None:
    # It was dropped silently: the plugin's author never learnt that "json" was taken.
    extra = Codec("clashextra", lambda v: repr(v).encode(), lambda b: b)
    with _codec_plugin("test_clashing_codecs", lambda: [Codec("json", repr, repr), extra]):  # type: ignore[arg-type]  # a stand-in: refused
        assert get_codec("clashextra") is extra  # its other codecs still load
        assert get_codec("json") is codecs_module.JSON
        failure = plugin_failures()["test_clashing_codecs"]
        assert "'json'" in failure
        assert "built-in" in failure
        # A clash says nothing about other names: an unknown one is a plain miss.
        with pytest.raises(ConfigurationError, match="unknown codec 'mine'") as info:
            get_codec("mine")
        assert not isinstance(info.value, PluginError)


def test_a_codec_hook_giving_fresh_objects_each_call_is_no_clash(clean_codecs: None) -> None:
    with _codec_plugin(
        "test_fresh_codecs", lambda: [Codec("freshcodec", lambda v: b"", lambda b: b)]
    ):
        first = get_codec("freshcodec")
        available_codecs()
        available_codecs()
        assert get_codec("freshcodec") is first
        assert "test_fresh_codecs" not in plugin_failures()


@pytest.mark.parametrize("bad", [5, ["json"], None, b"json"])
def test_get_codec_rejects_non_names(bad: Any) -> None:
    with pytest.raises(ConfigurationError, match="a codec is a name or a Codec"):
        get_codec(bad)


@pytest.mark.parametrize(
    "bad",
    ["json", Codec("", repr, repr), Codec(1, repr, repr)],  # type: ignore[arg-type]  # wrong on purpose
    ids=["not-a-codec", "empty-name", "int-name"],
)
def test_register_codec_rejects_malformed(bad: Any, clean_codecs: None) -> None:
    with pytest.raises(ConfigurationError):
        register_codec(bad)


def test_json_held_encoding_gives_the_same_bytes_as_encode() -> None:
    from aurora_storage.codecs import get_codec

    json = get_codec("json")
    assert json.encode_held is not None
    value = {"type": "OrderCreated", "items": [1, 2.5, None], "note": "é"}
    assert json.encode_held(value) == json.encode(value)
    assert get_codec("msgpack").encode_held is None  # falls back to encode


# A codec name is recorded as text in each store's metadata (and its marker): a name that
# is not valid UTF-8 text (a lone surrogate) was registered and listed, then every open
# with it failed: memory:// with a raw TypeError from orjson, lmdb:// and rocksdb:// with
# a PluginError blaming the built-in backend, lmdb leaving its files behind.
_utf8_text = st.text(st.characters(codec="utf-8"), max_size=5)
_surrogate_names = st.builds(
    lambda a, s, b: a + s + b, _utf8_text, st.characters(categories=["Cs"]), _utf8_text
)


def _named(name: Any) -> Codec[Any]:
    return Codec(name, lambda v: repr(v).encode(), lambda b: b)


@PURE
@given(_surrogate_names)
def test_a_codec_name_that_is_not_utf8_text_is_refused(name: str) -> None:
    with pytest.raises(ConfigurationError, match="not valid UTF-8") as info:
        get_codec(_named(name))
    assert "metadata" in str(info.value)
    before = dict(codecs_module._codecs)
    with pytest.raises(ConfigurationError, match="not valid UTF-8"):
        register_codec(_named(name))
    assert codecs_module._codecs == before
    assert name not in available_codecs()


@PURE
@given(st.text(st.characters(codec="utf-8"), min_size=1, max_size=10))
def test_any_nonempty_utf8_codec_name_passes(name: str) -> None:
    # Case, spaces, "/", "?" and full-width letters stay allowed: only what cannot be
    # stored is refused.
    codec = _named(name)
    assert get_codec(codec) is codec


def test_a_plugin_codec_whose_name_is_not_utf8_text_is_reported(clean_codecs: None) -> None:
    good = Codec("goodsurrogate", lambda v: repr(v).encode(), lambda b: b)
    with _codec_plugin("test_surrogate_codecs", lambda: [_named("x\udc80"), good]):
        names = available_codecs()
        assert "x\udc80" not in names
        # The whole list is refused, as for an empty name: nothing half-loaded.
        assert "goodsurrogate" not in names
        failure = plugin_failures()["test_surrogate_codecs"]
        assert "not valid UTF-8" in failure
        assert "'x\\udc80'" in failure
        with pytest.raises(PluginError, match="test_surrogate_codecs"):
            get_codec("x\udc80")


@pytest.mark.parametrize("scheme", ["memory", "lmdb", "rocksdb"])
def test_opening_with_a_codec_name_that_is_not_utf8_text_writes_nothing(
    scheme: str, tmp_path: Path
) -> None:
    url = "memory://" if scheme == "memory" else f"{scheme}://{tmp_path}/store"
    with pytest.raises(ConfigurationError, match="not valid UTF-8") as info:
        aurora_storage.open(url, codec=_named("x\udc80"))
    assert not isinstance(info.value, PluginError)
    assert list(tmp_path.iterdir()) == []
