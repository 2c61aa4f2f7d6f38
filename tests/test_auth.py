"""Annotator tokens: stored hashed and salted, checked against the right person only."""

from __future__ import annotations

import pytest
from sqlmodel import select

from core.errors import PrefloopError
from storage.auth import authenticate, create_annotator, hash_token, new_token, verify_token
from storage.db import session_scope
from storage.models import Annotator, AnnotatorKind, Role


def test_hash_is_salted_and_verifies_only_the_same_token():
    token = new_token()
    first, second = hash_token(token), hash_token(token)
    assert first != second and token not in first  # a new salt each time, never the clear token
    assert verify_token(token, first) and verify_token(token, second)
    assert not verify_token(token + "x", first)
    assert not verify_token(token, "garbage") and not verify_token(token, "pbkdf2$1$2$3$00$00")
    assert len({new_token() for _ in range(100)}) == 100 and len(token) >= 40


def test_create_and_authenticate(any_engine):
    with session_scope(any_engine) as s:
        alice = create_annotator(s, "alice")
        boss = create_annotator(s, "boss", Role.admin)
        s.add(Annotator(name="imported:x.csv", kind=AnnotatorKind.imported))  # no token: cannot sign in
    with session_scope(any_engine) as s:
        stored = s.exec(select(Annotator).where(Annotator.name == "alice")).one()
        assert stored.token_hash.startswith("scrypt$") and alice not in stored.token_hash
        assert authenticate(s, "alice", alice).name == "alice"
        assert authenticate(s, "boss", boss).role == Role.admin
        assert authenticate(s, "alice", boss) is None  # someone else's token
        assert authenticate(s, "nobody", alice) is None
        assert authenticate(s, "imported:x.csv", "") is None


@pytest.mark.parametrize(
    ("name", "message"),
    [("alice", "already exists"), ("  ", "empty"), ("imported:mine", "reserved")],
)
def test_bad_names_are_refused(engine, name, message):
    with session_scope(engine) as s:
        create_annotator(s, "alice")
    with pytest.raises(PrefloopError, match=message), session_scope(engine) as s:
        create_annotator(s, name)
