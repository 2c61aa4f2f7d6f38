"""Annotator tokens: stored hashed and salted, checked against the right person only."""

from __future__ import annotations

import threading
import time

import pytest
from sqlmodel import select

from core.errors import PrefloopError
from storage import auth
from storage.auth import (
    CHECK_QUEUE_S,
    CONCURRENT_CHECKS,
    FREE_ATTEMPTS,
    SignInGate,
    SignInRefused,
    authenticate,
    create_annotator,
    hash_token,
    new_token,
    verify_token,
)
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


def test_the_local_operators_name_is_reserved(engine):
    reserved = pytest.raises(PrefloopError, match="'local' is reserved for the app's local operator")
    with reserved, session_scope(engine) as s:
        create_annotator(s, "local")


def test_revoke_rotate_and_set_role_through_the_cli(sqlite_url):
    from typer.testing import CliRunner

    from prefloop.cli import app
    from storage.db import make_engine

    def cli(*args: str) -> str:
        result = CliRunner().invoke(app, ["--db", sqlite_url, "annotators", *args], catch_exceptions=False)
        assert result.exit_code == 0, result.output
        return result.stdout

    engine = make_engine(sqlite_url)
    old = cli("add", "alice").strip().splitlines()[-1]
    assert "alice' is now admin" in cli("set-role", "alice", "admin")
    new = cli("rotate", "alice").strip().splitlines()[-1]
    with session_scope(engine) as s:
        assert authenticate(s, "alice", old) is None, "the old token stops working"
        alice = authenticate(s, "alice", new)
        assert alice.role == Role.admin and alice.session_epoch == 1, "rotating ends open sessions"
    assert "revoked 'alice'" in cli("revoke", "alice")
    with session_scope(engine) as s:
        assert authenticate(s, "alice", new) is None
        assert s.exec(select(Annotator).where(Annotator.name == "alice")).one().session_epoch == 2
    with pytest.raises(PrefloopError, match="no annotator named 'bob'"):
        CliRunner().invoke(app, ["--db", sqlite_url, "annotators", "revoke", "bob"], catch_exceptions=False)
    with pytest.raises(PrefloopError, match="role 'boss': expected one of annotator, admin"):
        CliRunner().invoke(
            app, ["--db", sqlite_url, "annotators", "set-role", "alice", "boss"], catch_exceptions=False
        )


class FakeClock:
    def __init__(self) -> None:
        self.now = 1_000.0

    def __call__(self) -> float:
        return self.now


def test_fifty_wrong_tokens_are_refused_unchecked_and_then_slowed_to_hours(engine):
    with session_scope(engine, write=True) as s:
        token = create_annotator(s, "alice")
    clock = FakeClock()
    gate = SignInGate(clock=clock)
    with session_scope(engine) as s:
        burst = [gate.check(s, "alice", f"guess-{i}", "203.0.113.9") for i in range(50)]
    refused_unchecked = [r for r in burst if "Too many failed sign-ins" in getattr(r, "message", "")]
    assert len(refused_unchecked) == 50 - FREE_ATTEMPTS, "only the free attempts reach the hash check"
    # a patient guesser who waits out each back-off: 50 guesses take hours, not seconds
    clock.now, waited = 2_000.0, 0.0
    gate = SignInGate(clock=clock)
    with session_scope(engine) as s:
        for i in range(50):
            wait = gate.wait_s("alice", "203.0.113.9")
            clock.now += wait
            waited += wait
            assert isinstance(gate.check(s, "alice", f"guess-{i}", "203.0.113.9"), SignInRefused)
        assert waited > 3 * 3600
        # another client guessing other names is slowed by its own count, not alice's
        assert gate.wait_s("bob", "198.51.100.7") == 0
        clock.now += gate.wait_s("alice", "203.0.113.9")
        assert gate.check(s, "alice", token, "192.0.2.1").name == "alice", "the real token still works"
        assert gate.wait_s("alice", "198.51.100.7") == 0, "a success clears the name's count"


def test_parallel_guessers_do_not_starve_a_real_user(engine, monkeypatch):
    """Eight guessers on eight names and clients (so back-off alone cannot stop them) keep hashing;
    at most two checks run at once, and the real user still signs in."""
    with session_scope(engine, write=True) as s:
        token = create_annotator(s, "alice")
    gate = SignInGate()
    stop = threading.Event()
    running, peak, lock = [0], [0], threading.Lock()
    real_authenticate = auth.authenticate

    def counted(*args):
        with lock:
            running[0] += 1
            peak[0] = max(peak[0], running[0])
        try:
            return real_authenticate(*args)
        finally:
            with lock:
                running[0] -= 1

    def guess(i: int) -> None:
        with session_scope(engine) as s:
            n = 0
            while not stop.is_set():
                gate.check(s, f"guess-{i}-{n}", "wrong", f"198.51.100.{i}-{n}")
                n += 1

    monkeypatch.setattr(auth, "authenticate", counted)  # the real check, counted
    guessers = [threading.Thread(target=guess, args=(i,)) for i in range(8)]
    for t in guessers:
        t.start()
    time.sleep(0.5)
    started = time.monotonic()
    with session_scope(engine) as s:
        signed_in = gate.check(s, "alice", token, "192.0.2.1")
    took = time.monotonic() - started
    stop.set()
    for t in guessers:
        t.join()
    assert getattr(signed_in, "name", None) == "alice", signed_in
    assert peak[0] <= CONCURRENT_CHECKS
    assert took < CHECK_QUEUE_S, f"{took:.2f} s for the real user's check"


def test_an_arena_judge_named_local_is_refused(engine, tmp_path):
    """Imported as 'local', the judge would become the app's token-free local admin's row."""
    from storage.arena import import_battles
    from storage.models import Judgment
    from testkit.eval_seed import seed_battle_rows, write_battles

    rows = [{**row, "judge": "local"} for row in seed_battle_rows(n=3)]
    with pytest.raises(PrefloopError, match=r"battles.jsonl:1: field judge: 'local' is reserved"):
        import_battles(engine, write_battles(tmp_path / "battles.jsonl", rows))
    with session_scope(engine) as s:
        assert s.exec(select(Annotator).where(Annotator.name == "local")).first() is None
        assert s.exec(select(Judgment)).first() is None
