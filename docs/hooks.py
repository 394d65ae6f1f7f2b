"""MkDocs hook: show on the site why a code block is not run by the docs check.

The docs check (conftest.py at the repository root) skips a block preceded by
``<!-- skip: next "reason" -->`` (or the blocks between ``<!-- skip: start "reason" -->``
and ``<!-- skip: end -->``). An HTML comment is invisible on a rendered page, so this
hook puts the reason in front of the block as a visible note.
"""

from __future__ import annotations

import re
from typing import Any

# The directives Sybil's SkipParser reads; the reason is required (tests check it).
_SKIP = re.compile(
    r'^(?P<indent>[ \t]*)<!--\s*skip:\s*(?P<kind>next|start)\s+"(?P<reason>[^"]+)"\s*-->[ \t]*$',
    re.MULTILINE,
)


def _note(match: re.Match[str]) -> str:
    indent, reason = match.group("indent"), match.group("reason")
    what = "The next block is" if match.group("kind") == "next" else "The blocks below are"
    return f"{indent}*{what} not run by the docs check: {reason}.*\n"


def on_page_markdown(markdown: str, **_: Any) -> str:
    """Replace each skip directive by a visible note giving its reason."""
    return _SKIP.sub(_note, markdown)
