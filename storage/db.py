"""Engine and sessions: one URL (``PREFLOOP_DB``); SQLite tuned for many writers, PostgreSQL alike."""

from __future__ import annotations

import fcntl
import os
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from pathlib import Path

from sqlalchemy import Engine, create_engine, event
from sqlmodel import Session

from core.paths import database_url


def make_engine(url: str | None = None) -> Engine:
    url = database_url(url)
    if not url.startswith("sqlite"):
        return create_engine(url, pool_pre_ping=True)
    path = url.split("///", 1)[-1]
    if path and path != ":memory:":
        Path(path).parent.mkdir(parents=True, exist_ok=True)
    # isolation_level=None hands transaction control to the "begin" hook below, so a writer can take
    # SQLite's write lock up front (BEGIN IMMEDIATE) instead of failing to upgrade a read lock later.
    engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False})

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_conn, _record) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn) -> None:
        conn.exec_driver_sql("BEGIN IMMEDIATE" if conn.get_execution_options().get("immediate") else "BEGIN")

    return engine


@contextmanager
def session_scope(engine: Engine, *, write: bool = False) -> Iterator[Session]:
    """One transaction: committed on success, rolled back on any error (nothing half-written).

    ``write=True`` takes SQLite's write lock at BEGIN, for read-then-write work such as assignment.
    """
    bind = engine.execution_options(immediate=True) if write else engine
    turn = _writer_turn(engine) if write else nullcontext()
    with turn, Session(bind, expire_on_commit=False) as session:
        try:
            yield session
            session.commit()
        except BaseException:
            session.rollback()
            raise


def _writer_turn(engine: Engine) -> AbstractContextManager[None]:
    """SQLite file: wait for this write transaction's turn on a lock file beside the database.

    SQLite's own wait for its write lock polls with growing sleeps, so among 32 processes writing at once
    one could wait past the 30 s busy timeout ("database is locked") while others kept winning; ``flock``
    queues the writers of every thread and process in the kernel and hands over as soon as one commits.
    """
    path = engine.url.database if engine.dialect.name == "sqlite" else None
    return _flocked(f"{path}.writer-lock") if path and path != ":memory:" else nullcontext()


@contextmanager
def _flocked(path: str) -> Iterator[None]:
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        fcntl.flock(fd, fcntl.LOCK_EX)  # released by close, or by the kernel if the process dies
        yield
    finally:
        os.close(fd)


def migrate(engine: Engine, revision: str = "head") -> None:
    """Create or upgrade the schema through Alembic (an existing database upgrades without loss)."""
    from alembic import command
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(__file__).parent / "migrations"))
    with engine.begin() as conn:
        cfg.attributes["connection"] = conn
        command.upgrade(cfg, revision)
