"""Repository.verify's record check: every key and value of a store decodes, and each
damaged record is named by its tenant and key where they can be told."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from typing import Any

from ._keys import NS_DATA, NS_SYSTEM, decode_key, decode_tenant_key
from .backend import Backend, VerifyProblem, VerifyReport

__all__ = ["verify_store"]


def verify_store(backend: Backend, decode: Callable[[bytes], Any], codec: str) -> VerifyReport:
    """``backend.verify`` with a check that every record's key is a valid key encoding
    in aurora-storage's key space and its value decodes with ``decode`` (the store's
    codec, named ``codec`` in messages). ``records`` of the report counts the user's
    records only; each problem names its tenant and key where they decode."""
    own = 0

    def check(k: bytes, v: bytes) -> str | None:
        nonlocal own
        if k[:1] == NS_SYSTEM:
            own += 1
            return None  # the store's own records (checked by the backend)
        if k[:1] != NS_DATA:
            return f"the stored key {k!r} lies outside aurora-storage's key space"
        try:
            _, offset = decode_tenant_key(k)
            decode_key(k, offset)
        except ValueError as exc:
            return f"the stored key {k!r} is not a valid key encoding: {exc}"
        try:
            decode(v)
        except Exception as exc:
            return f"the stored value cannot be decoded by the {codec} codec: {exc}"
        return None

    report = backend.verify(check=check)
    # ``records`` counts the user's records: the store's own bookkeeping records are
    # checked too, but not counted.
    return dataclasses.replace(
        report,
        records=max(0, report.records - own),
        problems=tuple(map(_locate, report.problems)),
    )


def _locate(problem: VerifyProblem) -> VerifyProblem:
    """A backend's problem with its stored key replaced by the tenant and key, where
    they decode."""
    k = problem.key
    if k is None and (problem.after is not None or problem.resume is not None):
        # Damage at an unknown place: name the tenant and key it follows (else the
        # tenant of the first key read after it), and that key.
        after = _locate(VerifyProblem("", key=problem.after))
        resume = _locate(VerifyProblem("", key=problem.resume))
        tenant = after.tenant if after.tenant is not None else resume.tenant
        return dataclasses.replace(
            problem, tenant=tenant, after=after.key, resume=resume.key, resume_tenant=resume.tenant
        )
    if not isinstance(k, bytes) or k[:1] != NS_DATA:
        return problem
    try:
        tenant, offset = decode_tenant_key(k)
    except ValueError:
        return problem
    try:
        key = decode_key(k, offset)
    except ValueError:
        key = k
    return dataclasses.replace(problem, tenant=tenant, key=key)
