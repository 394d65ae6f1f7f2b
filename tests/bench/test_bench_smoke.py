"""benchmarks/scaling.py, benchmarks/workloads.py and benchmarks/nats_bench.py run at
tiny sizes and report in the documented shape (tables, JSON, plot). Smoke runs only: no
time or ratio is asserted; figures of such runs are not reported."""

from __future__ import annotations

import importlib.util
import json
import re
import subprocess
import sys
from pathlib import Path

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
OPS = ("put", "get", "put_many item", "scan item")
CELL = r"\d+(\.\d+)? / \d+(\.\d+)? \(\d+\.\d\d\)"


def _run(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, *args], capture_output=True, text=True, timeout=300, check=False
    )


def test_scaling_smoke_run(tmp_path: Path) -> None:
    out, stores, png = tmp_path / "out", tmp_path / "stores", tmp_path / "scaling.png"
    has_mpl = importlib.util.find_spec("matplotlib") is not None
    proc = _run(
        str(BENCHMARKS / "scaling.py"),
        *("--sizes", "1k,2k", "--trials", "2", "--out", str(out), "--workdir", str(stores)),
        *(("--plot", str(png)) if has_mpl else ("--no-plot",)),
    )
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    assert "| engine | operation | 1k | 2k |" in text
    for engine in ("rocksdb", "lmdb"):
        for op in OPS:
            row = re.search(rf"^\| {engine} \| {op} \| (.*) \|$", text, re.M)
            assert row, f"no row for {engine} {op}"
            cells = row.group(1).split(" | ")
            assert len(cells) == 2
            assert all(re.fullmatch(CELL, c) for c in cells), cells
        for size in ("1k", "2k"):
            assert re.search(rf"^\| {engine} \| {size} \|( [\d.]+ \|){{8}}$", text, re.M)
    (path,) = out.glob("scaling-*.json")
    doc = json.loads(path.read_text())
    assert doc["config"]["sizes"] == [1000, 2000]
    assert "partial" not in doc
    assert "interrupted" not in doc
    steps = [(s["engine"], s["records"]) for s in doc["steps"]]
    assert steps == [("rocksdb", 1000), ("rocksdb", 2000), ("lmdb", 1000), ("lmdb", 2000)]
    for step in doc["steps"]:
        assert set(step["ops"]) == set(OPS)
        for r in step["ops"].values():
            assert r["trials"] == 2
            assert r["aurora_us"] > 0
            assert r["raw_us"] > 0
            assert r["ratio_p10"] <= r["ratio"] <= r["ratio_p90"]
        assert step["disk_bytes"]["aurora"] > 0
        assert step["disk_bytes"]["raw"] > 0
        assert step["memory"]["rss_mib"] > 0
    # The stores are removed engine by engine once measured.
    assert list(stores.iterdir()) == []
    if has_mpl:
        assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_scaling_refuses_sizes_out_of_order(tmp_path: Path) -> None:
    proc = _run(str(BENCHMARKS / "scaling.py"), "--sizes", "2k,1k", "--out", str(tmp_path))
    assert proc.returncode == 2
    assert "ascending" in proc.stderr
    assert list(tmp_path.iterdir()) == []


def test_workloads_smoke_run(tmp_path: Path) -> None:
    proc = _run(
        str(BENCHMARKS / "workloads.py"),
        *("--workloads", "get_hit,get_miss,scan", "--records", "500", "--trials", "2"),
        *("--out", str(tmp_path)),
    )
    assert proc.returncode == 0, proc.stderr
    for engine in ("rocksdb", "lmdb"):
        for workload, goal in (("get_hit", "1.10"), ("get_miss", "1.25"), ("scan", None)):
            row = re.search(rf"^\| {workload} \| {engine} \|(.*)\|$", proc.stdout, re.M)
            assert row, f"no row for {workload} on {engine}"
            verdict = row.group(1).split("|")[-1].strip()
            if goal is None:
                assert verdict == "-"
            else:
                assert re.fullmatch(rf"<= {goal} (met|MISSED)", verdict), verdict
    (path,) = tmp_path.glob("workloads-*.json")
    doc = json.loads(path.read_text())
    assert [(r["workload"], r["engine"]) for r in doc["results"]] == [
        (w, e) for e in ("rocksdb", "lmdb") for w in ("get_hit", "get_miss", "scan")
    ]
    for r in doc["results"]:
        # Point workloads run --trials trials; a scan at least 5 (it is one trial each).
        n = 2 if r["workload"] != "scan" else 5
        assert len(r["aurora_us"]) == len(r["raw_us"]) == len(r["ratios"]) == n


def test_nats_bench_smoke_run() -> None:
    # The NATS benchmark starts its own nats-server; at tiny sizes it must run through
    # and print every row. (It once stopped at its scan: its async rows had closed the
    # repository the scan then wrote through.)
    proc = _run(str(BENCHMARKS / "nats_bench.py"), "--quick")
    assert proc.returncode == 0, proc.stderr
    text = proc.stdout
    for op in ("put", "get", r"batch item \(100/batch\)", "async put", "async get"):
        assert re.search(rf"^\| {op} \| [\d.]+ \| [\d.]+ \| [\d.]+x \|$", text, re.M), op
    assert re.search(r"^scan of [\d,]+ keys with values: aurora items\(\)", text, re.M)
