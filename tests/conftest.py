"""Suite-wide test settings.

Hypothesis' per-example deadline (200 ms by default) is a timed assertion: on a loaded
machine a correct example can take longer, and the test would fail for speed, not for
behaviour. Speed is measured in ``benchmarks/``, never asserted in tests, so the suite's
profile has no deadline.
"""

from __future__ import annotations

from hypothesis import settings

settings.register_profile("aurora", deadline=None)
settings.load_profile("aurora")
