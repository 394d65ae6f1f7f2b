"""aurora-storage: one repository API over embedded key-value engines.

Quick start::

    import aurora_storage

    with aurora_storage.open("memory://") as repo:
        repo.put("acme", ("order", 1), {"status": "created"})
        repo.get("acme", ("order", 1))

Backends are chosen by URL (``memory://``, ``rocksdb:///abs/path``, ``lmdb:///abs/path``,
``tiered://?hot=...&cold=...``) and found as plugins through entry points.
"""

from __future__ import annotations

from collections.abc import Coroutine
from typing import TYPE_CHECKING, Any, Literal, TypeVar, overload

from . import errors
from ._keys import (
    MAX_KEY_SIZE,
    decode_key,
    decode_stored_key,
    encode_key,
    encode_stored_key,
    tenant_range,
)
from ._registry import registry as _registry
from ._repository import (
    FORMAT_VERSION,
    Batch,
    Change,
    Repository,
    Slot,
    TenantView,
    Version,
    Watch,
)
from ._version import __version__
from .backend import Backend, Capabilities, VerifyProblem, VerifyReport
from .codecs import Codec, available_codecs, get_codec, register_codec
from .config import URL
from .errors import (
    BackendNotFoundError,
    BatchTooLargeError,
    ConfigurationError,
    CorruptionError,
    ForeignStoreError,
    InheritedHandleError,
    InterruptedRestoreError,
    InvalidArgumentError,
    InvalidKeyError,
    InvalidTenantError,
    InvalidURLError,
    KeyExistsError,
    KeyTooLargeError,
    NotSupportedError,
    PluginConflictError,
    PluginError,
    PositionExpiredError,
    ReadOnlyError,
    RepositoryClosedError,
    SerializationError,
    StorageError,
    StorageFullError,
    StoreLockedError,
    ValueTooLargeError,
    VersionConflictError,
)
from .plugins import BackendSpec, installed_schemes, register_backend, register_plugin

if TYPE_CHECKING:
    # Imported on first use (module __getattr__ below): they load asyncio, which
    # `import aurora_storage` does not.
    from ._async import AsyncBatch, AsyncRepository, AsyncTenantView
    from ._eventstore import AsyncWatch

__all__ = [
    "FORMAT_VERSION",
    "MAX_KEY_SIZE",
    "URL",
    "AsyncBatch",
    "AsyncRepository",
    "AsyncTenantView",
    "AsyncWatch",
    "Backend",
    "BackendNotFoundError",
    "BackendSpec",
    "Batch",
    "BatchTooLargeError",
    "Capabilities",
    "Change",
    "Codec",
    "ConfigurationError",
    "CorruptionError",
    "ForeignStoreError",
    "InheritedHandleError",
    "InterruptedRestoreError",
    "InvalidArgumentError",
    "InvalidKeyError",
    "InvalidTenantError",
    "InvalidURLError",
    "KeyExistsError",
    "KeyTooLargeError",
    "NotSupportedError",
    "PluginConflictError",
    "PluginError",
    "PositionExpiredError",
    "ReadOnlyError",
    "Repository",
    "RepositoryClosedError",
    "SerializationError",
    "Slot",
    "StorageError",
    "StorageFullError",
    "StoreLockedError",
    "TenantView",
    "TieredRepository",
    "ValueTooLargeError",
    "VerifyProblem",
    "VerifyReport",
    "Version",
    "VersionConflictError",
    "Watch",
    "__version__",
    "available_codecs",
    "decode_key",
    "decode_stored_key",
    "encode_key",
    "encode_stored_key",
    "errors",
    "get_codec",
    "installed_schemes",
    "open",
    "open_async",
    "register_backend",
    "register_codec",
    "register_plugin",
    "tenant_range",
]


#: The value type of a codec passed to :func:`open` (``Codec[T]`` gives ``Repository[Any, T]``).
_T = TypeVar("_T")


# Typing only: the value type follows the codec argument where it is known. Keys stay
# ``Any``: a store may hold keys of every supported type, and ``Any`` lets a caller
# declare their own (``repo: Repository[str, bytes] = open(url, codec="raw")``), which a
# union of every key type would refuse (a repository's key type is invariant).
@overload
def open(url: str | URL, *, codec: Literal["raw"], **options: Any) -> Repository[Any, bytes]: ...
@overload
def open(url: str | URL, *, codec: Codec[_T], **options: Any) -> Repository[Any, _T]: ...
@overload
def open(
    url: str | URL, *, codec: str | Codec[Any] | None = None, **options: Any
) -> Repository[Any, Any]: ...
def open(
    url: str | URL, *, codec: str | Codec[Any] | None = None, **options: Any
) -> Repository[Any, Any]:
    """Open the repository a URL names.

    Args:
        url: ``scheme://...`` (see :class:`URL`); its query string holds options.
        codec: value codec name or object; default: the store's recorded codec, or
            ``json`` for a new store. Also accepted as ``?codec=`` in the URL.
            For type checkers the value type follows it: ``codec="raw"`` gives a
            ``Repository[Any, bytes]``, a ``Codec[T]`` a ``Repository[Any, T]``, anything
            else (``json``, ``msgpack``, a codec named in the URL) ``Repository[Any, Any]``.
        **options: backend options; they override the query string's.

    Raises:
        InvalidURLError: malformed URL, or an unknown/malformed option (the message
            lists the valid ones).
        BackendNotFoundError: no installed plugin for the scheme;
            :class:`~aurora_storage.errors.PluginError` (a subclass) when the installed
            plugin is broken, its engine fails to import, or its ``open`` raised an
            error that is not an aurora_storage one (chained; a
            :class:`~aurora_storage.errors.StorageError` comes out as it is), or the
            codec is unknown while a codec plugin is broken; and
            :class:`~aurora_storage.errors.PluginConflictError` when two distributions
            claim the scheme.
        ConfigurationError: conflicting options, a codec/format mismatch with the store,
            an unknown codec, or a :class:`Codec` whose name is empty or not valid UTF-8
            text (the last two before the backend opens: nothing is created).
    """
    parsed = URL.parse(url)
    spec = _registry.lookup(parsed.scheme)
    opts: dict[str, Any] = dict(parsed.options)
    url_codec = opts.pop("codec", None)
    opts.update(options)
    # ?otel=true (or otel=True): the observability layer, for any scheme.
    otel = opts.pop("otel", None)
    chosen = codec if codec is not None else url_codec
    if chosen is not None:
        # An unknown codec, or a Codec whose name no store can record, is refused before
        # the backend opens: an engine's open creates its store directory.
        get_codec(chosen)
    if spec.accepts_codec and chosen is not None:
        opts["codec"] = chosen
    try:
        result = spec.open(parsed, opts)
    except ImportError as exc:
        # The plugin's module loaded, its engine did not (a missing or broken
        # dependency): a recorded plugin failure naming the distribution, not a raw
        # ModuleNotFoundError.
        raise _registry.engine_import_failed(parsed.scheme, spec, exc) from exc
    except errors.StorageError:
        raise  # typed already (the built-in backends' errors): not wrapped again
    except Exception as exc:
        # A plugin that let its engine's error out (a PermissionError, ...) breaks the
        # contract that only aurora_storage.errors types come out of open().
        raise _registry.open_failed(parsed.scheme, spec, exc) from exc
    if isinstance(result, Repository):
        if chosen is not None and result.codec.name != get_codec(chosen).name:
            result.close()
            raise ConfigurationError(
                f"{parsed} uses codec {result.codec.name!r}; codec={chosen!r} does not apply"
            )
        return _observed(result, otel)
    if not isinstance(result, Backend):
        hint = ""
        if isinstance(result, Coroutine):
            # An open that hands back a coroutine: close it, or it is left to the garbage
            # collector ("coroutine ... was never awaited").
            result.close()
            hint = " (BackendSpec.open is called synchronously: make it a plain def)"
        raise BackendNotFoundError(
            f"the plugin for {parsed.scheme!r} returned {type(result).__name__}, not a "
            f"Backend{hint}",
            backend=parsed.scheme,
        )
    # Backend.repository_class: an engine's own Repository subclass, or None.
    repo_cls: type[Repository[Any, Any]] = result.repository_class or Repository
    return _observed(repo_cls._from_backend(result, codec=chosen, url=parsed), otel)


def _observed(repo: Repository[Any, Any], otel: Any) -> Repository[Any, Any]:
    """``repo`` instrumented when the URL says ``otel=true``."""
    if otel is None:
        return repo
    from .config import parse_bool

    try:
        wanted = otel if isinstance(otel, bool) else parse_bool(str(otel))
    except ValueError as exc:
        repo.close()
        raise InvalidURLError(
            f"otel: expected a boolean - true/false, yes/no, on/off or 1/0 (any case) - "
            f"got {otel!r}"
        ) from exc
    if not wanted:
        return repo
    from .observability import instrument

    try:
        return instrument(repo)
    except BaseException:
        repo.close()
        raise


@overload
def open_async(
    url: str | URL, *, codec: Literal["raw"], **options: Any
) -> AsyncRepository[Any, bytes]: ...
@overload
def open_async(url: str | URL, *, codec: Codec[_T], **options: Any) -> AsyncRepository[Any, _T]: ...
@overload
def open_async(
    url: str | URL, *, codec: str | Codec[Any] | None = None, **options: Any
) -> AsyncRepository[Any, Any]: ...
def open_async(
    url: str | URL, *, codec: str | Codec[Any] | None = None, **options: Any
) -> AsyncRepository[Any, Any]:
    """Like :func:`open`, returning an :class:`AsyncRepository`.

    Opening is synchronous (it is quick and happens once); every data method of the
    result is a coroutine or an async iterator. A ``tiered://`` URL gives an
    :class:`~aurora_storage.tiered.AsyncTieredRepository` (with ``rebuild``/``catch_up``).
    """
    return open(url, codec=codec, **options).as_async()


def __getattr__(name: str) -> Any:
    # Imported on first use so `import aurora_storage` stays light: TieredRepository,
    # and the async classes (which load asyncio).
    if name == "TieredRepository":
        from .tiered import TieredRepository

        return TieredRepository
    if name in ("AsyncBatch", "AsyncRepository", "AsyncTenantView"):
        from . import _async

        return getattr(_async, name)
    if name == "AsyncWatch":
        from ._eventstore import AsyncWatch

        return AsyncWatch
    raise AttributeError(f"module 'aurora_storage' has no attribute {name!r}")
