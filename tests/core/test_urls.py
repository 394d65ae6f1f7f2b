"""URLs (immutable, round-tripping, secrets hidden) and typed option parsing."""

from __future__ import annotations

import dataclasses
import os
import string
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import URL, BackendSpec, InvalidURLError, register_backend
from aurora_storage._url import hide_text
from aurora_storage.config import (
    config_from_options,
    describe_options,
    expand_store_path,
    parse_bool,
    parse_size,
    size_field,
)
from aurora_storage.memory._backend import MemoryBackend
from aurora_storage.plugins import unregister_backend

PURE = settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@dataclass(frozen=True, slots=True)
class DemoConfig:
    """A backend config exercising every kind of field the coercion supports."""

    path: str = ""
    flag: bool = False
    count: int = 1
    ratio: float = 0.5
    mode: Literal["fast", "safe"] = "safe"
    cache: int = size_field(64 * 1024**2, help="cache size")
    limit: int | None = None
    name: str = "x"


OPTION_NAMES = ["flag", "count", "ratio", "mode", "cache", "limit", "name"]


def _config(options: Mapping[str, Any]) -> DemoConfig:
    return config_from_options(DemoConfig, options, backend="demo", fixed={"path": "/p"})


# ------------------------------------------------------------------ URL round trips

_any_text = st.text(st.characters(codec="utf-8"), max_size=8)
schemes = st.from_regex(r"[a-z][a-z0-9+.\-]{0,6}", fullmatch=True)
hosts = st.from_regex(r"[a-z0-9]([a-z0-9\-]{0,6}[a-z0-9])?(\.[a-z0-9]{1,4}){0,2}", fullmatch=True)


@st.composite
def urls(draw: st.DrawFn) -> URL:
    scheme = draw(schemes)
    host = draw(st.none() | hosts)
    port = draw(st.integers(0, 65535)) if host and draw(st.booleans()) else None
    username = (
        draw(st.text(st.characters(codec="utf-8"), min_size=1, max_size=6))
        if host and draw(st.booleans())
        else None
    )
    password = draw(_any_text) if username and draw(st.booleans()) else None
    if host or draw(st.booleans()):
        path = draw(st.just("") | _any_text.map(lambda p: "/" + p))
    else:
        # A relative path (``scheme:rel/path``); it must not look like an absolute one.
        path = draw(_any_text.filter(lambda p: not p.startswith("/")))
    names = draw(
        st.lists(
            st.text(st.characters(codec="utf-8"), min_size=1, max_size=6), unique=True, max_size=4
        )
    )
    query = tuple((n, draw(_any_text)) for n in names)
    return URL(scheme, path, host, port, username, password, query)


@PURE
@given(urls())
def test_render_then_parse_round_trips(url: URL) -> None:
    assert URL.parse(url.render(hide_secrets=False)) == url


@PURE
@given(urls())
def test_parse_is_idempotent_on_rendered_text(url: URL) -> None:
    text = url.render(hide_secrets=False)
    assert URL.parse(text).render(hide_secrets=False) == text


@pytest.mark.parametrize(
    ("text", "scheme", "host", "port", "path"),
    [
        ("memory://", "memory", None, None, ""),
        ("rocksdb:///var/data/events", "rocksdb", None, None, "/var/data/events"),
        ("rocksdb:relative/path", "rocksdb", None, None, "relative/path"),
        ("rocksdb://./relative/path", "rocksdb", None, None, "./relative/path"),
        ("NATS://Server:4222/x", "nats", "server", 4222, "/x"),
        ("lmdb:///with%20space", "lmdb", None, None, "/with space"),
    ],
)
def test_parse_examples(
    text: str, scheme: str, host: str | None, port: int | None, path: str
) -> None:
    url = URL.parse(text)
    assert (url.scheme, url.host, url.port, url.path) == (scheme, host, port, path)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("no-scheme-here", "not a URL"),
        ("1bad://x", "invalid scheme"),
        ("x://h:notaport/", "malformed URL"),
        ("x://h:99999/", "malformed URL"),
        ("x:///p?a=1&a=2", "given twice"),
        ("x:///p?novalue", "malformed query"),
    ],
)
def test_malformed_urls(text: str, message: str) -> None:
    with pytest.raises(InvalidURLError, match=message):
        URL.parse(text)


def test_parse_rejects_non_text() -> None:
    with pytest.raises(InvalidURLError, match="must be a str"):
        URL.parse(b"memory://")  # type: ignore[arg-type]  # wrong on purpose


def test_url_is_immutable_and_copy_on_write() -> None:
    url = URL.parse("x:///p?a=1&b=2")
    with pytest.raises(dataclasses.FrozenInstanceError):
        url.path = "/other"  # type: ignore[misc]  # frozen: the point of the test
    assert url.with_options(b=3, c=True).options == {"a": "1", "b": "3", "c": "true"}
    assert url.without_options("a").options == {"b": "2"}
    assert url.set(path="/q").path == "/q"
    assert url.options == {"a": "1", "b": "2"}
    url.options["a"] = "changed"
    assert url.options["a"] == "1"
    assert hash(url) == hash(URL.parse("x:///p?a=1&b=2"))


# ------------------------------------------------------------------ secrets

_MARK = "S3CR3TVALUE"


@PURE
@given(
    urls(),
    _any_text,
    st.sampled_from(["password", "token", "api_key", "AWS_SECRET", "credentials"]),
)
def test_secrets_are_hidden_when_printed(url: URL, extra: str, secret_name: str) -> None:
    secret = _MARK + extra
    url = url.set(username=url.username or "user", host=url.host or "h", password=secret)
    url = url.with_options(**{secret_name: secret})
    for shown in (str(url), repr(url), url.render(), f"{url}"):
        assert _MARK not in shown
        assert "***" in shown
    assert _MARK in url.render(hide_secrets=False)
    assert URL.parse(url.render(hide_secrets=False)).password == secret


def test_secrets_are_hidden_in_parse_errors_and_repository_repr() -> None:
    with pytest.raises(InvalidURLError) as info:
        URL.parse(f"x://u:{_MARK}@h:notaport/?token={_MARK}")
    assert _MARK not in str(info.value)
    with pytest.raises(InvalidURLError) as info2:
        URL.parse(f"x://u:{_MARK}@h/?token={_MARK}&token=2")
    assert _MARK not in str(info2.value)


# ------------------------------------------------------------------ option coercion


@PURE
@given(st.integers(-(2**70), 2**70))
def test_int_options_from_text_and_keywords(n: int) -> None:
    assert _config({"count": str(n)}).count == n
    assert _config({"count": f" {n} "}).count == n
    assert _config({"count": n}).count == n


_BOOLS = {
    "true": True,
    "1": True,
    "yes": True,
    "on": True,
    "false": False,
    "0": False,
    "no": False,
    "off": False,
}


@PURE
@given(st.sampled_from(sorted(_BOOLS)), st.randoms(use_true_random=False))
def test_bool_options_any_case(word: str, rnd: Any) -> None:
    mixed = "".join(c.upper() if rnd.random() < 0.5 else c for c in word)
    assert parse_bool(mixed) is _BOOLS[word]
    assert _config({"flag": mixed}).flag is _BOOLS[word]


_UNIT_SIZES = {
    "": 1,
    "B": 1,
    "K": 1024,
    "KiB": 1024,
    "KB": 1000,
    "M": 1024**2,
    "MiB": 1024**2,
    "MB": 1000**2,
    "G": 1024**3,
    "GiB": 1024**3,
    "GB": 1000**3,
    "T": 1024**4,
    "TiB": 1024**4,
    "TB": 1000**4,
}


@PURE
@given(st.integers(0, 10**6), st.sampled_from(sorted(_UNIT_SIZES)), st.sampled_from(["", " "]))
def test_size_options(n: int, unit: str, space: str) -> None:
    text = f"{n}{space}{unit}"
    assert parse_size(text) == n * _UNIT_SIZES[unit]
    assert parse_size(text.lower()) == n * _UNIT_SIZES[unit]
    assert _config({"cache": text}).cache == n * _UNIT_SIZES[unit]
    assert _config({"cache": n}).cache == n


def test_fractional_sizes_are_exact() -> None:
    assert parse_size("1.5GiB") == 3 * 1024**3 // 2
    assert parse_size("0.1KB") == 100
    with pytest.raises(ValueError, match="whole number of bytes"):
        parse_size("1.5")
    with pytest.raises(ValueError):
        parse_size(-1)
    with pytest.raises(ValueError):
        parse_size(True)  # a bool is an int to the type checker, refused at run time


def test_other_field_kinds() -> None:
    cfg = _config({"ratio": "0.25", "mode": "FAST", "limit": "none", "name": "n"})
    assert (cfg.ratio, cfg.mode, cfg.limit, cfg.name) == (0.25, "fast", None, "n")
    assert _config({"limit": "7"}).limit == 7
    assert _config({}) == DemoConfig(path="/p")


@pytest.mark.parametrize(
    ("option", "value"),
    [
        ("flag", "maybe"),
        ("flag", 1),
        ("count", "ten"),
        ("count", "1.5"),
        ("count", True),
        ("ratio", "fast"),
        ("mode", "slow"),
        ("cache", "64 parsecs"),
        ("cache", "-1"),
        ("limit", "lots"),
        ("name", 3),
    ],
)
def test_malformed_option_values_name_the_option(option: str, value: Any) -> None:
    with pytest.raises(InvalidURLError, match=f"bad value for option '{option}' ") as info:
        _config({option: value})
    assert info.value.backend == "demo"
    message = str(info.value)
    # The option's expected type, then every valid option, so the fix is in the message.
    kinds = dict(part.split(" (") for part in describe_options(DemoConfig).split(", "))
    assert f"'{option}' ({kinds[option]}" in message
    assert all(name in message.split("valid options:")[1] for name in OPTION_NAMES)


@PURE
@given(
    st.text(string.ascii_letters + "_", min_size=1, max_size=10).filter(
        lambda n: n not in OPTION_NAMES
    )
)
def test_unknown_options_list_the_valid_ones(name: str) -> None:
    with pytest.raises(InvalidURLError, match=f"unknown option '{name}'") as info:
        _config({name: "1"})
    message = str(info.value)
    for valid in OPTION_NAMES:
        assert valid in message
    # ``path`` comes from the URL itself, so it is not offered as an option.
    assert "path" not in message.split("valid options:")[1]


def test_describe_options_names_types() -> None:
    text = describe_options(DemoConfig)
    assert "cache (size)" in text
    assert "flag (bool)" in text
    assert "mode (fast|safe)" in text
    assert "limit (int)" in text


def test_config_is_frozen() -> None:
    cfg = _config({"count": "2"})
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.count = 3  # type: ignore[misc]  # frozen: the point of the test


# ------------------------------------------------------------------ through open()


@pytest.fixture
def demo_backend() -> Iterator[list[DemoConfig]]:
    """A runtime-registered ``cfgdemo://`` backend recording the config it was opened with."""
    seen: list[DemoConfig] = []

    def _open(url: URL, options: Mapping[str, Any]) -> MemoryBackend:
        seen.append(
            config_from_options(DemoConfig, options, backend="cfgdemo", fixed={"path": url.path})
        )
        return MemoryBackend()

    register_backend(BackendSpec("cfgdemo", _open, "test backend"))
    try:
        yield seen
    finally:
        unregister_backend("cfgdemo")


def test_keyword_arguments_override_the_query_string(demo_backend: list[DemoConfig]) -> None:
    with aurora_storage.open(
        "cfgdemo:///store?flag=false&count=3&cache=1MiB", flag=True, cache="2MiB"
    ):
        pass
    cfg = demo_backend[-1]
    assert (cfg.path, cfg.flag, cfg.count, cfg.cache) == ("/store", True, 3, 2 * 1024**2)


def test_codec_option_is_the_cores_not_the_backends(demo_backend: list[DemoConfig]) -> None:
    with aurora_storage.open("cfgdemo:///s?codec=msgpack") as repo:
        assert repo.codec.name == "msgpack"


def test_unknown_option_through_open(demo_backend: list[DemoConfig]) -> None:
    with pytest.raises(InvalidURLError, match="valid options: flag"):
        aurora_storage.open("cfgdemo:///s?colour=blue")
    with pytest.raises(InvalidURLError, match="unknown option 'path'"):
        aurora_storage.open("cfgdemo:///s?path=/elsewhere")
    with pytest.raises(InvalidURLError, match="unknown option 'bogus' for the memory backend"):
        aurora_storage.open("memory://?bogus=1")
    with pytest.raises(InvalidURLError, match="unknown option 'bogus'"):
        aurora_storage.open("memory://", bogus=1)


@pytest.mark.parametrize("text", ["x://[::1]:4222/p", "x://u:pw@[fe80::1]/", "x://[::1]"])
def test_ipv6_hosts_round_trip(text: str) -> None:
    url = URL.parse(text)
    assert ":" in (url.host or "")
    assert url.render(hide_secrets=False) == text
    assert URL.parse(url.render(hide_secrets=False)) == url


def test_unknown_option_lists_codec_even_for_a_backend_without_options() -> None:
    import aurora_storage

    with pytest.raises(aurora_storage.InvalidURLError) as info:
        aurora_storage.open("memory://?sync=1")
    assert "'sync'" in str(info.value)
    assert "codec" in str(info.value)


@pytest.mark.parametrize(
    ("text", "path"),
    [("x:///abs/store", "/abs/store"), ("x:rel/store", "rel/store"), ("x://./rel", "./rel")],
)
def test_local_path_gives_the_store_path(text: str, path: str) -> None:
    from aurora_storage.config import URL, local_path

    assert local_path(URL.parse(text), backend="x") == path


@pytest.mark.parametrize("text", ["x://host/abs", "x://user@/abs", "x:///", "x://"])
def test_local_path_refuses_hosts_and_missing_paths(text: str) -> None:
    from aurora_storage.config import URL, local_path

    with pytest.raises(InvalidURLError, match="x:///abs/path"):
        local_path(URL.parse(text), backend="x")


@given(st.text(min_size=1))
def test_query_values_are_form_encoded(value: str) -> None:
    # '+' in a query reads as a space (form encoding, as urlencode writes and SQLAlchemy
    # reads), so render() writes a literal '+' as %2B and every value round-trips.
    url = URL.parse("x:///p").with_options(token=value)
    assert URL.parse(url.render(hide_secrets=False)).options["token"] == value
    assert "+" not in url.render(hide_secrets=False).partition("?")[2]
    assert URL.parse("x:///p?token=a+b").options["token"] == "a b"


@PURE
@given(urls(), _any_text)
def test_a_user_part_without_password_is_hidden_when_printed(url: URL, extra: str) -> None:
    """A lone user part may be a token (``nats://TOKEN@host``, as NATS reads it), so it
    is hidden like a password: in the URL's text and in an unparsed URL in a message."""
    token = _MARK + extra
    url = url.set(username=token, host=url.host or "h", password=None)
    for shown in (str(url), repr(url), url.render(), f"{url}"):
        assert _MARK not in shown
        assert "***@" in shown
    assert URL.parse(url.render(hide_secrets=False)).username == token
    assert _MARK not in hide_text(url.render(hide_secrets=False))


_DROPPED_CHARS = st.sampled_from(["\t", "\n", "\r", "#"])


@PURE
@given(urls(), _DROPPED_CHARS, st.integers(0, 10**6))
def test_a_character_the_parser_would_drop_is_refused(url: URL, char: str, at: int) -> None:
    """A tab, line break or '#' anywhere in a URL's text was dropped without a word (a
    store path holding one named another store); percent-encoded it is kept."""
    text = url.render(hide_secrets=False)
    at = len(url.scheme) + 1 + at % (len(text) - len(url.scheme))  # after "scheme:"
    with pytest.raises(InvalidURLError, match="percent-encoded"):
        URL.parse(text[:at] + char + text[at:])


@PURE
@given(_any_text, _DROPPED_CHARS, _any_text)
def test_a_percent_encoded_dropped_character_stays_in_the_path(
    head: str, char: str, tail: str
) -> None:
    url = URL("rocksdb", "/" + head + char + tail)
    text = url.render(hide_secrets=False)
    assert char not in text
    assert URL.parse(text).path == "/" + head + char + tail


@PURE
@given(_any_text, st.integers(0x80, 0xFF), _any_text, st.sampled_from(["lmdb", "rocksdb"]))
def test_a_store_path_that_is_not_utf8_is_refused_naming_it(
    head: str, byte: int, tail: str, backend: str
) -> None:
    """A file name in another encoding (a byte that is not UTF-8, as os.fsdecode turns
    it into a lone surrogate) failed inside the engines with a raw encoding error."""
    path = "/tmp/" + head.replace("\x00", "") + chr(0xDC00 + byte) + tail.replace("\x00", "")
    with pytest.raises(InvalidURLError, match="is not valid UTF-8") as info:
        expand_store_path(path, backend=backend)
    assert repr(os.fsencode(path)) in str(info.value)


@PURE
@given(st.binary(min_size=1, max_size=12), st.binary(min_size=1, max_size=12))
def test_percent_escapes_name_exactly_their_utf8_text(a: bytes, b: bytes) -> None:
    """Percent-escapes that spell UTF-8 give that text; others are refused. Decoded with
    replacement (unquote's default), s%FF and s%FE named one store, U+FFFD on disk."""
    from urllib.parse import quote_from_bytes

    paths = {}
    for raw in (a, b):
        text = "rocksdb:/s" + quote_from_bytes(raw, safe="")
        try:
            expected = raw.decode("utf-8")
        except UnicodeDecodeError:
            with pytest.raises(InvalidURLError, match="not UTF-8"):
                URL.parse(text)
            continue
        paths[raw] = URL.parse(text).path
        assert paths[raw] == "/s" + expected
    if len(paths) == 2 and a != b:
        assert paths[a] != paths[b]


@PURE
@given(st.binary(min_size=1, max_size=8).filter(lambda raw: not _is_utf8(raw)))
def test_percent_escapes_in_options_and_credentials_must_be_utf8(raw: bytes) -> None:
    from urllib.parse import quote_from_bytes

    bad = quote_from_bytes(raw, safe="")
    with pytest.raises(InvalidURLError, match=r"query string .* not UTF-8"):
        URL.parse(f"lmdb:/x?map_size={bad}")
    with pytest.raises(InvalidURLError, match=r"user or password .* not UTF-8") as info:
        URL.parse(f"nats://u:{bad}@h/b")
    assert bad not in str(info.value)  # a password's bytes are never shown


def _is_utf8(raw: bytes) -> bool:
    try:
        raw.decode("utf-8")
    except UnicodeDecodeError:
        return False
    return True
