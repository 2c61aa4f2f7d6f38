"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-22 04:01:47.495956
"""

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "annotator",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("role", sa.Enum("annotator", "admin", name="role"), nullable=False),
        sa.Column("kind", sa.Enum("human", "simulated", "imported", name="annotatorkind"), nullable=False),
        sa.Column("token_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("annotator", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_annotator_name"), ["name"], unique=True)

    op.create_table(
        "prompt",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("normalized_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("raw", sa.Text(), nullable=True),
        sa.Column("template", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("system", sa.Text(), nullable=True),
        sa.Column("source", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("split", sa.Enum("train", "eval", name="split"), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("prompt", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_prompt_normalized_hash"), ["normalized_hash"], unique=True)
        batch_op.create_index(batch_op.f("ix_prompt_split"), ["split"], unique=False)

    op.create_table(
        "round",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "training_run",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("config", sa.JSON(), nullable=False),
        sa.Column("data_hash", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("metrics", sa.JSON(), nullable=False),
        sa.Column("status", sa.Enum("running", "completed", "failed", name="runstatus"), nullable=False),
        sa.Column("adapter_path", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("error", sa.Text(), nullable=True),
        sa.Column("started_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("finished_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["round.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    op.create_table(
        "model_version",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("name", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("kind", sa.Enum("base", "adapter", "external", name="versionkind"), nullable=False),
        sa.Column("base_model", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("adapter_path", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("parent_id", sa.Integer(), nullable=True),
        sa.Column("training_run_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["parent_id"],
            ["model_version.id"],
        ),
        sa.ForeignKeyConstraint(
            ["training_run_id"],
            ["training_run.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_model_version_name"), ["name"], unique=True)

    op.create_table(
        "candidate",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("model_version_id", sa.Integer(), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("text_hash", sqlmodel.sql.sqltypes.AutoString(length=64), nullable=False),
        sa.Column("sampling", sa.JSON(), nullable=False),
        sa.Column("seed", sa.Integer(), nullable=True),
        sa.Column("backend", sqlmodel.sql.sqltypes.AutoString(), nullable=False),
        sa.Column("finish_reason", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["model_version_id"],
            ["model_version.id"],
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id"],
            ["prompt.id"],
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["round.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("prompt_id", "model_version_id", "text_hash"),
    )
    with op.batch_alter_table("candidate", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_candidate_model_version_id"), ["model_version_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_candidate_prompt_id"), ["prompt_id"], unique=False)

    op.create_table(
        "comparison",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("prompt_id", sa.Integer(), nullable=False),
        sa.Column("candidate_a_id", sa.Integer(), nullable=False),
        sa.Column("candidate_b_id", sa.Integer(), nullable=False),
        sa.Column("purpose", sa.Enum("train", "eval", name="purpose"), nullable=False),
        sa.Column("round_id", sa.Integer(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["candidate_a_id"],
            ["candidate.id"],
        ),
        sa.ForeignKeyConstraint(
            ["candidate_b_id"],
            ["candidate.id"],
        ),
        sa.ForeignKeyConstraint(
            ["prompt_id"],
            ["prompt.id"],
        ),
        sa.ForeignKeyConstraint(
            ["round_id"],
            ["round.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
        sa.UniqueConstraint("candidate_a_id", "candidate_b_id", "purpose"),
    )
    with op.batch_alter_table("comparison", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_comparison_prompt_id"), ["prompt_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_comparison_purpose"), ["purpose"], unique=False)
        batch_op.create_index(batch_op.f("ix_comparison_round_id"), ["round_id"], unique=False)

    op.create_table(
        "judgment",
        sa.Column("id", sa.Integer(), nullable=False),
        sa.Column("comparison_id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("choice", sa.Enum("a", "b", "tie", "both_bad", "skip", name="choice"), nullable=False),
        sa.Column("left", sqlmodel.sql.sqltypes.AutoString(length=1), nullable=True),
        sa.Column("ms_to_decide", sa.Integer(), nullable=True),
        sa.Column("note", sqlmodel.sql.sqltypes.AutoString(), nullable=True),
        sa.Column("created_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.Column("superseded_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
        sa.ForeignKeyConstraint(
            ["annotator_id"],
            ["annotator.id"],
        ),
        sa.ForeignKeyConstraint(
            ["comparison_id"],
            ["comparison.id"],
        ),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("judgment", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_judgment_annotator_id"), ["annotator_id"], unique=False)
        batch_op.create_index(batch_op.f("ix_judgment_comparison_id"), ["comparison_id"], unique=False)
        batch_op.create_index(
            "ix_judgment_current", ["comparison_id", "annotator_id", "superseded_at"], unique=False
        )

    op.create_table(
        "lease",
        sa.Column("comparison_id", sa.Integer(), nullable=False),
        sa.Column("annotator_id", sa.Integer(), nullable=False),
        sa.Column("expires_at", sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
        sa.ForeignKeyConstraint(
            ["annotator_id"],
            ["annotator.id"],
        ),
        sa.ForeignKeyConstraint(
            ["comparison_id"],
            ["comparison.id"],
        ),
        sa.PrimaryKeyConstraint("comparison_id", "annotator_id"),
    )
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_lease_expires_at"), ["expires_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("lease", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_lease_expires_at"))

    op.drop_table("lease")
    with op.batch_alter_table("judgment", schema=None) as batch_op:
        batch_op.drop_index("ix_judgment_current")
        batch_op.drop_index(batch_op.f("ix_judgment_comparison_id"))
        batch_op.drop_index(batch_op.f("ix_judgment_annotator_id"))

    op.drop_table("judgment")
    with op.batch_alter_table("comparison", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_comparison_round_id"))
        batch_op.drop_index(batch_op.f("ix_comparison_purpose"))
        batch_op.drop_index(batch_op.f("ix_comparison_prompt_id"))

    op.drop_table("comparison")
    with op.batch_alter_table("candidate", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_candidate_prompt_id"))
        batch_op.drop_index(batch_op.f("ix_candidate_model_version_id"))

    op.drop_table("candidate")
    with op.batch_alter_table("model_version", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_model_version_name"))

    op.drop_table("model_version")
    op.drop_table("training_run")
    op.drop_table("round")
    with op.batch_alter_table("prompt", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_prompt_split"))
        batch_op.drop_index(batch_op.f("ix_prompt_normalized_hash"))

    op.drop_table("prompt")
    with op.batch_alter_table("annotator", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_annotator_name"))

    op.drop_table("annotator")
