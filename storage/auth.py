"""Annotator tokens: shown once at creation, stored only as a salted scrypt hash, checked in constant time;
sign-in attempts throttled per name and per client, with a cap on the hash checks running at once."""

from __future__ import annotations

import bisect
import functools
import hashlib
import hmac
import itertools
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from sqlmodel import Session, select

from core.errors import PrefloopError
from storage.models import Annotator, AnnotatorKind, Role
from storage.versions import IMPORTED_PREFIX

# scrypt cost: ~16 MiB and a few tens of ms per check, cheap for a sign-in, slow for guessing
_N, _R, _P = 2**14, 8, 1
# The app's token-free operator on a loopback-only server; no token or imported judge may take the name.
LOCAL_USER = "local"


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
    if name.startswith(IMPORTED_PREFIX):
        raise PrefloopError(
            f"annotator name {name!r}: '{IMPORTED_PREFIX}' is reserved for imported labels; pick another"
        )
    if name == LOCAL_USER:
        raise PrefloopError(f"annotator name {name!r} is reserved for the app's local operator; pick another")
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


def _named(session: Session, name: str) -> Annotator:
    annotator = session.exec(select(Annotator).where(Annotator.name == name)).first()
    if annotator is None:
        raise PrefloopError(f"no annotator named {name!r}: see `prefloop annotators list`")
    return annotator


def end_sessions(session: Session, annotator_id: int) -> None:
    """Sign the annotator out everywhere: every session cookie and open page signed in before now."""
    annotator = session.get(Annotator, annotator_id)
    if annotator is not None:
        annotator.session_epoch += 1
        session.add(annotator)
        session.flush()


def revoke(session: Session, name: str) -> Annotator:
    """Remove the annotator's token and end their sessions; their judgments stay."""
    annotator = _named(session, name)
    annotator.token_hash = None
    end_sessions(session, annotator.id)
    return annotator


def rotate(session: Session, name: str) -> str:
    """A new token for the annotator (returned once); the old one and their sessions stop working."""
    annotator = _named(session, name)
    if annotator.kind != AnnotatorKind.human:
        raise PrefloopError(f"annotator {name!r} is {annotator.kind.value}; only people sign in with tokens")
    token = new_token()
    annotator.token_hash = hash_token(token)
    end_sessions(session, annotator.id)
    return token


def set_role(session: Session, name: str, role: Role) -> Annotator:
    """Change the role; open pages pick it up on their next interaction."""
    annotator = _named(session, name)
    annotator.role = Role(role)
    session.add(annotator)
    session.flush()
    return annotator


# Sign-in throttle. After three free tries (typos), each failure doubles the wait for that name and for
# that client, from 1 s up to 5 min: 50 guesses take over three hours instead of seconds. A success
# clears the name's and the client's count.
# At most two scrypt checks run at once, so guessers cannot take every core from the server's other
# sessions. Waiting checks start by fewest recent failures of their name and client, then first come,
# first served (a plain semaphore let eight looping guessers re-take it ahead of a real user forever),
# and one that cannot start within a few seconds is answered "busy".
FREE_ATTEMPTS = 3
BACKOFF_FIRST_S = 1.0
BACKOFF_MAX_S = 300.0
CONCURRENT_CHECKS = 2
CHECK_QUEUE_S = 5.0


class _FairSlots:
    """A counting semaphore whose waiters are served by priority (lower first), then in arrival order."""

    def __init__(self, slots: int) -> None:
        self._free = slots
        self._waiting: list[tuple[int, int]] = []  # (priority, arrival number), kept sorted
        self._arrivals = itertools.count()
        self._cond = threading.Condition()

    def acquire(self, timeout: float, priority: int = 0) -> bool:
        with self._cond:
            me = (priority, next(self._arrivals))
            bisect.insort(self._waiting, me)
            ready = self._cond.wait_for(lambda: self._waiting[0] == me and self._free > 0, timeout)
            if ready:
                self._free -= 1
            self._waiting.remove(me)
            self._cond.notify_all()
            return ready

    def release(self) -> None:
        with self._cond:
            self._free += 1
            self._cond.notify_all()


@dataclass
class _Failures:
    count: int = 0
    until: float = 0.0  # monotonic time before which another attempt is refused unchecked


@dataclass
class SignInGate:
    """Per-name and per-client back-off, and the cap on concurrent hash checks, for one server process."""

    clock: Callable[[], float] = time.monotonic
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _checks: _FairSlots = field(default_factory=lambda: _FairSlots(CONCURRENT_CHECKS))
    _failures: dict[str, _Failures] = field(default_factory=dict)

    def wait_s(self, name: str, client: str) -> float:
        """Seconds until this name and this client may try again (0: now)."""
        now = self.clock()
        with self._lock:
            keys = (f"name:{name}", f"client:{client}")
            return max([self._failures[k].until - now for k in keys if k in self._failures] + [0.0])

    def _failure_count(self, name: str, client: str) -> int:
        with self._lock:
            keys = (f"name:{name}", f"client:{client}")
            return max([self._failures[k].count for k in keys if k in self._failures] + [0])

    def _record(self, name: str, client: str, ok: bool) -> None:
        now = self.clock()
        with self._lock:
            for key in (f"name:{name}", f"client:{client}"):
                if ok:
                    self._failures.pop(key, None)
                    continue
                entry = self._failures.setdefault(key, _Failures())
                entry.count += 1
                if entry.count >= FREE_ATTEMPTS:
                    wait = BACKOFF_FIRST_S * 2 ** (entry.count - FREE_ATTEMPTS)
                    entry.until = now + min(wait, BACKOFF_MAX_S)

    def check(self, session: Session, name: str, token: str, client: str) -> Annotator | SignInRefused:
        """``authenticate`` behind the back-off and the cap: the annotator, or why there is none."""
        wait = self.wait_s(name, client)
        if wait > 0:
            return SignInRefused(f"Too many failed sign-ins; try again in {wait:.0f} s.", wait)
        if not self._checks.acquire(CHECK_QUEUE_S, priority=self._failure_count(name, client)):
            return SignInRefused("The server is busy checking other sign-ins; try again in a moment.", 1.0)
        try:
            annotator = authenticate(session, name, token)
        finally:
            self._checks.release()
        self._record(name, client, annotator is not None)
        if annotator is None:
            return SignInRefused(
                "Unknown name or wrong token. Ask the operator for a token (`prefloop annotators add NAME`)."
            )
        return annotator


@dataclass(frozen=True)
class SignInRefused:
    message: str  # one line for the sign-in page
    retry_after_s: float = 0.0
