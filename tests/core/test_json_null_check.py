"""The json codec's check for non-finite floats (which orjson writes as null): it looks
at the value only when the output holds b"null", so every value with a NaN or an
infinity must still be refused, and every other value stored - whatever text, None or
"null" strings surround it."""

from __future__ import annotations

import math
from typing import Any

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from aurora_storage.codecs import UnreadableValueError, get_codec

PURE = settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])

scalars = (
    st.none()
    | st.booleans()
    | st.integers(-(2**60), 2**60)
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=6)
    | st.sampled_from(["null", "nul", "n", "l", "u", "xnullx", ""])
)
values = st.recursive(
    scalars,
    lambda inner: (
        st.lists(inner, max_size=4)
        | st.dictionaries(st.text(max_size=4) | st.just("null"), inner, max_size=4)
    ),
    max_leaves=12,
)


def _nonfinite(v: Any) -> bool:
    if isinstance(v, float):
        return not math.isfinite(v)
    if isinstance(v, dict):
        return any(_nonfinite(x) for x in v.values())
    if isinstance(v, list):
        return any(_nonfinite(x) for x in v)
    return False


@PURE
@given(values)
def test_encode_refuses_exactly_the_values_with_non_finite_floats(value: Any) -> None:
    codec = get_codec("json")
    for encode in (codec.encode, codec.encode_held or codec.encode):
        try:
            data = encode(value)
        except UnreadableValueError:
            assert _nonfinite(value)
        else:
            assert not _nonfinite(value)
            assert codec.decode(data) == value
