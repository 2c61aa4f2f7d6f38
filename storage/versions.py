"""Names of stored model versions: "base", and "round-N" for the adapter trained in round N.

An imported labels source's texts are the external version ``imported:<source>``; a model in someone
else's file (an Arena battle, ...) never gets one of prefloop's own names (``is_reserved``).
"""

from __future__ import annotations

import re

from sqlmodel import Session, select

from storage.models import ModelVersion, VersionKind

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


def latest_adapter(session: Session) -> ModelVersion | None:
    """ "latest": the registered "round-N" adapter with the highest N (None before the first round)."""
    versions = session.exec(select(ModelVersion).where(ModelVersion.kind == VersionKind.adapter)).all()
    numbered = [(round_of(v.name), v) for v in versions if round_of(v.name) is not None]
    return max(numbered, key=lambda item: item[0])[1] if numbered else None


def version_named(session: Session, name: str) -> ModelVersion | None:
    return session.exec(select(ModelVersion).where(ModelVersion.name == name)).first()
