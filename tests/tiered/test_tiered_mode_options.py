"""An option of the other mode is refused, not silently ignored.

``fill`` (what a cache pair's reads copy into hot) means nothing to a projection-mode
pair, and ``on_poison`` (what a record the projection cannot apply does) nothing to a
cache pair; ``tiered://...&projection=orders&fill=none`` was accepted, stored in
``repo.config`` and had no effect. Every way of giving an option (the URL's query,
``open()``'s keyword overrides, the constructor, ``TieredConfig``) now refuses one of
the other mode with ``ConfigurationError`` naming the option, the pair's mode and the
fix, before a tier is opened or written. ``trim_every``, ``rebuild_chunk`` and ``codec``
apply to both modes.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any
from urllib.parse import quote

import pytest
from tiered_helpers import FlakyBackend, orders

import aurora_storage
from aurora_storage import Repository
from aurora_storage.errors import ConfigurationError
from aurora_storage.tiered import TieredConfig, TieredRepository

Repo = Repository[Any, Any]

#: (the pair's mode, an option of the other mode, a valid value of it)
WRONG = [
    ("projection", "fill", "read"),
    ("projection", "fill", "none"),
    ("cache", "on_poison", "stop"),
    ("cache", "on_poison", "park"),
]


def memory() -> Repo:
    return Repository(FlakyBackend())


def raw(repo: Repo) -> dict[bytes, bytes]:
    return dict(repo.backend.scan(b"\x00", b"\xff"))


def url_of(tmp_path: Path, mode: str, **query: str) -> str:
    url = (
        "tiered://?hot="
        + quote(f"lmdb://{tmp_path}/hot", safe="")
        + "&cold="
        + quote(f"rocksdb://{tmp_path}/cold", safe="")
    )
    if mode == "projection":
        url += "&projection=orders"  # registered by tiered_helpers
    return url + "".join(f"&{k}={v}" for k, v in query.items())


def assert_names(error: ConfigurationError, mode: str, option: str, value: str) -> None:
    message = str(error)
    assert f"{option}={value!r}" in message
    assert f"{mode} mode" in message
    assert "remove" in message


@pytest.mark.parametrize(("mode", "option", "value"), WRONG)
@pytest.mark.parametrize("how", ["url", "open-keyword", "open_async"])
def test_an_option_of_the_other_mode_is_refused_by_url(
    tmp_path: Path, mode: str, option: str, value: str, how: str
) -> None:

    def open_it() -> None:
        if how == "url":
            aurora_storage.open(url_of(tmp_path, mode, **{option: value}))
        elif how == "open-keyword":
            aurora_storage.open(url_of(tmp_path, mode), **{option: value})
        else:
            aurora_storage.open_async(url_of(tmp_path, mode, **{option: value}))

    with pytest.raises(ConfigurationError) as info:
        open_it()
    assert_names(info.value, mode, option, value)
    # Refused before a tier was opened.
    assert not (tmp_path / "hot").exists()
    assert not (tmp_path / "cold").exists()


@pytest.mark.parametrize(("mode", "option", "value"), WRONG)
@pytest.mark.parametrize("how", ["constructor", "config"])
def test_an_option_of_the_other_mode_is_refused_by_the_constructor(
    mode: str, option: str, value: str, how: str
) -> None:
    hot, cold = memory(), memory()
    before = raw(hot), raw(cold)
    projection = orders if mode == "projection" else None
    options: dict[str, Any] = {option: value}

    def construct() -> None:
        if how == "constructor":
            TieredRepository(hot=hot, cold=cold, projection=projection, **options)
        else:
            TieredRepository(
                hot=hot, cold=cold, config=TieredConfig(projection=projection, **options)
            )

    with pytest.raises(ConfigurationError) as info:
        construct()
    assert_names(info.value, mode, option, value)
    assert (raw(hot), raw(cold)) == before
    assert not hot.closed
    assert not cold.closed


@pytest.mark.parametrize("mode", ["cache", "projection"])
def test_the_options_of_the_mode_and_of_both_modes_are_taken(tmp_path: Path, mode: str) -> None:
    own = {"fill": "none"} if mode == "cache" else {"on_poison": "park"}
    both = {"trim_every": "7", "rebuild_chunk": "3"}
    with aurora_storage.open(url_of(tmp_path, mode, **own, **both)) as repo:
        assert isinstance(repo, TieredRepository)
        assert repo.mode == mode
        config = repo.config
        assert (config.trim_every, config.rebuild_chunk) == (7, 3)
        if mode == "cache":
            assert (config.fill, config.on_poison) == ("none", None)
        else:
            assert (config.fill, config.on_poison) == (None, "park")
        repo.put("acme", (1, "e"), {"type": "OrderCreated", "order": "o-1"})
    # Left out, the mode's own default; the other mode's option is None.
    assert TieredConfig().fill == "read"
    assert TieredConfig().on_poison is None
    assert TieredConfig(projection=orders).on_poison == "stop"
    assert TieredConfig(projection=orders).fill is None
    t: TieredRepository[Any, Any]
    with TieredRepository(hot=memory(), cold=memory(), projection=orders) as t:
        assert (t.config.fill, t.config.on_poison) == (None, "stop")
    with TieredRepository(hot=memory(), cold=memory()) as t:
        assert (t.config.fill, t.config.on_poison) == ("read", None)
