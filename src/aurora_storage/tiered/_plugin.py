"""Entry point of the ``tiered`` scheme (light: the tiers' engines load on open).

``tiered://?hot=<url-encoded URL>&cold=<url-encoded URL>`` plus, optionally,
``&projection=<name>``, ``&on_poison=stop|park``, ``&fill=read|none``,
``&trim_every=N`` and ``&rebuild_chunk=N``.

Each tier's own options go inside its URL. A projection is named: registered with
:func:`aurora_storage.tiered.register_projection` or published in the entry point group
``aurora_storage.projections``; a URL never imports a module. Keyword arguments to
:func:`aurora_storage.open` override the query: ``projection=`` may then be the function
itself, ``hot=``/``cold=`` may be URLs or already opened repositories.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from aurora_storage.config import URL
from aurora_storage.errors import ConfigurationError, InvalidURLError
from aurora_storage.plugins import BackendSpec, hookimpl

_OPTIONS = (
    "hot",
    "cold",
    "projection",
    "on_poison",
    "fill",
    "trim_every",
    "rebuild_chunk",
    "codec",
)


def _open(url: URL, options: Mapping[str, Any]) -> Any:
    import aurora_storage

    from ._config import TieredConfig, TieredURL, same_store, store_path
    from ._repository import TieredRepository

    url = TieredURL.of(url)  # every message below prints it with the tiers' secrets hidden
    unknown = sorted(set(options) - set(_OPTIONS))
    if unknown:
        raise InvalidURLError(
            f"unknown option {unknown[0]!r} for the tiered backend; valid options: "
            f"{', '.join(_OPTIONS)} (a tier's own options go inside its URL)",
            backend="tiered",
        )
    if url.path not in ("", "/") or url.host:
        raise InvalidURLError(
            f"tiered URLs take no path or host: use 'tiered://?hot=...&cold=...', not {url}",
            backend="tiered",
        )
    for name in ("hot", "cold"):
        if not options.get(name):
            raise InvalidURLError(
                f"the tiered backend needs option {name!r}: "
                "tiered://?hot=<url-encoded URL>&cold=<url-encoded URL>",
                backend="tiered",
            )
    config = TieredConfig.from_options(options)  # parsed once, frozen
    if same_store(store_path(options["hot"]), store_path(options["cold"])):
        # Checked before opening: the second open would fail on the engine's lock.
        raise ConfigurationError(
            "the hot and cold tiers must be two different stores: both name "
            f"{store_path(options['hot'])}",
            backend="tiered",
        )

    # open(url, codec=...) reaches us as the "codec" option (accepts_codec below): a new
    # pair is created with it in both tiers; an existing tier with another codec refuses.
    codec = options.get("codec")

    def _tier(value: Any) -> Any:
        if isinstance(value, aurora_storage.Repository):
            return value
        return aurora_storage.open(value, codec=codec)

    cold = _tier(options["cold"])
    try:
        hot = _tier(options["hot"])
    except BaseException:
        cold.close()
        raise
    try:
        return TieredRepository(hot=hot, cold=cold, config=config, url=url)
    except BaseException:
        try:
            hot.close()
        finally:
            cold.close()
        raise


@hookimpl
def aurora_storage_backends() -> list[BackendSpec]:
    """The ``tiered`` scheme."""
    return [
        BackendSpec(
            scheme="tiered",
            open=_open,
            description="hot tier in front of a durable cold tier: cache or projection",
            package="aurora-storage",
            accepts_codec=True,
        )
    ]
