"""An existing database upgrades without loss: rows written at the first schema survive every migration."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import UTC, datetime
from pathlib import Path

import pytest
from alembic.script import ScriptDirectory
from sqlalchemy import Engine, MetaData, select, text
from sqlmodel import Session
from sqlmodel import select as orm_select

import storage
from core.config import load_config
from generation.api import resolve_policy
from models.catalog import TINY_DIR, resolve_named
from storage.db import make_engine, migrate
from storage.exports import preference_pairs
from storage.models import Annotator, Choice, Comparison, Judgment, Prompt, prompt_messages

WHEN = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)

# one row per table, written with the columns of revision 0001 only
ROWS_AT_0001: dict[str, list[dict]] = {
    "annotator": [
        {
            "id": 1,
            "name": "alice",
            "role": "admin",
            "kind": "human",
            "token_hash": "scrypt$x",
            "created_at": WHEN,
        },
        {
            "id": 2,
            "name": "bot",
            "role": "annotator",
            "kind": "simulated",
            "token_hash": None,
            "created_at": WHEN,
        },
    ],
    "prompt": [
        {
            "id": 1,
            "text": "Write a title about cats",
            "normalized_hash": "a" * 64,
            "raw": "cats",
            "template": "youtube-title",
            "system": None,
            "source": "ideas.csv",
            "split": "train",
            "created_at": WHEN,
        }
    ],
    "round": [{"id": 0, "created_at": WHEN}],
    "training_run": [
        {
            "id": 1,
            "round_id": 0,
            "config": {"lr": 0.0005},
            "data_hash": "d" * 64,
            "metrics": [{"loss": 0.69}],
            "status": "completed",
            "adapter_path": "var/adapters/round-1",
            "error": None,
            "started_at": WHEN,
            "finished_at": WHEN,
        }
    ],
    "model_version": [
        {
            "id": 1,
            "name": "base",
            "kind": "base",
            "base_model": "embedded",
            "adapter_path": None,
            "parent_id": None,
            "training_run_id": None,
            "created_at": WHEN,
        },
        {
            "id": 2,
            "name": "round-1",
            "kind": "adapter",
            "base_model": "embedded",
            "adapter_path": "var/adapters/round-1",
            "parent_id": 1,
            "training_run_id": 1,
            "created_at": WHEN,
        },
    ],
    "candidate": [
        {
            "id": i,
            "prompt_id": 1,
            "model_version_id": 1,
            "round_id": 0,
            "text": f"Cats {i}",
            "text_hash": f"{i}" * 64,
            "sampling": {"temperature": 1.0},
            "seed": i,
            "backend": "transformers",
            "finish_reason": "stop",
            "created_at": WHEN,
        }
        for i in (1, 2)
    ],
    "comparison": [
        {
            "id": 1,
            "prompt_id": 1,
            "candidate_a_id": 1,
            "candidate_b_id": 2,
            "purpose": "train",
            "round_id": 0,
            "created_at": WHEN,
        }
    ],
    "judgment": [
        {
            "id": 1,
            "comparison_id": 1,
            "annotator_id": 1,
            "choice": "a",
            "left": "b",
            "ms_to_decide": 1200,
            "note": "old",
            "created_at": WHEN,
            "superseded_at": WHEN,
        },
        {
            "id": 2,
            "comparison_id": 1,
            "annotator_id": 1,
            "choice": "b",
            "left": "a",
            "ms_to_decide": 900,
            "note": None,
            "created_at": WHEN,
            "superseded_at": None,
        },
    ],
    "lease": [{"comparison_id": 1, "annotator_id": 2, "expires_at": WHEN}],
}


def _at_head(table: str, row: dict) -> dict:
    """A revision-0001 row as it reads at head: 0006 renamed the tiny model's old base name."""
    if table == "model_version" and row["base_model"] == "embedded":
        return {**row, "base_model": "tiny"}
    return row


def _comparable(value):
    """Datetimes come back naive from SQLite and aware from PostgreSQL: compare them as UTC wall time."""
    if isinstance(value, datetime):
        return value.astimezone(UTC).replace(tzinfo=None) if value.tzinfo else value
    return value


def head_revision() -> str:
    from alembic.config import Config

    cfg = Config()
    cfg.set_main_option("script_location", str(Path(storage.__file__).parent / "migrations"))
    return ScriptDirectory.from_config(cfg).get_current_head()


@pytest.fixture
def empty_engine(db_url: str) -> Iterator[Engine]:
    """A database with no schema (conftest's ``any_engine`` is at head: upgrading it to 0001 is a no-op)."""
    eng = make_engine(db_url)
    yield eng
    eng.dispose()


def test_upgrade_from_the_first_schema_keeps_every_row(empty_engine):
    migrate(empty_engine, "0001")
    with empty_engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == "0001"
    old = MetaData()
    old.reflect(empty_engine)
    with empty_engine.begin() as conn:
        for table, rows in ROWS_AT_0001.items():
            conn.execute(old.tables[table].insert(), rows)
        if empty_engine.dialect.name == "postgresql":  # explicit ids: move the sequences past them
            for table in ROWS_AT_0001:
                if "id" in old.tables[table].c and table != "round":
                    conn.execute(text(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), 100)"))

    migrate(empty_engine)  # to head, through every migration that exists now

    with empty_engine.connect() as conn:
        assert conn.execute(text("select version_num from alembic_version")).scalar() == head_revision()
        new = MetaData()
        new.reflect(conn)
        for table, rows in ROWS_AT_0001.items():
            stored = [dict(r._mapping) for r in conn.execute(select(new.tables[table]))]
            assert len(stored) == len(rows), table
            primary_key = [c.name for c in new.tables[table].primary_key]
            by_key = {tuple(r[k] for k in primary_key): r for r in stored}
            for row in (_at_head(table, r) for r in rows):
                got = by_key[tuple(row[k] for k in primary_key)]
                assert {k: _comparable(got[k]) for k in row} == {k: _comparable(v) for k, v in row.items()}, (
                    table
                )

    with Session(empty_engine) as session:  # today's models read the old rows, and new code works on them
        prompt = session.exec(orm_select(Prompt)).one()
        assert prompt_messages(prompt) == [{"role": "user", "content": "Write a title about cats"}]
        assert (
            session.exec(orm_select(Annotator).where(Annotator.name == "alice")).one().role.value == "admin"
        )
        # the base it names resolves, and `--set model.base=tiny` is the config that matches it
        base = resolve_policy(session, load_config(overrides=["model.base=tiny"]), "base", create=False)
        assert base.id == 1 and resolve_named(base.base_model) == TINY_DIR
        current = session.exec(orm_select(Judgment).where(Judgment.superseded_at.is_(None))).one()
        assert current.choice == Choice.b
        pairs, dropped = preference_pairs(session)
        assert [(p.chosen, p.rejected) for p in pairs] == [("Cats 2", "Cats 1")] and dropped == {}
        session.add(Prompt(text="a new prompt", normalized_hash="b" * 64, split="eval"))
        session.commit()
        assert session.get(Comparison, 1).round_id == 0
