"""One writer process of test_es_view_reads.py's cross-process case.

    python es_view_child.py URL UPSTREAM N GO_FILE

Puts a tracking recorder on the tenant "Totals" of the LMDB store at URL, says it is
ready (GO_FILE.UPSTREAM.ready), waits for GO_FILE so both writers start together, then
processes notifications 1..N of UPSTREAM, each adding 1 to the view record "total".
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from eventsourcing.persistence import Tracking

import aurora_storage
from aurora_storage.eventsourcing import AuroraDatastore, AuroraTrackingRecorder, ViewState


def _add_one(state: ViewState) -> None:
    state.put("total", state.get("total", 0) + 1)


def main(argv: list[str]) -> int:
    url, upstream, n, go = argv[0], argv[1], int(argv[2]), Path(argv[3])
    with aurora_storage.open(url) as repo:
        view = AuroraTrackingRecorder(AuroraDatastore(repo, "Totals"))
        go.with_name(f"{go.name}.{upstream}.ready").touch()
        while not go.exists():
            time.sleep(0.005)
        for nid in range(1, n + 1):
            view.track(Tracking(upstream, nid), _add_one)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
