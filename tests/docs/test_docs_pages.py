"""Pages that must keep up with the code: every public error type has its troubleshooting
section and its row in the errors table; the TypeScript mapping covers the seed's API."""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

from aurora_storage.errors import StorageError

ROOT = Path(__file__).resolve().parents[2]
DOCS = ROOT / "docs"

# Every public module that exports error types (their ``__all__``).
ERROR_MODULES = [
    "aurora_storage.errors",
    "aurora_storage.backend",
    "aurora_storage.tiered",
    "aurora_storage_rocksdb",
    "aurora_storage_lmdb",
    "aurora_storage_nats",
]


def _public_errors() -> dict[str, type[StorageError]]:
    found: dict[str, type[StorageError]] = {}
    for name in ERROR_MODULES:
        module = importlib.import_module(name)
        for attr in module.__all__:
            obj = getattr(module, attr)
            if isinstance(obj, type) and issubclass(obj, StorageError):
                found[obj.__name__] = obj
    return found


def _sections(page: Path) -> list[str]:
    return re.findall(r"^### `(\w+)`$", page.read_text(), re.MULTILINE)


def test_the_error_modules_are_found() -> None:
    errors = _public_errors()
    # A sample from each module, so an import that silently found nothing fails here.
    for name in ("StorageError", "ConditionFailed", "HotTierError", "InheritedHandleError"):
        assert name in errors
    assert "NATSConnectionError" in errors


@pytest.mark.parametrize("name", sorted(_public_errors()))
def test_every_error_type_has_a_troubleshooting_section(name: str) -> None:
    assert name in _sections(DOCS / "troubleshooting.md"), (
        f"docs/troubleshooting.md has no '### `{name}`' section: say what causes it and "
        "how to fix it"
    )


def test_troubleshooting_sections_name_real_errors() -> None:
    sections = _sections(DOCS / "troubleshooting.md")
    assert len(sections) == len(set(sections)), "a section appears twice"
    assert set(sections) <= set(_public_errors())


def test_every_application_error_is_in_the_errors_table() -> None:
    """docs/concepts/errors.md lists every error an application can meet (ConditionFailed
    is a backend's signal to the repository, never raised to applications)."""
    table = (DOCS / "concepts" / "errors.md").read_text()
    rows = set(re.findall(r"^\| `(\w+)` \|", table, re.MULTILINE))
    missing = set(_public_errors()) - {"ConditionFailed"} - rows
    assert missing == set(), f"docs/concepts/errors.md lacks rows for {sorted(missing)}"


# The seed's public surface (its README: the RocksDBConfig interface, the repository's
# methods, the factory and classes); each must appear in the mapping page.
SEED_NAMES = [
    "createRocksDBRepository",
    "RocksDBRepository",
    "LMDBXRepository",
    "repo.put",
    "repo.get",
    "repo.delete",
    "repo.has",
    "repo.list",
    "repo.close",
    "path",
    "createIfMissing",
    "errorIfExists",
    "compression",
    "writeBufferSize",
    "maxOpenFiles",
    "encoding",
    "tenantId:JSON(key)",
]


def test_the_typescript_mapping_covers_the_seed() -> None:
    page = (DOCS / "migrating-from-typescript.md").read_text()
    missing = [name for name in SEED_NAMES if not re.search(r"`[^`\n]*" + re.escape(name), page)]
    assert missing == [], f"docs/migrating-from-typescript.md does not map {missing}"


def test_the_typescript_page_ends_with_the_importer_section() -> None:
    """The importer's documentation lands in this section (its heading is shared)."""
    headings = re.findall(r"^## (.+)$", (DOCS / "migrating-from-typescript.md").read_text(), re.M)
    assert headings[-1] == "Importing a store written by the TypeScript package"
