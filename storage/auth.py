"""Annotator tokens: shown once at creation, stored only as a salted scrypt hash, checked in constant time."""

from __future__ import annotations

import functools
import hashlib
import hmac
import secrets

from sqlmodel import Session, select

from core.errors import PrefloopError
from storage.models import Annotator, AnnotatorKind, Role

# scrypt cost: ~16 MiB and a few tens of ms per check, cheap for a sign-in, slow for guessing
_N, _R, _P = 2**14, 8, 1


def new_token() -> str:
    """A fresh random token (32 bytes, URL-safe)."""
    return secrets.token_urlsafe(32)


def _scrypt(token: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(token.encode("utf-8"), salt=salt, n=n, r=r, p=p, maxmem=64 * 1024 * 1024, dklen=32)


def hash_token(token: str) -> str:
    """``scrypt$n$r$p$salt$hash`` (hex), with a new random salt each time."""
    salt = secrets.token_bytes(16)
    return f"scrypt${_N}${_R}${_P}${salt.hex()}${_scrypt(token, salt, _N, _R, _P).hex()}"


def verify_token(token: str, stored: str) -> bool:
    try:
        scheme, n, r, p, salt, digest = stored.split("$")
        if scheme != "scrypt":
            return False
        computed = _scrypt(token, bytes.fromhex(salt), int(n), int(r), int(p))
        return hmac.compare_digest(computed, bytes.fromhex(digest))
    except ValueError:
        return False


@functools.cache
def _dummy_hash() -> str:
    """Checked against for unknown names, so they cost the same as a wrong token."""
    return hash_token(new_token())


def create_annotator(
    session: Session, name: str, role: Role = Role.annotator, kind: AnnotatorKind = AnnotatorKind.human
) -> str:
    """Add an annotator and return their token (the only time it exists in clear text)."""
    name = name.strip()
    if not name:
        raise PrefloopError("annotator name is empty; pick a name")
    if name.startswith("imported:"):
        raise PrefloopError(
            f"annotator name {name!r}: 'imported:' is reserved for imported labels; pick another"
        )
    if session.exec(select(Annotator).where(Annotator.name == name)).first() is not None:
        raise PrefloopError(f"annotator {name!r} already exists; pick another name")
    token = new_token()
    session.add(Annotator(name=name, role=Role(role), kind=AnnotatorKind(kind), token_hash=hash_token(token)))
    session.flush()
    return token


def authenticate(session: Session, name: str, token: str) -> Annotator | None:
    """The annotator if ``token`` is theirs, else None; the same work whether or not the name exists."""
    annotator = session.exec(select(Annotator).where(Annotator.name == name)).first()
    if annotator is None or not annotator.token_hash:
        verify_token(token, _dummy_hash())
        return None
    return annotator if verify_token(token, annotator.token_hash) else None
