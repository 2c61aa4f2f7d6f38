"""Names of stored model versions: "base", and "round-N" for the adapter trained in round N.

An imported labels source's texts are the external version ``imported:<source>``; a model in someone
else's file (an Arena battle, ...) never gets one of prefloop's own names (``is_reserved``).
"""

from __future__ import annotations

import re

BASE = "base"
IMPORTED_PREFIX = "imported:"
_ROUND_NAME = re.compile(r"^round-(\d+)$")


def version_name(round_number: int) -> str:
    return f"round-{round_number}"


def round_of(name: str) -> int | None:
    """The round number of a version named "round-N", else None."""
    found = _ROUND_NAME.match(name)
    return int(found.group(1)) if found else None


def is_reserved(name: str) -> bool:
    """True for ``base`` and ``round-N``: names only prefloop gives its own versions (an imported file's
    model of that name is stored apart, e.g. Arena's ``imported:base``)."""
    return name == BASE or round_of(name) is not None
