"""``AuroraDatastore`` can be built directly on a repository one opened oneself, as its
docstring says: ``originator_id_type`` defaults to ``"uuid"`` and the layout to the one
the factory picks for the repository's codec, so records written through either read
back alike."""

from __future__ import annotations

import os
from pathlib import Path
from uuid import uuid4

import pytest
from eventsourcing.persistence import StoredEvent

import aurora_storage
from aurora_storage.eventsourcing import (
    AuroraApplicationRecorder,
    AuroraDatastore,
    AuroraFactory,
)
from aurora_storage.eventsourcing._records import value_layout


@pytest.mark.parametrize("codec", ["raw", "json", "msgpack"])
def test_a_datastore_needs_only_the_repository_and_the_tenant(
    codec: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    url = f"lmdb://{tmp_path}/s?codec={codec}&sync=false"
    oid = uuid4()
    with aurora_storage.open(url) as repo:
        store = AuroraDatastore(repo, "Accounts")
        assert store.originator_id_type == "uuid"
        assert store.layout is value_layout(repo.codec)
        recorder = AuroraApplicationRecorder(store)
        assert recorder.insert_events([StoredEvent(oid, 1, "Opened", b"{}")]) == [1]
        [event] = recorder.select_events(oid)
        assert event.originator_id == oid
        assert event.state == b"{}"
    # The factory's recorders read what the hand-built one wrote.
    monkeypatch.delenv("AURORA_TENANT", raising=False)
    factory = AuroraFactory({"AURORA_URL": url, "AURORA_TENANT": "Accounts"})
    try:
        [event] = factory.application_recorder().select_events(oid)
        assert event.topic == "Opened"
        assert factory.datastore.layout is value_layout(factory.datastore.repository.codec)
    finally:
        factory.close()
    assert "construct one directly" in (AuroraDatastore.__doc__ or "")
    assert os.path.exists(f"{tmp_path}/s")
