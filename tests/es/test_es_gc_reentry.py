"""A factory closed by a garbage-collected application while this thread is inside the
store registry (eventsourcing's Application.__del__ closes its factory; the collector
may run it during another factory's open()) must not wait for itself.

Before, the module's own shared-store registry had a lock that was not reentrant and the
thread hung forever (seen as the es tests hanging at a test that built a factory after
one that left an application for the collector). Each factory now opens its own
repository, and the store registry it goes through is the core's (one live handle per
store), whose lock this holds. Run in a subprocess so a hang fails the test instead of
the suite.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

_CHILD = """
import gc, sys
from eventsourcing.application import Application
from aurora_storage._stores import open_stores

url = sys.argv[1]
app = Application(env={"PERSISTENCE_MODULE": "aurora_storage.eventsourcing", "AURORA_URL": url})
app.cycle = app          # only the collector frees it
del app
gc.disable()
with open_stores._lock:   # as if another factory were opening a store
    gc.collect()          # Application.__del__ -> factory.close() -> release the handle
print("no deadlock", flush=True)
"""


def test_application_collected_inside_the_registry_does_not_deadlock(tmp_path: Path) -> None:
    out = subprocess.run(
        [sys.executable, "-c", _CHILD, f"lmdb://{tmp_path / 'store'}"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "no deadlock"
