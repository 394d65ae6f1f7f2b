"""Two or three processes writing one pair on a shared hot store apply each change-log
entry once.

The cold head (test_tiered_trimmed_log_reuse.py) keeps two processes from both taking a
change-log number, but hot's position was not guarded: a process that read hot's
position (say 1) and then applied entry 2 committed its hot batch even when another
process had applied entry 2 meanwhile - a counting projection counted it twice, and
cache mode could put an older value over a newer one. Now, on a hot tier that other
processes may write (``multi_process`` and ``conditional_writes``: LMDB, NATS), every hot
batch that moves the position is conditioned on the position record being the version
this pair last read or wrote; a refused batch means another process applied meanwhile:
the pair re-reads the position and goes on from there.

Real processes (tiered_writer_child.py) on real LMDB stores (hot and cold shared). The
races are made deterministic by holding a process just before its hot write (the
child's ``pause`` command) while another one goes on; the bursts run the processes at
the same time with no pause.
"""

from __future__ import annotations

from pathlib import Path

import pytest
from tiered_writers import (
    cache_write_against_newer,
    catch_up_against_catch_up,
    concurrent_bursts,
    live_write_against_catch_up,
)


# Exactly once matters in projection mode (a cache copies cold's current values, which
# is idempotent; its hazard is an older value, tested below).
def test_live_write_against_catch_up_applies_once(tmp_path: Path) -> None:
    live_write_against_catch_up(f"lmdb://{tmp_path}/hot", f"lmdb://{tmp_path}/cold", "projection")


def test_catch_up_against_catch_up_applies_once(tmp_path: Path) -> None:
    catch_up_against_catch_up(f"lmdb://{tmp_path}/hot", f"lmdb://{tmp_path}/cold", "projection")


def test_cache_write_never_puts_an_older_value_over_a_newer(tmp_path: Path) -> None:
    cache_write_against_newer(f"lmdb://{tmp_path}/hot", f"lmdb://{tmp_path}/cold")


@pytest.mark.parametrize("mode", ["projection", "cache"])
def test_concurrent_writers_apply_each_record_once(tmp_path: Path, mode: str) -> None:
    concurrent_bursts(f"lmdb://{tmp_path}/hot", f"lmdb://{tmp_path}/cold", mode, rounds=3, steps=60)
