"""On NATS too (the shared planner), an append takes the number its batch deletes: the
batch publishes the delete and the numbered record to one subject, in that order."""

from __future__ import annotations

import aurora_storage


def test_an_append_takes_the_number_its_batch_deletes_on_nats(nats_url: str) -> None:
    with aurora_storage.open(nats_url) as repo:
        with repo.batch() as b:
            b.delete("t", ("n", 1))
            slot = b.append("t", "n", "first")
        assert slot.number == 1
        repo.put("t", ("n", 3), "imported")
        with repo.batch() as b:
            b.delete("t", ("n", 3))
            slots = [b.append("t", "n", x) for x in ("a", "b")]
        assert [s.number for s in slots] == [2, 3]
        assert list(repo.items("t")) == [(("n", 1), "first"), (("n", 2), "a"), (("n", 3), "b")]
        assert repo.last_sequence("t", "n") == 3
