"""A NATS repository closed from a finaliser at interpreter exit (eventsourcing's
``Application.__del__`` closes its factory then, when the application was not closed)
lets the process exit: close() waited forever on the private loop thread, a daemon
thread the interpreter no longer runs at that point, so the process hung at exit."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

SRC = str(Path(__file__).resolve().parents[2] / "src")

SCRIPT = textwrap.dedent(
    """
    import sys
    import aurora_storage

    class Holder:
        def __init__(self, url):
            self.repo = aurora_storage.open(url)

        def __del__(self):
            self.repo.close()

    holder = Holder(sys.argv[1])
    holder.repo.put("t", "k", 1)
    print("written", flush=True)
    """
)


def test_close_from_a_finaliser_at_exit_lets_the_process_exit(nats_url: str) -> None:
    env = dict(os.environ, PYTHONPATH=SRC + os.pathsep + os.environ.get("PYTHONPATH", ""))
    try:
        done = subprocess.run(
            [sys.executable, "-c", SCRIPT, nats_url],
            env=env,
            capture_output=True,
            text=True,
            timeout=60,  # a guard for the suite: the old code never exited
        )
    except subprocess.TimeoutExpired:
        raise AssertionError("the process did not exit: close() at exit hung") from None
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "written"
