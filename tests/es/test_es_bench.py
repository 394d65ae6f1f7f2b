"""benchmarks/eventsourcing_bench.py runs (a smoke run at tiny sizes; figures from it
are not reported)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

from es_cases import require_primitives

SCRIPT = Path(__file__).resolve().parents[2] / "benchmarks" / "eventsourcing_bench.py"
LAYERS = SCRIPT.with_name("eventsourcing_layers.py")
CONTENDERS = ("sqlite", "aurora-lmdb", "aurora-rocksdb", "raw-lmdb", "raw-rocksdb")


def test_benchmark_smoke_run(tmp_path: Path) -> None:
    require_primitives(f"lmdb://{tmp_path / 'probe-lmdb'}")
    require_primitives(f"rocksdb://{tmp_path / 'probe-rocksdb'}")
    out = subprocess.run(
        [
            sys.executable,
            str(SCRIPT),
            "--quick",
            "--calls",
            "5",
            "--dir",
            str(tmp_path),
            "--contenders",
            ",".join(CONTENDERS),
        ],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    for contender in CONTENDERS:
        for mode in ("fsync", "nofsync"):
            assert f"| {mode} | 1 | {contender} |" in out.stdout


def test_layer_breakdown_smoke_run(tmp_path: Path) -> None:
    require_primitives(f"lmdb://{tmp_path / 'probe-lmdb'}")
    require_primitives(f"rocksdb://{tmp_path / 'probe-rocksdb'}")
    out = subprocess.run(
        [sys.executable, str(LAYERS), "--calls", "5", "--rounds", "1", "--batches", "2"],
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert out.returncode == 0, out.stderr
    # Two tables (the layers; Application.save() with the mapper), a row per engine each.
    assert out.stdout.count("| lmdb | 2 |") == 2
    assert out.stdout.count("| rocksdb | 2 |") == 2
    header = out.stdout.splitlines()[1]
    for column in ("direct", "core", "min"):
        assert column in header
