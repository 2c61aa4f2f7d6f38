"""The sign-in cookie: valid only unchanged, unexpired, and for the annotator's current token."""

from __future__ import annotations

import os
import stat
import threading

import pytest

from annotate_app import session_cookie as sc
from core.errors import PrefloopError

SECRET = b"s" * 32


def test_a_fresh_cookie_verifies_and_names_its_annotator():
    value = sc.sign(SECRET, 7, "scrypt$hash-of-token", 0, now=1_000)
    assert sc.annotator_id_of(value) == 7
    assert sc.verify(SECRET, value, "scrypt$hash-of-token", 0, now=1_000 + sc.LIFETIME_S - 1)


def test_expired_tampered_foreign_revoked_or_signed_out_cookies_fail():
    value = sc.sign(SECRET, 7, "h1", 0, now=1_000)
    assert not sc.verify(SECRET, value, "h1", 0, now=1_001 + sc.LIFETIME_S), "expired"
    assert not sc.verify(SECRET, value.replace("7.", "8.", 1), "h1", 0, now=1_000), "another annotator's id"
    assert not sc.verify(b"x" * 32, value, "h1", 0, now=1_000), "signed by another server"
    assert not sc.verify(SECRET, value, "h2", 0, now=1_000), "a new token invalidates old cookies"
    assert not sc.verify(SECRET, value, None, 0, now=1_000), "no token, no cookie"
    assert not sc.verify(SECRET, value, "h1", 1, now=1_000), "a sign-out (epoch bumped) invalidates copies"
    assert not sc.verify(SECRET, "garbage", "h1", 0) and sc.annotator_id_of("garbage") is None


def test_secret_is_created_once_and_private(tmp_path):
    path = tmp_path / "var" / "app-secret"
    first = sc.load_secret(path)
    assert len(first) == 32 and sc.load_secret(path) == first
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600


@pytest.mark.parametrize("content", [b"", b"short"])
def test_an_empty_or_short_secret_is_refused_never_used(tmp_path, content):
    path = tmp_path / "app-secret"
    path.write_bytes(content)
    with pytest.raises(
        PrefloopError, match=f"app-secret: {len(content)} bytes, a signing secret needs at least 32"
    ):
        sc.load_secret(path)


def test_racing_starters_agree_on_one_whole_secret(tmp_path):
    path = tmp_path / "var" / "app-secret"
    start, seen = threading.Barrier(8), []

    def load() -> None:
        start.wait()
        seen.append(sc.load_secret(path))

    threads = [threading.Thread(target=load) for _ in range(8)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert len(set(seen)) == 1 and len(seen[0]) == 32 and seen[0] == path.read_bytes()
    assert [p.name for p in path.parent.iterdir()] == ["app-secret"], "no aside file left behind"
