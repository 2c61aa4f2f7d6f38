"""model_version.base_model: the tiny title model's old catalog name ``embedded`` becomes ``tiny``

``embedded`` named the weights in ``models/embedded`` until SmolLM2 became the default base and the 4 M
model was renamed ``tiny``; an older database's versions name it so, and the name no longer resolves.
Data only: the same weights under their current name. Downgrade restores the old name.

Revision ID: 0006
Revises: 0005
"""

import sqlalchemy as sa
from alembic import op

revision = "0006"
down_revision = "0005"
branch_labels = None
depends_on = None

OLD, NEW = "embedded", "tiny"


def _rename(old: str, new: str) -> None:
    op.execute(
        sa.text("UPDATE model_version SET base_model = :new WHERE base_model = :old").bindparams(
            old=old, new=new
        )
    )


def upgrade() -> None:
    _rename(OLD, NEW)


def downgrade() -> None:
    _rename(NEW, OLD)
