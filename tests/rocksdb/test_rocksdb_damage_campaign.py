"""The RocksDB damage campaign: random single-byte flips and truncations across every
file of a store with acknowledged records (some in table files, some only in the
write-ahead log of a writer that was SIGKILLed). Each damaged copy is opened and read
in its own process, so a crash of the engine is seen as a death, not as a test error.

The figure that must be 0: records that are silently missing or wrong (the store opened
and the record read back absent or different, with no CorruptionError). Deaths of the
reading process must be 0 too. Reproduce (and see the figures) with::

    .venv/bin/python -m pytest tests/rocksdb/test_rocksdb_damage_campaign.py -s
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

CHILD = str(Path(__file__).with_name("child_rocksdb.py"))
FLUSHED, IN_WAL = 1000, 2000
FLIPS, TRUNCATIONS = 20, 10
SEED = 20261201


def _damage_targets(store: Path) -> list[str]:
    # Every file of the store but LOCK (empty) - table files, the write-ahead log,
    # MANIFEST, CURRENT, OPTIONS, IDENTITY, the info log, rocksdict's side file and the
    # store marker.
    return sorted(f for f in os.listdir(store) if f != "LOCK" and os.path.getsize(store / f) > 0)


@pytest.mark.slow
def test_damage_campaign_loses_nothing_silently(tmp_path: Path) -> None:
    base = tmp_path / "base"
    out = subprocess.run(
        [
            sys.executable,
            CHILD,
            "fill-and-die",
            f"rocksdb://{base}",
            str(FLUSHED),
            str(IN_WAL),
            "0",
        ],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.stdout.strip() == "acked", out.stderr
    files = _damage_targets(base)
    assert any(f.endswith(".sst") for f in files)
    assert any(f.endswith(".log") for f in files)
    rng = random.Random(SEED)
    # Each kind of file gets damage: the targets cycle through the files, then random.
    plan: list[tuple[str, str, int]] = []
    for n in range(FLIPS + TRUNCATIONS):
        kind = "flip" if n < FLIPS else "truncate"
        i = n if kind == "flip" else n - FLIPS
        name = files[i % len(files)] if i < 2 * len(files) else rng.choice(files)
        size = os.path.getsize(base / name)
        plan.append((kind, name, rng.randrange(size)))

    outcomes: Counter[str] = Counter()
    silent = deaths = 0
    lines = []
    for n, (kind, name, offset) in enumerate(plan):
        copy = tmp_path / f"c{n}"
        shutil.copytree(base, copy)
        target = copy / name
        if kind == "flip":
            data = bytearray(target.read_bytes())
            data[offset] ^= 1 << rng.randrange(8)
            target.write_bytes(bytes(data))
        else:
            os.truncate(target, offset)
        run = subprocess.run(
            [
                sys.executable,
                CHILD,
                "verify",
                f"rocksdb://{copy}",
                str(FLUSHED + IN_WAL),
                str(FLUSHED),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
        if run.returncode != 0 or not run.stdout.strip():
            deaths += 1
            result = {"death": run.returncode, "stderr": run.stderr[-300:]}
            outcomes["death"] += 1
        else:
            result = json.loads(run.stdout)
            if result["open"] != "ok":
                # A refused open must be a CorruptionError (the damage, named).
                assert result["open"] == "CorruptionError", (kind, name, offset, result)
                outcomes[f"refused: {result['open']}"] += 1
            else:
                lost = result["missing"] + result["wrong"]
                silent += lost
                outcomes[
                    "opened, all intact"
                    if not lost and not result["reported"]
                    else ("opened, damage reported" if not lost else "opened, SILENT LOSS")
                ] += 1
        lines.append(f"{kind:8} {name:24} @{offset:<7} -> {result}")
        shutil.rmtree(copy)
    report = "\n".join(lines)
    print(f"\nRocksDB damage campaign: {FLIPS} flips, {TRUNCATIONS} truncations over {files}")
    print(report)
    print(f"outcomes: {dict(outcomes)}; silently lost or wrong records: {silent}; deaths: {deaths}")
    assert deaths == 0, report
    assert silent == 0, report
