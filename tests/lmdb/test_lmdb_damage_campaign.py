"""Damage campaign (issue #10): random single-byte flips and truncations across every
file of an LMDB store holding acknowledged records.

Each damaged copy is opened and read in a child process with default settings, so a
SIGBUS or SIGABRT shows as a death instead of ending the test run. Every read (each
record's get, has and get_many, then the scans) must either raise a typed
aurora-storage error (damage reported) or answer right: "silently lost or wrong
records" must be 0, and so must deaths.

    pytest tests/lmdb/test_lmdb_damage_campaign.py -s      # prints the figures

``AURORA_DAMAGE_SEED`` picks another campaign; ``AURORA_DAMAGE_SCALE=n`` runs n times
as many flips and truncations.
"""

from __future__ import annotations

import json
import os
import random
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

import pytest

import aurora_storage

SEED = int(os.environ.get("AURORA_DAMAGE_SEED", "10"))
SCALE = int(os.environ.get("AURORA_DAMAGE_SCALE", "1"))
FLIPS = 24 * SCALE
TRUNCATIONS = 12 * SCALE

_READER = r"""
import json, sys
import aurora_storage
from aurora_storage.errors import StorageError
url, expected_file = sys.argv[1], sys.argv[2]
expected = json.load(open(expected_file))
try:
    repo = aurora_storage.open(url)
except StorageError as exc:
    print(json.dumps({"error": type(exc).__name__, "message": str(exc)[:300]}))
    sys.exit(0)
# Every call on its own: each either raises a typed error or answers right. Point
# reads come first and one by one, so a scan's error cannot hide a point read's
# silent miss.
wrong = 0
error = None
with repo:
    for t, records in expected.items():
        for k, v in records.items():
            key = json.loads(k)
            for read, want in (
                (lambda: repo.get(t, key), v),
                (lambda: repo.has(t, key), True),
                (lambda: repo.get_many(t, [key])[0], v),
            ):
                try:
                    got = read()
                except StorageError as exc:
                    error = error or exc
                    continue
                wrong += got != want
    try:
        seen = {t: {json.dumps(k): v for k, v in repo.items(t)} for t in expected}
        counts = {t: repo.count(t) for t in expected}
    except StorageError as exc:
        error = error or exc
    else:
        for t, records in expected.items():
            wrong += sum(seen[t].get(k) != v for k, v in records.items())
            wrong += len(set(seen[t]) - set(records))  # records that should not be there
            wrong += abs(counts[t] - len(records))
if wrong or error is None:
    print(json.dumps({"wrong": wrong}))
else:
    print(json.dumps({"error": type(error).__name__, "message": str(error)[:300]}))
"""


def _build(path: Path) -> dict[str, dict[str, object]]:
    """A store with acknowledged records across tenants, some overwritten and
    deleted (so freed pages and old copies exist too); returns what it must hold."""
    rng = random.Random(SEED)
    expected: dict[str, dict[str, object]] = {}
    with aurora_storage.open(f"lmdb://{path}?map_size=64KiB") as repo:
        for tenant in ("acme", "acme-corp", "a:b"):
            records: dict[str, object] = {
                f"{tenant}-{i:05}": {"n": i, "pad": "p" * rng.randint(1, 300)} for i in range(700)
            }
            repo.put_many(tenant, records)
            for i in range(0, 700, 7):
                key = f"{tenant}-{i:05}"
                records[key] = {"n": -i}
                repo.put(tenant, key, records[key])
            doomed = [f"{tenant}-{i:05}" for i in range(3, 700, 11)]
            repo.delete_many(tenant, doomed)
            for key in doomed:
                del records[key]
            repo.put(tenant, ("tuple", 1), [1, 2, 3])
            records[json.dumps(["tuple", 1])] = [1, 2, 3]
            expected[tenant] = {
                (k if k.startswith("[") else json.dumps(k)): v for k, v in records.items()
            }
    return expected


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_damage_campaign(tmp_path: Path) -> None:
    src = tmp_path / "src"
    expected = _build(src)
    expected_file = tmp_path / "expected.json"
    expected_file.write_text(json.dumps(expected))
    files = sorted(p.name for p in src.iterdir())
    assert {"data.mdb", "lock.mdb"} <= set(files)
    rng = random.Random(SEED)
    # Most damage goes to the data file, where the records are; every file gets some.
    weights = [8 if name == "data.mdb" else 1 for name in files]
    # (Empty side files, such as the growth lock, have no byte to flip.)
    full = [f for f in files if (src / f).stat().st_size]
    full_weights = [8 if name == "data.mdb" else 1 for name in full]
    plan = [("flip", f) for f in rng.choices(full, full_weights, k=FLIPS - len(full))]
    plan += [("flip", f) for f in full]
    plan += [("truncate", f) for f in rng.choices(files, weights, k=TRUNCATIONS - len(files))]
    plan += [("truncate", f) for f in files]
    outcomes: Counter[str] = Counter()
    silent: list[str] = []
    deaths: list[str] = []
    for n, (kind, name) in enumerate(plan):
        copy = tmp_path / f"c{n}"
        shutil.copytree(src, copy)
        target = copy / name
        size = target.stat().st_size
        if kind == "flip":
            at = rng.randrange(size)
            with open(target, "r+b") as f:
                f.seek(at)
                byte = f.read(1)[0]
                f.seek(at)
                f.write(bytes([byte ^ (1 << rng.randrange(8))]))
            what = f"flip {name}@{at}"
        else:
            cut = rng.randrange(size) if size else 0
            os.truncate(target, cut)
            what = f"truncate {name} to {cut}/{size}"
        proc = subprocess.run(
            [sys.executable, "-c", _READER, f"lmdb://{copy}", str(expected_file)],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if proc.returncode < 0:
            deaths.append(f"{what}: signal {-proc.returncode} {proc.stderr[-300:]}")
            outcomes["death"] += 1
        elif proc.returncode != 0:
            # An untyped exception escaped: as bad as silence for a user.
            silent.append(f"{what}: raw error {proc.stderr[-300:]}")
            outcomes["raw error"] += 1
        else:
            result = json.loads(proc.stdout)
            if "error" in result:
                outcomes[f"reported ({result['error']})"] += 1
            elif result["wrong"]:
                silent.append(f"{what}: {result['wrong']} records lost or wrong")
                outcomes["silently lost or wrong"] += 1
            else:
                outcomes["intact"] += 1
        shutil.rmtree(copy)
    records = sum(map(len, expected.values()))
    print(
        f"\nLMDB damage campaign (seed {SEED}): {len(plan)} damaged copies of a store "
        f"with {records} acknowledged records over {files}: {dict(outcomes)}; "
        f"silently lost or wrong: {len(silent)}, deaths: {len(deaths)}"
    )
    assert not deaths, deaths
    assert not silent, silent
    assert sum(1 for k, _ in plan if k == "flip") >= 20
    assert sum(1 for k, _ in plan if k == "truncate") >= 10
