"""The public names are the contract: pinned here so a change is a deliberate one, and
every public name (and every public method of a public class) carries a docstring."""

from __future__ import annotations

import inspect
import types
from typing import Any

import pytest

import aurora_storage
from aurora_storage import backend, codecs, config, errors, plugins

AURORA_ALL = {
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
    "VerifyProblem",
    "VerifyReport",
    "Version",
    "ValueTooLargeError",
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
}

#: Errors of one part of the library (tiered) or of the backend interface only: in
#: ``aurora_storage.errors``, not re-exported at the top level.
ERRORS_NOT_AT_TOP = {
    "ConditionFailed",
    "SeedKeyError",  # import-seed's: aurora_storage.migrate re-exports them
    "SeedSourceError",
    "DurableWriteError",
    "HotTierError",
    "HotTierFullError",
    "ProjectionError",
    "ProjectionMisuseError",
    "TenantStoppedError",
}

ERRORS_ALL = ERRORS_NOT_AT_TOP | {
    "BackendNotFoundError",
    "BatchTooLargeError",
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
    "RepositoryClosedError",
    "SerializationError",
    "StorageError",
    "StorageFullError",
    "StoreLockedError",
    "ValueTooLargeError",
    "VersionConflictError",
}

#: Which builtin each error mixes in, so a user's ``except ValueError`` etc. catches it.
BUILTIN_MIXINS: dict[str, type[Exception] | tuple[type[Exception], ...]] = {
    "InvalidKeyError": ValueError,
    "InvalidArgumentError": (TypeError, ValueError),
    "KeyTooLargeError": ValueError,
    "ValueTooLargeError": (TypeError, ValueError),
    "BatchTooLargeError": (TypeError, ValueError),
    "InvalidTenantError": ValueError,
    "KeyExistsError": KeyError,
    "SerializationError": ValueError,
    "ConfigurationError": ValueError,
    "ForeignStoreError": ValueError,
    "InvalidURLError": ValueError,
    "BackendNotFoundError": LookupError,
    "PluginError": LookupError,
    "PluginConflictError": LookupError,
    "RepositoryClosedError": RuntimeError,
    "InheritedHandleError": RuntimeError,
    "ReadOnlyError": PermissionError,
    "StoreLockedError": OSError,
    "StorageFullError": OSError,
    "NotSupportedError": NotImplementedError,
    "PositionExpiredError": LookupError,
}


def test_top_level_all_is_pinned() -> None:
    assert set(aurora_storage.__all__) == AURORA_ALL
    assert len(aurora_storage.__all__) == len(AURORA_ALL)
    for name in aurora_storage.__all__:
        assert getattr(aurora_storage, name) is not None


def test_errors_all_is_pinned() -> None:
    assert set(errors.__all__) == ERRORS_ALL
    for name in ERRORS_ALL - ERRORS_NOT_AT_TOP:
        # The same classes are re-exported at the top level.
        assert getattr(aurora_storage, name) is getattr(errors, name)


def test_error_tree() -> None:
    for name in ERRORS_ALL:
        cls = getattr(errors, name)
        assert issubclass(cls, errors.StorageError)
        if name in BUILTIN_MIXINS:
            assert issubclass(cls, BUILTIN_MIXINS[name]), name
    assert issubclass(errors.KeyTooLargeError, errors.InvalidKeyError)
    assert issubclass(errors.ValueTooLargeError, errors.InvalidArgumentError)
    assert issubclass(errors.BatchTooLargeError, errors.InvalidArgumentError)
    # Every engine's own value-size error is the core's, so one except catches them all.
    import aurora_storage_nats
    import aurora_storage_rocksdb

    assert issubclass(aurora_storage_rocksdb.ValueTooLargeError, errors.ValueTooLargeError)
    assert issubclass(aurora_storage_nats.ValueTooLargeError, errors.ValueTooLargeError)
    # NATS's batch bound is the core's, which the conformance suite and tiered raise too.
    assert issubclass(aurora_storage_nats.BatchTooLargeError, errors.BatchTooLargeError)
    assert issubclass(errors.InvalidURLError, errors.ConfigurationError)
    exc = errors.KeyExistsError("key 'k' exists", tenant="t", key="k")
    assert str(exc) == "key 'k' exists"  # not KeyError's repr-quoted text
    assert (exc.tenant, exc.key, exc.backend, exc.path) == ("t", "k", None, None)
    assert exc.stored_key is None


def _public_objects() -> list[tuple[str, Any]]:
    out: list[tuple[str, Any]] = []
    for module in (aurora_storage, errors, plugins, config, codecs, backend):
        for name in module.__all__:
            obj = getattr(module, name)
            if isinstance(obj, types.ModuleType) or not callable(obj):
                continue  # constants (FORMAT_VERSION, PROJECT, ...) and re-exported modules
            out.append((f"{module.__name__}.{name}", obj))
    return out


@pytest.mark.parametrize(("qualname", "obj"), _public_objects(), ids=lambda v: str(v))
def test_public_names_have_docstrings(qualname: str, obj: Any) -> None:
    assert inspect.getdoc(obj), f"{qualname} has no docstring"
    if inspect.isclass(obj):
        # A class's own docstring, not one inherited from a base.
        assert obj.__dict__.get("__doc__"), f"{qualname} has no docstring of its own"
        missing = []
        for attr, value in vars(obj).items():
            if attr.startswith("_"):
                continue
            func = value.fget if isinstance(value, property) else value
            func = getattr(func, "__func__", func)
            if inspect.isfunction(func) and not inspect.getdoc(func):
                missing.append(attr)
        assert not missing, f"{qualname}: public methods without a docstring: {missing}"


def test_modules_have_docstrings() -> None:
    for module in (aurora_storage, errors, plugins, config, codecs, backend):
        assert (module.__doc__ or "").strip(), module.__name__


def test_version_is_text() -> None:
    assert isinstance(aurora_storage.__version__, str)
    assert aurora_storage.__version__.count(".") >= 2


EVENTSOURCING_ALL = {
    "AuroraAggregateRecorder",
    "AuroraApplicationRecorder",
    "AuroraDatastore",
    "AuroraFactory",
    "AuroraProcessRecorder",
    "AuroraRecorder",
    "AuroraSubscription",
    "AuroraTrackingRecorder",
    "Factory",
    "ViewState",
}


def test_eventsourcing_module_all_is_pinned() -> None:
    from aurora_storage import eventsourcing as es_module

    assert set(es_module.__all__) == EVENTSOURCING_ALL
    assert (es_module.__doc__ or "").strip()
    for name in es_module.__all__:
        obj = getattr(es_module, name)
        assert obj.__dict__.get("__doc__"), f"aurora_storage.eventsourcing.{name}: no docstring"
        for attr, value in vars(obj).items():
            func = getattr(value, "__func__", value)
            if not attr.startswith("_") and inspect.isfunction(func):
                assert inspect.getdoc(func), f"aurora_storage.eventsourcing.{name}.{attr}"
    # eventsourcing's PERSISTENCE_MODULE lookup needs exactly one factory class here.
    from eventsourcing.persistence import InfrastructureFactory

    factories = {
        v
        for v in vars(es_module).values()
        if isinstance(v, type) and issubclass(v, InfrastructureFactory)
    }
    assert factories == {es_module.AuroraFactory}


@pytest.mark.parametrize(
    ("module_name", "pinned"),
    [
        (
            "aurora_storage.observability",
            {"InstrumentedBackend", "Telemetry", "instrument", "uninstrument"},
        ),
        ("aurora_storage.cli", {"ExitCode", "cli", "main", "run"}),
    ],
)
def test_observability_and_cli_all_are_pinned(module_name: str, pinned: set[str]) -> None:
    import importlib

    module = importlib.import_module(module_name)
    assert set(module.__all__) == pinned
    assert (module.__doc__ or "").strip()
    for name in module.__all__:
        obj = getattr(module, name)
        assert inspect.getdoc(obj), f"{module_name}.{name}: no docstring"


MIGRATE_ALL = {
    "SeedImportReport",
    "SeedKeyError",
    "SeedProblem",
    "SeedSourceError",
    "SeedSplit",
    "import_seed",
    "split_seed_key",
}


def test_migrate_module_all_is_pinned() -> None:
    from aurora_storage import migrate

    assert set(migrate.__all__) == MIGRATE_ALL
    assert (migrate.__doc__ or "").strip()
    for name in migrate.__all__:
        obj = getattr(migrate, name)
        assert inspect.getdoc(obj), f"aurora_storage.migrate.{name}: no docstring"
    assert issubclass(migrate.SeedKeyError, (errors.StorageError, ValueError))
    assert issubclass(migrate.SeedSourceError, (errors.StorageError, FileNotFoundError))
    # Defined in the error tree; the old import path names the same classes.
    assert migrate.SeedKeyError is errors.SeedKeyError
    assert migrate.SeedSourceError is errors.SeedSourceError
