"""The sign-in cookie: valid only unchanged, unexpired, and for the annotator's current token."""

from __future__ import annotations

import os
import stat

from annotate_app import session_cookie as sc

SECRET = b"s" * 32


def test_a_fresh_cookie_verifies_and_names_its_annotator():
    value = sc.sign(SECRET, 7, "scrypt$hash-of-token", now=1_000)
    assert sc.annotator_id_of(value) == 7
    assert sc.verify(SECRET, value, "scrypt$hash-of-token", now=1_000 + sc.LIFETIME_S - 1)


def test_expired_tampered_foreign_or_revoked_cookies_fail():
    value = sc.sign(SECRET, 7, "h1", now=1_000)
    assert not sc.verify(SECRET, value, "h1", now=1_001 + sc.LIFETIME_S), "expired"
    assert not sc.verify(SECRET, value.replace("7.", "8.", 1), "h1", now=1_000), "another annotator's id"
    assert not sc.verify(b"x" * 32, value, "h1", now=1_000), "signed by another server"
    assert not sc.verify(SECRET, value, "h2", now=1_000), "a new token invalidates old cookies"
    assert not sc.verify(SECRET, value, None, now=1_000), "no token, no cookie"
    assert not sc.verify(SECRET, "garbage", "h1") and sc.annotator_id_of("garbage") is None


def test_secret_is_created_once_and_private(tmp_path):
    path = tmp_path / "var" / "app-secret"
    first = sc.load_secret(path)
    assert len(first) == 32 and sc.load_secret(path) == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
