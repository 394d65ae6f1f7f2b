"""benchmarks/eventsourcing_bench.py runs (a smoke run at tiny sizes; figures from it
are not reported)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from es_cases import require_primitives

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "eventsourcing_bench.py"


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    require_primitives(f"lmdb://{tmp_path / 'probe-lmdb'}")
    require_primitives(f"rocksdb://{tmp_path / 'probe-rocksdb'}")
    out = subprocess.run(
        [sys.executable, str(SCRIPT), "--quick", "--calls", "5", "--dir", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for contender in ("sqlite", "aurora-lmdb", "aurora-rocksdb"):
        for mode in ("fsync", "nofsync"):
            assert f"| {mode} | 1 | {contender} |" in out.stdout
