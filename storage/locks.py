"""One writer at a time for work that must not run twice at once (a training round).

A lock file in the database's work folder, held with ``flock``: the kernel releases it when the holder
exits in any way (SIGKILL included), so a dead holder's lock is taken over by the next run and a live
one is never broken. The file says who holds it (pid, host, start time, what). On PostgreSQL, whose
clients may run on several machines (each with its own work folder), a session advisory lock on the
same name is held as well.
"""

from __future__ import annotations

import fcntl
import hashlib
import json
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from sqlalchemy import Engine, text

from core.errors import PrefloopError
from storage.models import utcnow


@dataclass
class Lock:
    """A held lock: ``describe`` records what the holder is doing, for whoever finds it busy."""

    path: Path
    fd: int
    holder: dict[str, str]
    previous: dict[str, str] | None  # what a holder that died without releasing had written

    def describe(self, what: str) -> None:
        self.holder["what"] = what
        _write(self.fd, self.holder)


def _write(fd: int, holder: dict[str, str]) -> None:
    data = json.dumps(holder).encode()
    os.ftruncate(fd, 0)
    os.pwrite(fd, data, 0)
    os.fsync(fd)


def _read(path: Path) -> dict[str, str] | None:
    try:
        found = json.loads(path.read_text(encoding="utf-8") or "null")
    except (OSError, ValueError):
        return None
    return found if isinstance(found, dict) else None


def busy_message(holder: dict[str, str] | None, what: str) -> str:
    if not holder:
        return f"{what} is in progress in another process; wait for it to finish"
    host = "" if holder.get("host") == socket.gethostname() else f" on {holder.get('host')}"
    return (
        f"{holder.get('what') or what} is being trained by pid {holder.get('pid')}{host} since "
        f"{holder.get('since')}; wait for it to finish (a killed holder's lock is freed at once)"
    )


@contextmanager
def exclusive(engine: Engine, path: Path, *, what: str) -> Iterator[Lock]:
    """Hold the lock ``path`` while the block runs; a PrefloopError naming the holder if it is busy."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            raise PrefloopError(busy_message(_read(path), what)) from None
        previous = _read(path)  # left by a holder that was killed: the lock was freed with it
        holder = {
            "pid": str(os.getpid()),
            "host": socket.gethostname(),
            "since": utcnow().isoformat(timespec="seconds"),
            "what": "",
        }
        lock = Lock(path, fd, holder, previous)
        _write(fd, holder)
        with _advisory(engine, path.name, what):
            try:
                yield lock
            finally:
                os.ftruncate(fd, 0)  # released cleanly: nobody holds it
    finally:
        os.close(fd)


@contextmanager
def _advisory(engine: Engine, name: str, what: str) -> Iterator[None]:
    """PostgreSQL: a session advisory lock for the block (held by one connection); a no-op otherwise."""
    if engine.dialect.name != "postgresql":
        yield
        return
    key = int.from_bytes(hashlib.sha256(f"prefloop:{name}".encode()).digest()[:8], "big", signed=True)
    with engine.connect() as conn:
        taken = conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key}).scalar()
        conn.commit()  # a session lock outlives the transaction; an open one would pin a snapshot for hours
        if not taken:
            holder = conn.execute(
                text(
                    "SELECT a.client_addr, a.backend_start FROM pg_locks l JOIN pg_stat_activity a "
                    "ON a.pid = l.pid WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1 "
                    "AND l.classid::bigint = :hi AND l.objid::bigint = :lo"
                ),
                {"hi": (key >> 32) & 0xFFFFFFFF, "lo": key & 0xFFFFFFFF},
            ).first()
            who = (
                f" from {holder[0] or 'a local client'} since {holder[1]:%Y-%m-%d %H:%M:%S}" if holder else ""
            )
            raise PrefloopError(
                f"{what} is in progress in another process{who} (PostgreSQL advisory lock); wait for it"
            )
        try:
            yield
        finally:
            conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
            conn.commit()
