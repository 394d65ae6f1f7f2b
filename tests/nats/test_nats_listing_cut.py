"""Listings (keys, count, list, items; sync and async) against a writer that keeps
overwriting every key of a tenant in atomic batches: each answer is one consistent cut -
every key that exists at the cut, with the values of one batch - and never invents an
absence. Real server, real concurrent writer; bounded rounds, zero wrong answers
allowed."""

from __future__ import annotations

import asyncio
from typing import Any

from nats_load import overwriting

import aurora_storage

KEYS = 50
ROUNDS = 3


def _tenant_batch(repo: Any, i: int) -> None:
    repo.put_many("t", [(("k", j), i) for j in range(KEYS)])


def _spanning_batch(repo: Any, i: int) -> None:
    # The batch's last message (its commit) lies outside tenant t's subjects: a listing
    # of t never sees it, so every listing meets a batch it must find the end of.
    with repo.batch() as b:
        for j in range(KEYS):
            b.put("t", ("k", j), i)
        b.put("u", "x", i)


def _check_listings(repo: Any, wrong: list[str]) -> None:
    everything = {("k", j) for j in range(KEYS)}
    keys = set(repo.keys("t"))
    if keys != everything:
        wrong.append(f"keys() gave {len(keys)} keys")
    n = repo.count("t")
    if n != KEYS:
        wrong.append(f"count() gave {n}")
    listed = set(repo.list("t"))
    if listed != everything:
        wrong.append(f"list() gave {len(listed)} keys")
    items = dict(repo.items("t"))
    if set(items) != everything:
        wrong.append(f"items() gave {len(items)} keys")
    elif len(set(items.values())) != 1:
        wrong.append(f"items() mixed the batches {sorted(set(items.values()))}")


def test_listings_under_overwriting_batches_miss_no_key(nats_url: str) -> None:
    # A listing fixes its cut when its consumer has caught up, then finishes the batch
    # it met part of. Messages the consumer delivered after the cut used to replace what
    # a key held at the cut, and were then dropped as beyond it: the key vanished (all
    # 50, when the next batch came in meanwhile).
    with aurora_storage.open(nats_url) as repo:
        _tenant_batch(repo, 0)
        wrong: list[str] = []
        for write in (_spanning_batch, _tenant_batch):
            with overwriting(nats_url, write):
                for _ in range(ROUNDS):
                    _check_listings(repo, wrong)
        assert not wrong, wrong


def test_async_listings_under_overwriting_batches_miss_no_key(nats_url: str) -> None:
    everything = {("k", j) for j in range(KEYS)}

    async def rounds() -> list[str]:
        wrong: list[str] = []
        async with aurora_storage.open_async(nats_url) as arepo:
            for _ in range(ROUNDS):
                keys = {k async for k in arepo.keys("t")}
                if keys != everything:
                    wrong.append(f"keys() gave {len(keys)} keys")
                items = {k: v async for k, v in arepo.items("t")}
                if set(items) != everything or len(set(items.values())) != 1:
                    wrong.append(f"items() gave {len(items)} keys, values {set(items.values())}")
        return wrong

    with aurora_storage.open(nats_url) as repo:
        _tenant_batch(repo, 0)
        with overwriting(nats_url, _spanning_batch):
            wrong = asyncio.run(rounds())
        assert not wrong, wrong
