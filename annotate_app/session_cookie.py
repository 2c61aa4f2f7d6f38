"""Stay signed in across reloads: a cookie ``id.expiry.mac`` signed with a server secret.

Streamlit keeps state per browser connection, so a reload (or opening a page by URL) starts a new
session. The cookie lets it resume without the token. The MAC also covers the annotator's stored token
hash, so issuing a new token (or removing it) invalidates every cookie of that annotator.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import time
from pathlib import Path

COOKIE_NAME = "prefloop_session"
LIFETIME_S = 12 * 3600  # one working day


def load_secret(path: Path) -> bytes:
    """The app's signing key, created once (0600) on first use; racing starters agree on one file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        secret = path.read_bytes()
        if len(secret) >= 32:
            return secret
        # a concurrent starter has created the file but not written it yet
        time.sleep(0.05)
        return path.read_bytes()
    secret = secrets.token_bytes(32)
    with os.fdopen(fd, "wb") as f:
        f.write(secret)
    return secret


def _mac(secret: bytes, annotator_id: int, expires: int, token_hash: str) -> str:
    message = f"{annotator_id}.{expires}.{token_hash}".encode()
    return hmac.new(secret, message, hashlib.sha256).hexdigest()


def sign(secret: bytes, annotator_id: int, token_hash: str, now: float | None = None) -> str:
    expires = int((now or time.time()) + LIFETIME_S)
    return f"{annotator_id}.{expires}.{_mac(secret, annotator_id, expires, token_hash)}"


def annotator_id_of(value: str) -> int | None:
    """The annotator id a cookie claims (unverified: look up their token hash, then ``verify``)."""
    head = value.split(".", 1)[0]
    return int(head) if head.isdigit() else None


def verify(secret: bytes, value: str, token_hash: str | None, now: float | None = None) -> bool:
    try:
        annotator_id, expires, mac = value.split(".")
        annotator_id_int, expires_int = int(annotator_id), int(expires)
    except ValueError:
        return False
    if not token_hash or expires_int < (now or time.time()):
        return False
    return hmac.compare_digest(mac, _mac(secret, annotator_id_int, expires_int, token_hash))


def set_cookie_script(value: str) -> str:
    return (
        f"<script>document.cookie = '{COOKIE_NAME}={value}; path=/; max-age={LIFETIME_S}; SameSite=Strict';"
        "</script>"
    )


def clear_cookie_script() -> str:
    return f"<script>document.cookie = '{COOKIE_NAME}=; path=/; max-age=0; SameSite=Strict';</script>"
