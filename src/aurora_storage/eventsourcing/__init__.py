"""A persistence module for the `eventsourcing <https://eventsourcing.readthedocs.io>`_
library (9.5.x), on aurora-storage's event-store primitives.

Install with ``pip install '.[eventsourcing]'`` (from a clone) and select it as eventsourcing
selects any persistence module::

    import os
    os.environ["PERSISTENCE_MODULE"] = "aurora_storage.eventsourcing"
    os.environ["AURORA_URL"] = "lmdb:///var/data/events?codec=msgpack"

    app = BankAccounts()          # an eventsourcing Application
    # its events, snapshots, notification log and tracking records now live in the
    # tenant "BankAccounts" of that LMDB store

One store holds several applications: each application's records live in its own
tenant (``AURORA_TENANT``, by default the application's name). Aggregate versions are
create-only inserts, notification ids a gap-free sequence assigned in the same atomic
batch, tracking records move forward by compare-and-set, and subscriptions are woken
by the store's change feed: all of it atomic in the engine, so several processes may
write one LMDB store. See docs/eventsourcing.md.
"""

from __future__ import annotations

try:
    import eventsourcing.persistence  # noqa: F401 - only to give a helpful ImportError
except ImportError as exc:  # pragma: no cover - the extra is installed in our tests
    from .._install import extra_hint

    raise ImportError(
        "aurora_storage.eventsourcing needs the eventsourcing library: "
        + extra_hint("eventsourcing")
    ) from exc

from ._factory import AuroraFactory
from ._recorders import (
    AuroraAggregateRecorder,
    AuroraApplicationRecorder,
    AuroraDatastore,
    AuroraProcessRecorder,
    AuroraRecorder,
    AuroraTrackingRecorder,
)
from ._subscription import AuroraSubscription
from ._view import ViewState

#: The name eventsourcing's own persistence modules give their factory.
Factory = AuroraFactory

__all__ = [
    "AuroraAggregateRecorder",
    "AuroraApplicationRecorder",
    "AuroraDatastore",
    "AuroraFactory",
    "AuroraProcessRecorder",
    "AuroraRecorder",
    "AuroraSubscription",
    "AuroraTrackingRecorder",
    "Factory",
    "ViewState",
]
