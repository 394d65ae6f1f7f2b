"""Ctrl-C on ``python3 tasks.py demo|test`` ends quietly with status 130: the job (in the
terminal's process group) gets the signal itself; tasks.py waits for it and prints no
traceback of its own."""

from __future__ import annotations

import hashlib
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

_ROOT = Path(__file__).resolve().parents[2]

# Stands in for the environment's python: says it is running, then waits to be
# interrupted and ends as the demo does (a clean line, status 130).
_FAKE_PYTHON = """#!{python}
import sys, time
try:
    print("ready", flush=True)
    while True:
        time.sleep(3600)
except KeyboardInterrupt:
    print("aborted", file=sys.stderr, flush=True)
    sys.exit(130)
"""


def test_ctrl_c_on_a_job_exits_130_without_a_traceback(tmp_path: Path) -> None:
    shutil.copy(_ROOT / "tasks.py", tmp_path / "tasks.py")
    (tmp_path / "pyproject.toml").write_text("[project]\nname = 'x'\n")
    bin_dir = tmp_path / ".venv" / "bin"
    bin_dir.mkdir(parents=True)
    fake = bin_dir / "python"
    fake.write_text(_FAKE_PYTHON.format(python=sys.executable))
    fake.chmod(0o755)
    # The environment is up to date for every job: tasks.py runs the job at once.
    digest = hashlib.sha256((tmp_path / "pyproject.toml").read_bytes()).hexdigest()
    (tmp_path / ".venv" / ".aurora-installed").write_text(f"{digest} full")
    proc = subprocess.Popen(
        [sys.executable, str(tmp_path / "tasks.py"), "test"],
        cwd=tmp_path,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        start_new_session=True,  # its own process group, as a terminal's job
    )
    try:
        assert proc.stdout is not None
        lines = []
        for line in proc.stdout:
            lines.append(line)
            if line.strip() == "ready":
                break
        assert lines, "the job printed nothing"
        assert lines[-1].strip() == "ready", lines
        os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C does: the whole group
        _, err = proc.communicate(timeout=120)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 130, err
    assert "Traceback" not in err, err
    assert err.strip() == "aborted", err
