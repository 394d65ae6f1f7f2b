"""The LMDB data file's format: which engine and data format this plugin writes, and
the checks of a data file made before (or instead of) handing it to liblmdb.

liblmdb trusts the file: pages past its end fault with SIGBUS and kill the process, and
a damaged page can trip an engine assertion (SIGABRT). :func:`precheck` reads the two
meta pages itself and refuses a truncated or foreign file before the engine maps it;
:func:`structure_problems` walks every page in pure Python (py-lmdb's offline
verifier, then :func:`separator_problems`), so damage is reported, never crashed on.
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable
from typing import BinaryIO

from aurora_storage.errors import ConfigurationError, CorruptionError, StorageError

__all__ = [
    "LIB_VERSION",
    "LMDB_DATA_VERSION",
    "free_list_only",
    "precheck",
    "separator_problems",
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
    cannot crash it), then - if it finds none - the separator keys of the branch
    pages that do not bound the pages below them (:func:`separator_problems`). An
    empty list: the structure is sound."""
    from lmdb import verify as lmdb_verify

    try:
        problems = lmdb_verify.verify(path, subdir)  # type: ignore[no-untyped-call]  # py-lmdb's verify module is untyped
    except Exception as exc:
        return [f"cannot be verified: {exc}"]
    found = [str(p) for p in problems]
    if found and not free_list_only(found):
        return found
    # Sound, or damaged only in the free list (which a reader never consults): the
    # records' tree is walked for separators too, so that damage to it is never
    # hidden behind the free list's.
    return found + separator_problems(os.path.join(path, "data.mdb") if subdir else path)


def free_list_only(problems: Iterable[str]) -> bool:
    """Whether every problem :func:`structure_problems` found lies in the free list
    (py-lmdb's verifier names them ``freeDB ...``). Readers never consult the free
    list (only a writer allocates pages from it), so every record of such a file
    still reads through liblmdb; damage anywhere else may lie on a reader's path."""
    return all(p.startswith("freeDB") or _FREE_ACCOUNTING.fullmatch(p) for p in problems)


#: The verifier's free-list accounting problems (pages both reachable
#: and listed free, or neither: a writer's concern, never a reader's), e.g. "3 page(s)
#: are neither reachable nor in the freeDB -- a leak (first: page 9)".
_FREE_ACCOUNTING = re.compile(
    r"\d+ page\(s\) are (both reachable and in the freeDB|neither reachable nor in the "
    r"freeDB -- a leak) \(first: page \d+\)"
)


#: Page flags and header layout of LMDB 0.9 (data format v1, 64-bit): ``mp_pgno`` (8
#: bytes), ``mp_pad`` (2), ``mp_flags`` (2), ``mp_lower`` (2), ``mp_upper`` (2), then
#: the node offsets; a node is ``mn_lo``, ``mn_hi``, ``mn_flags``, ``mn_ksize`` (2 bytes
#: each), then its key (a branch node's child page is ``lo | hi << 16 | flags << 32``).
_P_BRANCH, _P_LEAF, _P_LEAF2 = 0x01, 0x02, 0x20
_PAGEHDRSZ = 16
_P_INVALID = (1 << 64) - 1
_U16 = struct.Struct("<H")
_NODE = struct.Struct("<HHHH")
#: A B-tree deeper than this is damage (LMDB's CURSOR_STACK).
_MAX_DEPTH = 32


def separator_problems(data_file: str) -> list[str]:
    """Branch-page separator keys of the main tree that do not bound their subtrees.

    A branch page routes a lookup by its separators: every key below child ``i``
    lies in ``[separator i, separator i + 1)``. py-lmdb's verifier checks that the
    separators of a page and the keys of the leaves are each in order, not that the
    separators bound the pages below them, so a damaged separator that keeps the
    order passed it - and sent lookups and the scans that start with one (a tenant's
    ``items()``, ``count()``) past records that are still there, silently. This
    walk reads each branch page and the first and last key of each leaf page from
    the committed meta page's root (the key bytes only: a fraction of the walk
    above). Call it only on a file that walk found sound; any page it cannot read
    as expected is reported, never raised."""
    problems: list[str] = []
    try:
        with open(data_file, "rb") as f:
            psize, root = _committed_root(f)
            # (page, lower bound, upper bound, depth): a bound of None is open.
            todo: list[tuple[int, bytes | None, bytes | None, int]] = []
            if root is not None:
                todo.append((root, None, None, 1))
            while todo and len(problems) < 100:
                pgno, lo, hi, depth = todo.pop()
                f.seek(pgno * psize)
                page = f.read(psize)
                if len(page) < psize or depth > _MAX_DEPTH:
                    problems.append(f"main DB: page {pgno} cannot be read as a tree page")
                    continue
                flags = _U16.unpack_from(page, 10)[0]
                n = (_U16.unpack_from(page, 12)[0] - _PAGEHDRSZ) >> 1
                if flags & _P_BRANCH:
                    nodes = _nodes(page, range(n))
                    for i, (child, key) in enumerate(nodes):
                        if i and ((lo is not None and key < lo) or (hi is not None and key >= hi)):
                            problems.append(
                                f"main DB: branch page {pgno} node {i}: separator key "
                                f"{key!r} lies outside the range its parent gives the "
                                "page (a damaged key: lookups would miss records)"
                            )
                        high = nodes[i + 1][1] if i + 1 < n else hi
                        todo.append((child, key if i else lo, high, depth + 1))
                elif flags & _P_LEAF and not flags & _P_LEAF2 and n:
                    (_, first), (_, last) = _nodes(page, (0, n - 1))
                    if lo is not None and first < lo:
                        problems.append(
                            f"main DB: leaf page {pgno} begins with key {first!r}, before "
                            f"the separator {lo!r} that leads to it (a damaged separator "
                            "key: lookups and scans would miss records)"
                        )
                    if hi is not None and last >= hi:
                        problems.append(
                            f"main DB: leaf page {pgno} ends with key {last!r}, not before "
                            f"the separator {hi!r} of the page after it (a damaged "
                            "separator key: lookups and scans would miss records)"
                        )
    except (OSError, struct.error, IndexError) as exc:
        problems.append(f"cannot be verified: {exc}")
    return problems


def _committed_root(f: BinaryIO) -> tuple[int, int | None]:
    """The page size and the main tree's root page (``None``: an empty tree) named by
    the committed meta page (the one with the higher transaction id) of the data
    file ``f``. A meta page: its 16-byte page header, then ``mm_magic``,
    ``mm_version``, ``mm_address``, ``mm_mapsize`` (to offset 40), the free and main
    trees' records (48 bytes each; the free tree's first field holds the page size, the
    main tree's root is at 128), ``mm_last_pg`` (136) and ``mm_txnid`` (144)."""
    meta0 = f.read(160)
    if len(meta0) < 160:
        return 0, None
    psize = _U32.unpack_from(meta0, 40)[0]
    f.seek(psize)
    meta1 = f.read(160)
    meta = meta0
    if len(meta1) == 160 and _U64.unpack_from(meta1, 144)[0] > _U64.unpack_from(meta0, 144)[0]:
        meta = meta1
    root = _U64.unpack_from(meta, 128)[0]
    return psize, None if root == _P_INVALID else root


def _nodes(page: bytes, indices: Iterable[int]) -> list[tuple[int, bytes]]:
    """``(child page, key)`` of the nodes ``indices`` of a B-tree page (for a leaf
    node the first number is its data size, unused here)."""
    out = []
    for i in indices:
        off = _U16.unpack_from(page, _PAGEHDRSZ + 2 * i)[0]
        lo, hi, flags, ksize = _NODE.unpack_from(page, off)
        out.append((lo | hi << 16 | flags << 32, page[off + 8 : off + 8 + ksize]))
    return out


def verify_or_raise(path: str, subdir: bool, data_file: str) -> None:
    """Raise CorruptionError naming the first problems :func:`structure_problems`
    finds, if any."""
    problems = structure_problems(path, subdir)
    if problems:
        shown = "; ".join(problems[:5])
        more = f" (and {len(problems) - 5} more)" if len(problems) > 5 else ""
        raise _corrupt(f"{data_file} failed verification: {shown}{more}", path)
