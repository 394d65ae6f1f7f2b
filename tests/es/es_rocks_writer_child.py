"""The writer process of test_es_rocks_secondary.py.

    python es_rocks_writer_child.py URL

Runs an eventsourcing application on the RocksDB store at URL (the primary: the one
process that writes it). Each line "save" on stdin saves a new aggregate and answers
with its notification id; end of input closes the application.
"""

from __future__ import annotations

import os
import sys
from uuid import UUID

from eventsourcing.application import Application
from eventsourcing.domain import Aggregate


def main(url: str) -> int:
    os.environ["PERSISTENCE_MODULE"] = "aurora_storage.eventsourcing"
    os.environ["AURORA_URL"] = url
    app: Application[UUID] = Application()
    try:
        for line in sys.stdin:
            if line.strip() == "save":
                ids = app.save(Aggregate())
                print(ids[-1].notification.id, flush=True)
    finally:
        app.close()
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
