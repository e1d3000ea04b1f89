"""Indexes for two counts: automatic mail sent in the last minute (the circuit breaker, at
every claim) and SLA breaches (/metrics, at every scrape)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004"
down_revision = "0003"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_index("ix_outbox_automatic_sent", "outbox", ["automatic", "sent_at"], unique=False)
    escalations = sa.text("kind = 'sla_escalation'")
    op.create_index(
        "ix_events_sla_escalation",
        "events",
        ["id"],
        unique=False,
        sqlite_where=escalations,
        postgresql_where=escalations,
    )


def downgrade() -> None:
    op.drop_index("ix_events_sla_escalation", table_name="events")
    op.drop_index("ix_outbox_automatic_sent", table_name="outbox")
