"""Conditional commits on NATS: a batch of n appends reads its slots in one round and
plans once (it used to read each slot in turn and plan again after each read: n round
trips and O(n^2) planning). Real server."""

from __future__ import annotations

from typing import Any

import pytest

import aurora_storage
from aurora_storage.backend import plan_commit
from aurora_storage_nats import _client


def test_a_batch_of_appends_plans_once(nats_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = plan_commit

    def counting(*args: Any, **kwargs: Any) -> Any:
        calls.append(1)
        return real(*args, **kwargs)

    monkeypatch.setattr(_client, "plan_commit", counting)
    repo = aurora_storage.open(nats_url)
    try:
        with repo.batch() as b:
            slots = [b.append("t", "events", i) for i in range(200)]
        assert [s.number for s in slots] == list(range(1, 201))
        assert len(calls) == 1
        calls.clear()
        # Two sequences and a second batch on top: still one plan, numbers go on.
        with repo.batch() as b:
            more = [b.append("t", "events", i) for i in range(50)]
            other = [b.append("t", "other", i) for i in range(50)]
        assert [s.number for s in more] == list(range(201, 251))
        assert [s.number for s in other] == list(range(1, 51))
        assert len(calls) == 1
        # A record already in a slot (written without append) is skipped, not replaced.
        repo.put("t", ("events", 252), "imported")
        calls.clear()
        with repo.batch() as b:
            late = [b.append("t", "events", i) for i in range(3)]
        assert [s.number for s in late] == [253, 254, 255]  # consecutive, past it
        assert repo.get("t", ("events", 252)) == "imported"
    finally:
        repo.close()
