"""Stay signed in across reloads: a cookie ``id.expiry.mac`` signed with a server secret.

Streamlit keeps state per browser connection, so a reload (or opening a page by URL) starts a new
session. The cookie lets it resume without the token. The MAC also covers the annotator's stored token
hash and session epoch, so a new token, no token, or a sign-out (which bumps the epoch in the database)
invalidates every cookie of that annotator, copies included.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

from core.errors import PrefloopError

COOKIE_NAME = "prefloop_session"
LIFETIME_S = 12 * 3600  # one working day
# set by signing out on localhost: this browser stays signed out instead of becoming the local user again
LOCAL_DECLINED_COOKIE = "prefloop_local_declined"


MIN_SECRET_BYTES = 32


def load_secret(path: Path) -> bytes:
    """The app's signing key, created once (0600) on first use. It appears whole or not at all (written
    aside, then hard-linked into place), so racing starters agree on one file and none reads it half
    written; a file too short to be a key (emptied, truncated by hand) is refused, never used."""
    path.parent.mkdir(parents=True, exist_ok=True)
    if not path.exists():
        aside = path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}")
        fd = os.open(aside, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        try:
            with os.fdopen(fd, "wb") as f:
                f.write(secrets.token_bytes(MIN_SECRET_BYTES))
                f.flush()
                os.fsync(f.fileno())
            with contextlib.suppress(FileExistsError):  # a concurrent starter linked its own first: use it
                os.link(aside, path)
        finally:
            aside.unlink()
    secret = path.read_bytes()
    if len(secret) < MIN_SECRET_BYTES:
        raise PrefloopError(
            f"{path}: {len(secret)} bytes, a signing secret needs at least {MIN_SECRET_BYTES}; delete the "
            "file and start the app again (it writes a new one; everyone signs in again)"
        )
    return secret


def _mac(secret: bytes, annotator_id: int, expires: int, token_hash: str, epoch: int) -> str:
    message = f"{annotator_id}.{expires}.{token_hash}.{epoch}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, annotator_id: int, token_hash: str, epoch: int, now: float | None = None) -> str:
    expires = int((now or time.time()) + LIFETIME_S)
    return f"{annotator_id}.{expires}.{_mac(secret, annotator_id, expires, token_hash, epoch)}"


def annotator_id_of(value: str) -> int | None:
    """The annotator id a cookie claims (unverified: look up their token hash, then ``verify``)."""
    head = value.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def verify(secret: bytes, value: str, token_hash: str | None, epoch: int, now: float | None = None) -> bool:
    try:
        annotator_id, expires, mac = value.split(".")
        annotator_id_int, expires_int = int(annotator_id), int(expires)
    except ValueError:
        return False
    if not token_hash or expires_int < (now or time.time()):
        return False
    return hmac.compare_digest(mac, _mac(secret, annotator_id_int, expires_int, token_hash, epoch))


def _cookie_script(value: str, max_age: int, name: str = COOKIE_NAME) -> str:
    """The browser sets the cookie itself; ``Secure`` whenever the page came over https (directly or
    through a TLS proxy), so it is never sent back over plain http."""
    return (
        "<script>document.cookie = "
        f"'{name}={value}; path=/; max-age={max_age}; SameSite=Strict'"
        " + (location.protocol === 'https:' ? '; Secure' : '');</script>"
    )


def set_cookie_script(value: str) -> str:
    return _cookie_script(value, LIFETIME_S)


def clear_cookie_script() -> str:
    return _cookie_script("", 0)


def local_declined_script(declined: bool) -> str:
    """Remember (or forget) in this browser that its user signed out of the token-free local user."""
    return (
        _cookie_script("1", LIFETIME_S, LOCAL_DECLINED_COOKIE)
        if declined
        else _cookie_script("", 0, LOCAL_DECLINED_COOKIE)
    )
