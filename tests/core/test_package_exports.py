"""Every public package and module pins its ``__all__``: a change to what a package
exports is a deliberate one (``aurora_storage``, ``errors``, ``eventsourcing``,
``observability`` and ``cli`` are pinned in test_public_api.py)."""

from __future__ import annotations

import importlib
import pkgutil
from pathlib import Path

import pytest

import aurora_storage

PINS: dict[str, set[str]] = {
    "aurora_storage_rocksdb": {
        "InheritedHandleError",
        "MAX_RECORD_SIZE",
        "RocksDBBackend",
        "RocksDBConfig",
        "RocksDBRepository",
        "ValueTooLargeError",
        "create_rocksdb_repository",
    },
    "aurora_storage_lmdb": {
        "LMDBBackend",
        "LMDBConfig",
        "LMDBRepository",
        "create_lmdb_repository",
    },
    "aurora_storage_nats": {
        "BatchTooLargeError",
        "NATSAsyncBackend",
        "NATSBackend",
        "NATSConfig",
        "NATSConnectionClosedError",
        "NATSConnectionError",
        "NATSRepository",
        "NATSTimeoutError",
        "ValueTooLargeError",
        "create_nats_repository",
    },
    "aurora_storage.tiered": {
        "AsyncTieredRepository",
        "DurableWriteError",
        "ENTRY_POINT_GROUP",
        "HistoryRecord",
        "HotTierError",
        "HotTierFullError",
        "ParkedRecord",
        "ProgressCallback",
        "Projection",
        "ProjectionError",
        "ProjectionState",
        "RebuildProgress",
        "TenantStoppedError",
        "TieredConfig",
        "TieredRepository",
        "register_projection",
        "resolve_projection",
        "unregister_projection",
    },
    "aurora_storage.testing": {
        "AsyncTests",
        "BadInputTests",
        "BatchTests",
        "ChangeFeedTests",
        "ConditionalWriteStateMachine",
        "ConditionalWriteTests",
        "EventStoreTests",
        "LargeRangeTests",
        "LifecycleTests",
        "MultiProcessAppendTests",
        "MultiProcessChangeFeedTests",
        "PersistenceTests",
        "PointOpsTests",
        "PushDownTests",
        "RepositoryStateMachine",
        "RepositoryTestSuite",
        "ScanTests",
        "SequenceTests",
        "StateMachineTests",
        "TenantTests",
        "ThreadTests",
    },
    "aurora_storage.plugins": {
        "BackendSpec",
        "PROJECT",
        "hookimpl",
        "hookspec",
        "installed_schemes",
        "plugin_failures",
        "prefer_plugin",
        "refresh_plugins",
        "register_backend",
        "register_plugin",
        "unregister_backend",
    },
    "aurora_storage.codecs": {"Codec", "available_codecs", "get_codec", "register_codec"},
    "aurora_storage.config": {
        "URL",
        "config_from_options",
        "describe_options",
        "expand_store_path",
        "local_path",
        "parse_bool",
        "parse_size",
        "size_field",
    },
    "aurora_storage.backend": {
        "Append",
        "AsyncBackend",
        "Backend",
        "Capabilities",
        "ChangeFeed",
        "ChangeRecord",
        "Chunk",
        "Condition",
        "ConditionFailed",
        "Op",
        "RecentChanges",
        "RecordCheck",
        "StoreHandles",
        "VerifyProblem",
        "VerifyReport",
        "chunk_items",
        "chunk_keys",
        "config_signature",
        "create_store_dir",
        "decode_counter",
        "encode_counter",
        "foreign_position",
        "marker_path",
        "open_stores",
        "plan_commit",
        "plan_store_dir",
        "read_past_damage",
        "remove_created",
        "value_version",
    },
    "aurora_storage.memory": {"MemoryBackend", "MemoryConfig"},
    "aurora_storage.migrate": {
        "SeedImportReport",
        "SeedKeyError",
        "SeedProblem",
        "SeedSourceError",
        "SeedSplit",
        "import_seed",
        "split_seed_key",
    },
    "aurora_storage.pytest_plugin": set(),  # hooks only
}

#: Public modules pinned in test_public_api.py.
PINNED_ELSEWHERE = {
    "aurora_storage",
    "aurora_storage.errors",
    "aurora_storage.eventsourcing",
    "aurora_storage.observability",
    "aurora_storage.cli",
}


@pytest.mark.parametrize("module_name", sorted(PINS))
def test_all_is_pinned(module_name: str) -> None:
    module = importlib.import_module(module_name)
    exported = module.__all__
    assert set(exported) == PINS[module_name]
    assert len(exported) == len(set(exported)), "a name listed twice"
    for name in exported:
        assert hasattr(module, name), f"{module_name}.{name} is listed but missing"


def _public_modules() -> set[str]:
    """Every module and package of src/ whose dotted path has no private part."""
    src = Path(aurora_storage.__file__).resolve().parent.parent
    found = set()
    for top in (
        "aurora_storage",
        "aurora_storage_rocksdb",
        "aurora_storage_lmdb",
        "aurora_storage_nats",
    ):
        found.add(top)
        for info in pkgutil.walk_packages([str(src / top)], f"{top}."):
            if not any(part.startswith("_") for part in info.name.split(".")):
                found.add(info.name)
    return found


def test_every_public_module_is_pinned() -> None:
    assert _public_modules() - set(PINS) - PINNED_ELSEWHERE == set()
