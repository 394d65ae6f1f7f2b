"""The LMDB data file's format: which engine and data format this plugin writes, and
the checks of a data file made before (or instead of) handing it to liblmdb.

liblmdb trusts the file: pages past its end fault with SIGBUS and kill the process, and
a damaged page can trip an engine assertion (SIGABRT). :func:`precheck` reads the two
meta pages itself and refuses a truncated or foreign file before the engine maps it;
:func:`structure_problems` walks every page in pure Python (py-lmdb's offline
verifier), so damage is reported, never crashed on.
"""

from __future__ import annotations

import os
import struct

from aurora_storage.errors import ConfigurationError, CorruptionError, StorageError

__all__ = [
    "LIB_VERSION",
    "LMDB_DATA_VERSION",
    "precheck",
    "structure_problems",
    "verify_or_raise",
]

#: The LMDB engine this plugin writes: 0 = LMDB 0.9 (data format v1).
LIB_VERSION = 0
#: The data format (mm_version) that engine writes into the meta pages.
LMDB_DATA_VERSION = 1

_MDB_MAGIC = 0xBEEFC0DE
_U32 = struct.Struct("<I")
_U64 = struct.Struct("<Q")


def _corrupt(message: str, path: str) -> CorruptionError:
    return CorruptionError(message, backend="lmdb", path=path)


def precheck(path: str, data_file: str, subdir: bool = True) -> None:
    """Refuse a truncated or foreign data file before liblmdb maps it.

    Reading the two meta pages and comparing the file size with the last page in use
    catches truncation (a copy cut short, a disk full during a restore). The meta pages
    are read before the size so a concurrent writer can only make the file look longer,
    never shorter. An empty file passes (liblmdb initialises it like a new one).

    A file shorter than its last page is not always damaged: liblmdb does not write a
    *loose* page (allocated at the end of the file, then freed, in one transaction;
    ``mdb_page_flush`` skips ``P_LOOSE`` pages) although the meta page counts it, so a
    healthy store can end a page or more short after such a commit (seen after a SIGKILL
    with nothing lost). Then the structural walk decides: the store is refused as
    truncated only if a page its trees reach lies beyond the end of the file.

    Args:
        path: the store's path (named in errors).
        data_file: its data file.
        subdir: whether ``path`` is a directory holding the data file (LMDB's
            ``subdir``), for the structural walk.

    Raises:
        CorruptionError: the file is truncated, is not an LMDB data file, or has an
            invalid page size.
        ConfigurationError: the file uses another LMDB data format than
            :data:`LMDB_DATA_VERSION`.
        StorageError: the file cannot be read.
    """
    try:
        with open(data_file, "rb") as f:
            head = f.read(4096 + 160)
            if not head:
                return
            if len(head) < 160:
                raise _corrupt(f"{data_file} is truncated ({len(head)} bytes)", path)
            magic, version = _U32.unpack_from(head, 16)[0], _U32.unpack_from(head, 20)[0]
            if magic != _MDB_MAGIC:
                for off in range(8, 64, 8):
                    if _U32.unpack_from(head, off)[0] == _MDB_MAGIC:
                        foreign = _U32.unpack_from(head, off + 4)[0]
                        raise ConfigurationError(
                            f"the LMDB store at {path} uses LMDB data format "
                            f"v{foreign}; this plugin pins format v{LMDB_DATA_VERSION} "
                            "(LMDB 0.9). Convert it with a copy through a matching "
                            "LMDB, or open it with the tool that wrote it",
                            backend="lmdb",
                            path=path,
                        )
                raise _corrupt(f"{data_file} is not an LMDB data file (no magic)", path)
            if version != LMDB_DATA_VERSION:
                raise ConfigurationError(
                    f"the LMDB store at {path} uses data format v{version}; this "
                    f"plugin pins format v{LMDB_DATA_VERSION} (LMDB 0.9)",
                    backend="lmdb",
                    path=path,
                )
            psize = _U32.unpack_from(head, 40)[0]
            if psize < 512 or psize > 65536 or psize & (psize - 1):
                raise _corrupt(f"{data_file} has an invalid page size {psize}", path)
            metas = [(_U64.unpack_from(head, 144)[0], _U64.unpack_from(head, 136)[0])]
            f.seek(psize)
            second = f.read(160)
            if len(second) == 160 and _U32.unpack_from(second, 16)[0] == _MDB_MAGIC:
                metas.append((_U64.unpack_from(second, 144)[0], _U64.unpack_from(second, 136)[0]))
            _, last_pgno = max(metas)
            size = os.fstat(f.fileno()).st_size
    except OSError as exc:
        raise StorageError(f"cannot read {data_file}: {exc}", backend="lmdb", path=path) from exc
    needed = (last_pgno + 1) * psize
    if size < needed:
        problems = structure_problems(path, subdir)
        if problems:
            raise _corrupt(
                f"{data_file} is truncated: {size} bytes, but its meta page says "
                f"pages up to {last_pgno} ({needed} bytes) are in use, and "
                f"{'; '.join(problems[:3])}. Restore it from a backup (repo.copy() "
                "makes consistent ones)",
                path,
            )


def structure_problems(path: str, subdir: bool) -> list[str]:
    """Problems LMDB's offline structural verifier finds in the store's data file (a
    pure-Python walk of every page: it never hands the file to liblmdb, so damage
    cannot crash it). An empty list: the structure is sound."""
    from lmdb import verify as lmdb_verify

    try:
        problems = lmdb_verify.verify(path, subdir)  # type: ignore[no-untyped-call]  # py-lmdb's verify module is untyped
    except Exception as exc:
        return [f"cannot be verified: {exc}"]
    return [str(p) for p in problems]


def verify_or_raise(path: str, subdir: bool, data_file: str) -> None:
    """Raise CorruptionError naming the first problems :func:`structure_problems`
    finds, if any."""
    problems = structure_problems(path, subdir)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise _corrupt(f"{data_file} failed verification: {shown}{more}", path)
