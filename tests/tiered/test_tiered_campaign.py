"""Fault campaign (slow tier): random hot-tier faults (before or after the commit) and a
projection that raises on random records, over thousands of events across several
tenants, with catch-ups, rebuilds, retries and reopens in between.

After each run, for every tenant, hot must equal a fresh projection of cold over the
records that are not parked, each record applied exactly once (the Counting projection
keeps per-record counters in the projection itself), and every write's error must have
told the truth about whether its records are in history.

AURORA_TIERED_CAMPAIGN_EVENTS sets the events per run (default 2,000).
"""

from __future__ import annotations

import os
import random
from typing import Any, Literal

import pytest
from tiered_helpers import Broken, Counting, crashed, dump, faulty_repo, flaky_repo, fold_counting

from aurora_storage.tiered import (
    DurableWriteError,
    ProjectionError,
    TieredRepository,
)
from aurora_storage.tiered import _log as tlog

EVENTS = int(os.environ.get("AURORA_TIERED_CAMPAIGN_EVENTS", "2000"))
TENANTS = ("acme", "globex", "initech", "umbrella")


@pytest.mark.slow
@pytest.mark.timeout(300)
@pytest.mark.parametrize(("policy", "seed"), [("stop", 1), ("park", 2), ("stop", 3)])
def test_fault_campaign(policy: Literal["stop", "park"], seed: int) -> None:
    rnd = random.Random(seed)
    hot, fb = faulty_repo()
    cold = flaky_repo()
    proj = Counting()
    proj.poison.add("bad")

    def open_pair() -> TieredRepository[Any, Any]:
        while True:  # opening catches up: it may meet an injected fault too
            try:
                return TieredRepository(
                    hot=hot, cold=cold, projection=proj, on_poison=policy, rebuild_chunk=50
                )
            except Broken:
                continue

    t = open_pair()
    fb.chaos(0.1, rnd)
    undecodable: set[tuple[str, Any]] = set()
    n = 0
    stats = dict.fromkeys(
        ("ok", "rejected", "durable", "reopen", "rebuild", "tier", "retried", "drops"), 0
    )
    burst = 0
    while n < EVENTS:
        # Now and then the hot tier goes bad for a while: writes then reach history
        # unprojected, and the poison among them meets the policy at catch-up.
        if burst == 0 and rnd.random() < 0.01:
            burst = 30
            fb.chaos(0.7, rnd)
        elif burst:
            burst -= 1
            if burst == 0:
                fb.chaos(0.1, rnd)
        roll = rnd.random()
        if roll < 0.9:
            tenant = rnd.choice(TENANTS)
            size = 1 if roll < 0.6 else rnd.randint(2, 5)
            items = []
            for _ in range(size):
                mark = "bad" if rnd.random() < 0.05 else ""
                items.append(((n, "e"), {"i": n, "mark": mark}))
                n += 1
            try:
                if size == 1:
                    t.put(tenant, *items[0])
                elif roll < 0.8:
                    t.put_many(tenant, items)
                else:
                    with t.batch() as b:
                        for k, v in items:
                            b.put(rnd.choice(TENANTS), k, v)
                stats["ok"] += 1
                durable = True
            except ProjectionError as exc:
                durable = exc.durable
                assert durable is False
                stats["rejected"] += 1
            except DurableWriteError as exc:
                durable = exc.durable
                assert durable is True
                stats["durable"] += 1
            # the truth: every record of the write is in history iff the error said so
            in_cold = [any(cold.has(tn, k) for tn in TENANTS) for k, _ in items]
            assert all(in_cold) if durable else not any(in_cold), (durable, items)
        elif roll < 0.947:
            try:
                t.catch_up()
            except Broken:
                stats["tier"] += 1
        elif roll < 0.95:
            tenant = rnd.choice(TENANTS)
            try:
                t.drop_tenant(tenant)
            except DurableWriteError:
                pass  # dropped in history; hot catches up
            assert cold.count(tenant) == 0
            undecodable = {u for u in undecodable if u[0] != tenant}
            stats["drops"] += 1
        elif roll < 0.97:
            try:
                t.rebuild(rnd.choice([None, rnd.choice(TENANTS)]))
                stats["rebuild"] += 1
            except ProjectionError as exc:  # policy stop: abandoned, old one served
                stats["rebuild_abandoned"] = stats.get("rebuild_abandoned", 0) + exc.durable
            except Broken:
                stats["tier"] += 1
        elif roll < 0.99:
            fixed = rnd.random() < 0.3  # now and then the projection is fixed for a while
            if fixed:
                proj.poison.clear()
            try:
                stats["retried"] += t.retry_parked()
            except Broken:
                stats["tier"] += 1
            if fixed:
                proj.poison.add("bad")
        else:
            if rnd.random() < 0.5:
                # Another writer (older code, another codec) appended a record this
                # projection cannot decode; the restart finds it in the change log.
                tenant = rnd.choice(TENANTS)
                full = cold._full(tenant, (n, "e"))
                last = next(iter(cold.backend.scan_keys(tlog.LOG, tlog.LOG_END, reverse=True)))
                seq = tlog.seq_of(last) + 1
                cold.backend.write(
                    [(full, b"\xff undecodable"), (tlog.log_key(seq), tlog.one(full))]
                )
                undecodable.add((tenant, (n, "e")))
                n += 1
            crashed(t)  # what a restart does (no close: the process just went away)
            t = open_pair()
            stats["reopen"] += 1
    fb.heal()
    t.catch_up()
    assert t.lag == 0
    parked = {(r.tenant, r.key) for r in t.parked()}
    for tenant in TENANTS:
        got = {k: v for k, v in dump(hot).items() if k[0] == tenant}
        want = {k: v for k, v in fold_counting(cold, parked).items() if k[0] == tenant}
        assert got == want, f"tenant {tenant}: hot differs from a fresh projection of cold"
    assert undecodable <= parked
    # a fixed projection drains the park, except the records it cannot decode
    proj.poison.clear()
    t.retry_parked()
    left = {(r.tenant, r.key) for r in t.parked()}
    if policy == "park":
        assert left == undecodable
    else:  # a tenant stays stopped at its first undecodable record, the rest held
        first: dict[str, Any] = {}
        for tenant, key in sorted(undecodable):
            first.setdefault(tenant, key)
        assert left == {(tn, k) for tn in first for k in cold.keys(tn) if k >= first[tn]}
    assert dump(hot) == fold_counting(cold, left)
    history = sum(cold.count(tn) for tn in TENANTS)
    print(
        f"\n{policy}/{seed}: {n} events, {history} in history, {fb.injected} hot faults "
        f"injected, {len(parked)} parked ({len(undecodable)} undecodable), {stats}"
    )
    assert fb.injected > 50
    assert parked
    assert history > 0
    assert stats["ok"] + stats["durable"] >= EVENTS // 3  # writes, not only refusals


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_cache_mode_fault_campaign() -> None:
    """Cache mode under the same random hot faults: puts, deletes, batches, drops,
    rebuilds and reopens; every cached record always equals cold's, and after a
    catch-up and a warm-up hot equals cold."""
    rnd = random.Random(11)
    hot, fb = faulty_repo()
    cold = flaky_repo()

    def open_pair() -> TieredRepository[Any, Any]:
        while True:
            try:
                return TieredRepository(hot=hot, cold=cold, rebuild_chunk=50)
            except Broken:
                continue

    t = open_pair()
    fb.chaos(0.1, rnd)
    ops = 0
    for i in range(EVENTS):
        tenant = rnd.choice(TENANTS)
        key = rnd.randrange(200)
        roll = rnd.random()
        try:
            if roll < 0.6:
                t.put(tenant, key, i)
            elif roll < 0.75:
                t.delete(tenant, key)
            elif roll < 0.9:
                with t.batch() as b:
                    b.put(tenant, key, i)
                    b.delete(rnd.choice(TENANTS), rnd.randrange(200))
            elif roll < 0.95:
                t.put_many(tenant, {rnd.randrange(200): i for _ in range(3)})
            elif roll < 0.96:
                t.drop_tenant(tenant)
            elif roll < 0.98:
                t.rebuild()
            elif roll < 0.99:
                t.catch_up()
            else:
                crashed(t)
                t = open_pair()
            ops += 1
        except (DurableWriteError, Broken):
            pass
        if i % 100 == 0:  # whatever hot holds is cold's current value (never stale)
            fb_rate, fb._rate = fb._rate, 0.0
            t.catch_up()
            cached = dump(hot)
            assert all(cold.get(tn, k) == v for (tn, k), v in cached.items())
            fb._rate = fb_rate
    fb.heal()
    t.catch_up()
    t.rebuild()
    assert dump(hot) == dump(cold)
    print(f"\ncache: {EVENTS} operations, {fb.injected} hot faults injected")
    assert fb.injected > 50
