"""Moving data into aurora-storage from elsewhere.

:func:`import_seed` reads a RocksDB store written by the TypeScript package
``@aurora/runtime-storage-rocksdb`` (keys ``tenantId:JSON(key)``, JSON values) and writes
it into any aurora-storage URL; ``aurora-storage import-seed`` is its command line.
:func:`split_seed_key` is the rule that splits one stored key into tenant and key::

    from aurora_storage.migrate import import_seed

    report = import_seed("./data/events", "rocksdb:///var/data/events", dry_run=True)
    print(report.imported, report.problem_count)

See docs/migrating-from-typescript.md.
"""

from __future__ import annotations

# The two errors are defined in aurora_storage.errors with the rest of the error tree,
# and stay importable from here, where they were first defined.
from ..errors import SeedKeyError, SeedSourceError
from ._seed import SeedImportReport, SeedProblem, import_seed
from ._split import SeedSplit, split_seed_key

__all__ = [
    "SeedImportReport",
    "SeedKeyError",
    "SeedProblem",
    "SeedSourceError",
    "SeedSplit",
    "import_seed",
    "split_seed_key",
]
