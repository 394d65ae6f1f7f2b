"""``import`` beside a live appender: raising a sequence counter is atomic against
concurrent appends (a read, then a plain write, lowered a counter that an append in
another process had moved on between the two: ``last_sequence`` went backwards, below
the newest record, and its numbers were given again)."""

from __future__ import annotations

import io
import subprocess
import sys
import textwrap
from pathlib import Path

import aurora_storage
from aurora_storage.backend import decode_counter
from aurora_storage.cli._transfer import import_store

#: Each batch of the appender process appends this many records.
_BATCH = 20

_APPENDER = textwrap.dedent(
    f"""
    import sys, aurora_storage
    repo = aurora_storage.open(sys.argv[1])
    print("ready", flush=True)
    while True:
        with repo.batch() as b:
            for i in range({_BATCH}):
                b.append("t", "X", i)
    """
)


def _export(target: int, pads: int, trial: int) -> bytes:
    """A format-3 export raising ``("t", "X")`` to ``target``, then ``pads`` counters
    of other sequences (new ones each trial: all of them are raised, in the same
    commits as ``X``, which widens the window between reading ``X`` and writing it)."""
    lines = [
        b'{"aurora-storage-export":3,"codec":"json","values":"json"}',
        b'{"tenant":"t","key":"k","value":1}',
        f'{{"tenant":"t","sequence":"X","last":{target}}}'.encode(),
        *(f'{{"tenant":"t","sequence":"p{trial}-{j}","last":1}}'.encode() for j in range(pads)),
        f'{{"aurora-storage-export-end":true,"records":1,"sequences":{pads + 1}}}'.encode(),
    ]
    return b"\n".join(lines) + b"\n"


def test_import_never_lowers_a_counter_a_live_appender_moves(tmp_path: Path) -> None:
    url = f"lmdb://{tmp_path / 'db'}"
    repo = aurora_storage.open(url)
    with repo.batch() as b:
        b.append("t", "X", 0)
    app = subprocess.Popen(
        [sys.executable, "-c", _APPENDER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == "ready"
        contended = 0
        for trial in range(400):
            before = repo.last_sequence("t", "X")
            # Between the appender's batch boundaries: the raise writes when no append
            # passed it since the counters were read.
            target = before + _BATCH + _BATCH // 2
            import_store(repo, io.BytesIO(_export(target, 800, trial)))
            newest = next(iter(repo.keys("t", prefix=("X",), reverse=True, limit=1)))[1]
            after = repo.last_sequence("t", "X")  # read after the newest record
            assert after >= newest, f"trial {trial}: counter {after} < newest record {newest}"
            assert after >= target, f"trial {trial}: counter {after} < imported {target}"
            # The appender passed the imported number during this import: the window
            # between reading the counter and raising it was open to an append.
            if after > target:
                contended += 1
            if contended >= 30 and trial >= 60:
                break
        assert contended >= 30, f"only {contended} contended imports: the race was not exercised"
        # Every number the appender and the imports used is a record or below the counter.
        assert app.poll() is None, "the appender process died"
    finally:
        app.kill()
        app.wait()
        if app.stdout is not None:
            app.stdout.close()
        repo.close()


def test_an_append_between_reading_a_counter_and_raising_it_is_kept(tmp_path: Path) -> None:
    # The window forced open every time: after the import reads the counter it is about
    # to raise, it waits (a wrapper around the real engine's read) until the appender
    # process has committed past the imported number. The raise must then fail its
    # condition, read again and leave the appender's counter alone.
    url = f"lmdb://{tmp_path / 'db'}"
    repo = aurora_storage.open(url)
    with repo.batch() as b:
        b.append("t", "X", 0)
    backend = repo._backend
    real_read = backend.get_versioned
    counter = repo.last_sequence  # a fresh read of the engine each call
    state = {"target": 0, "held": False, "stale_reads": 0}

    def read_then_let_the_appender_pass(key: bytes) -> tuple[bytes, bytes] | None:
        got = real_read(key)
        if key.endswith(b"X\x00") and not state["held"]:
            state["held"] = True
            if decode_counter(got[0] if got else None) < state["target"]:
                state["stale_reads"] += 1
                while counter("t", "X") <= state["target"]:
                    # The appender process runs on; it passes the target soon.
                    assert app.poll() is None, "the appender process died"
        return got

    backend.get_versioned = read_then_let_the_appender_pass  # type: ignore[method-assign]  # a wrapper around the real read
    app = subprocess.Popen(
        [sys.executable, "-c", _APPENDER, url], stdout=subprocess.PIPE, text=True
    )
    try:
        assert app.stdout is not None
        assert app.stdout.readline().strip() == "ready"
        for trial in range(30):
            state["target"] = repo.last_sequence("t", "X") + _BATCH + _BATCH // 2
            state["held"] = False
            import_store(repo, io.BytesIO(_export(state["target"], 0, trial)))
            newest = next(iter(repo.keys("t", prefix=("X",), reverse=True, limit=1)))[1]
            after = repo.last_sequence("t", "X")
            assert after >= newest, f"trial {trial}: counter {after} < newest record {newest}"
            assert after > state["target"]
        # The window was open with a stale read in most trials (the first pass may
        # already see the appender past the target: nothing to raise then).
        assert state["stale_reads"] >= 10, state
    finally:
        app.kill()
        app.wait()
        if app.stdout is not None:
            app.stdout.close()
        repo.close()
