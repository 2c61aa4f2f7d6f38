from sqlalchemy import inspect, text

from storage.db import make_engine, migrate, session_scope
from storage.models import Prompt, Split, normalize_text, text_hash


def test_migrate_creates_every_table_and_is_idempotent(any_engine):
    migrate(any_engine)  # a second upgrade is a no-op
    tables = set(inspect(any_engine).get_table_names())
    expected = {"prompt", "model_version", "round", "candidate", "comparison", "judgment", "annotator"}
    assert expected | {"training_run", "lease", "alembic_version"} <= tables


def test_failed_transaction_leaves_nothing(any_engine):
    def add(session, text_):
        session.add(Prompt(text=text_, normalized_hash=text_hash(normalize_text(text_)), split=Split.train))

    try:
        with session_scope(any_engine) as s:
            add(s, "one")
            s.flush()
            add(s, "ONE ")  # same normalised text: unique violation
            s.flush()
    except Exception:
        pass
    with session_scope(any_engine) as s:
        assert s.exec(text("select count(*) from prompt")).one()[0] == 0


def test_sqlite_runs_in_wal_mode(engine):
    with engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30000


def test_prefloop_db_env_selects_the_database(tmp_path, monkeypatch):
    url = f"sqlite:///{tmp_path / 'env.db'}"
    monkeypatch.setenv("PREFLOOP_DB", url)
    eng = make_engine()
    assert str(eng.url) == url
