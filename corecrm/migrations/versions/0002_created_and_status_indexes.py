"""indexes for funnels by capture date and for the capture queue

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("leads") as batch:
        batch.create_index("ix_leads_workspace_created", ["workspace", "created_at"])
    with op.batch_alter_table("captures") as batch:
        batch.create_index("ix_captures_workspace_status", ["workspace", "status"])


def downgrade() -> None:
    with op.batch_alter_table("captures") as batch:
        batch.drop_index("ix_captures_workspace_status")
    with op.batch_alter_table("leads") as batch:
        batch.drop_index("ix_leads_workspace_created")
