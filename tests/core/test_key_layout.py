"""The key layout lives in one module: its public encoder gives the bytes backends
receive, and no other module of src/ does layout arithmetic on stored keys."""

from __future__ import annotations

import ast
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

import aurora_storage
from aurora_storage import (
    InvalidKeyError,
    InvalidTenantError,
    KeyTooLargeError,
    decode_stored_key,
    encode_stored_key,
    tenant_range,
)
from aurora_storage.testing._statemachine import key_strategy

SRC = Path(aurora_storage.__file__).resolve().parent.parent
#: The modules that own the layout (the stored-key layout and the element codec).
LAYOUT_MODULES = {SRC / "aurora_storage" / "_keys.py", SRC / "aurora_storage" / "_element.py"}
#: Byte values only the layout may compute with: the escape/tenant-end byte 0xFF and
#: the str type code 0x20 (as bytes, and as ints compared against an indexed byte).
LAYOUT_BYTES = {b"\xff", b"\x20", b"\x00\xff"}
LAYOUT_INTS = {0xFF, 0x20}

tenants = st.text(min_size=1, max_size=8)


@given(tenant=tenants, key=key_strategy())
def test_stored_key_round_trips_and_lies_in_its_tenant_range(tenant: str, key: Any) -> None:
    try:
        stored = encode_stored_key(tenant, key)
    except KeyTooLargeError:
        return
    lo, hi = tenant_range(tenant)
    assert lo <= stored < hi
    got_tenant, got_key = decode_stored_key(stored)
    assert got_tenant == tenant
    assert encode_stored_key(got_tenant, got_key) == stored


def test_stored_key_is_what_the_backend_receives() -> None:
    with aurora_storage.open("memory://") as repo:
        keys: list[Any] = ["k0100", ("order", 7), 2.5, b"\x00", None]
        for key in keys:
            repo.put("a\x00b", key, 1)
        repo.put("a", "other tenant", 1)
        lo, hi = tenant_range("a\x00b")
        stored = [k for k, _ in repo.backend.scan(lo, hi)]
        assert stored == sorted(encode_stored_key("a\x00b", k) for k in keys)
        assert [decode_stored_key(k)[0] for k in stored] == ["a\x00b"] * len(keys)


def test_tenant_ranges_never_overlap() -> None:
    # "a" is a prefix of "a\x00b" in text; their ranges must still be disjoint.
    a, ab = tenant_range("a"), tenant_range("a\x00b")
    assert a[1] <= ab[0] or ab[1] <= a[0]
    assert not a[0] <= encode_stored_key("a\x00b", "k") < a[1]


def test_bad_inputs_raise_typed_errors() -> None:
    with pytest.raises(InvalidTenantError):
        encode_stored_key("", "k")
    with pytest.raises(InvalidTenantError):
        tenant_range(3)  # type: ignore[arg-type]  # the wrong type is the point
    with pytest.raises(InvalidKeyError):
        encode_stored_key("t", float("nan"))
    with pytest.raises(KeyTooLargeError) as info:
        encode_stored_key("t", "x" * 600)
    assert (info.value.tenant, info.value.key) == ("t", "x" * 600)
    with pytest.raises(InvalidKeyError, match="not a stored data key"):
        decode_stored_key(b"\x00aurora:meta")  # the store's own record
    with pytest.raises(InvalidKeyError):
        decode_stored_key(encode_stored_key("t", "k")[:-1])  # truncated


def _layout_arithmetic(path: Path) -> list[str]:
    """Places in ``path`` that compute with layout bytes (concatenate or compare them)."""
    found: list[str] = []
    for node in ast.walk(ast.parse(path.read_text(), str(path))):
        if isinstance(node, ast.BinOp | ast.Compare):
            parts = [node.left, node.right] if isinstance(node, ast.BinOp) else []
            if isinstance(node, ast.Compare):
                parts = [node.left, *node.comparators]
            consts = [p.value for p in parts if isinstance(p, ast.Constant)]
            if any(type(c) is bytes and c in LAYOUT_BYTES for c in consts):
                found.append(f"{path.name}:{node.lineno}")
            indexed = any(isinstance(p, ast.Subscript) for p in parts)
            if indexed and any(type(c) is int and c in LAYOUT_INTS for c in consts):
                found.append(f"{path.name}:{node.lineno}")
    return found


def test_no_module_outside_the_layout_computes_stored_key_bytes() -> None:
    offenders: list[str] = []
    for path in sorted(SRC.rglob("*.py")):
        if path not in LAYOUT_MODULES:
            offenders += _layout_arithmetic(path)
    assert offenders == []


def test_the_fence_sees_layout_arithmetic(tmp_path: Path) -> None:
    # The check above must notice the kind of code it forbids.
    sample = tmp_path / "sample.py"
    sample.write_text(
        "def bounds(p: bytes, full: bytes) -> object:\n"
        '    return p + b"\\xff", full[3] != 0xFF, p + b"\\x20" + b"k"\n'
    )
    assert len(_layout_arithmetic(sample)) == 3
