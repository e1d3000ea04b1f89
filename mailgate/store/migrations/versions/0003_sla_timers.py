"""SLA due times and lifecycle timers on tickets; pauses, fired escalations, round robin

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-26
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_TIMESTAMPS = (
    "status_since",
    "first_agent_response_at",
    "last_agent_reply_at",
    "last_customer_message_at",
    "resolved_at",
    "first_response_due",
    "next_response_due",
    "resolution_due",
    "sla_due_at",
    "next_timer_at",
)


def upgrade() -> None:
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.add_column(sa.Column("sla_policy", sa.String(length=100), nullable=True))
        for name in _TIMESTAMPS:
            batch_op.add_column(sa.Column(name, sa.DateTime(timezone=True), nullable=True))
        batch_op.create_index(batch_op.f("ix_tickets_sla_due_at"), ["sla_due_at"], unique=False)
        batch_op.create_index(batch_op.f("ix_tickets_next_timer_at"), ["next_timer_at"], unique=False)
    op.create_table(
        "ticket_pauses",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False),
        sa.Column("ended_at", sa.DateTime(timezone=True), nullable=True),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("id"),
    )
    with op.batch_alter_table("ticket_pauses", schema=None) as batch_op:
        batch_op.create_index(batch_op.f("ix_ticket_pauses_ticket_id"), ["ticket_id"], unique=False)
    op.create_table(
        "fired_escalations",
        sa.Column("ticket_id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("target", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.ForeignKeyConstraint(["ticket_id"], ["tickets.id"]),
        sa.PrimaryKeyConstraint("ticket_id", "target", "kind"),
    )
    op.create_table(
        "round_robin",
        sa.Column("queue", sa.String(length=100), nullable=False),
        sa.Column("last_agent", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("queue"),
    )
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.create_index("ix_outbox_recipient_kind_created", ["recipient", "kind", "created_at"], unique=False)


def downgrade() -> None:
    with op.batch_alter_table("outbox", schema=None) as batch_op:
        batch_op.drop_index("ix_outbox_recipient_kind_created")
    op.drop_table("round_robin")
    op.drop_table("fired_escalations")
    with op.batch_alter_table("ticket_pauses", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_ticket_pauses_ticket_id"))
    op.drop_table("ticket_pauses")
    with op.batch_alter_table("tickets", schema=None) as batch_op:
        batch_op.drop_index(batch_op.f("ix_tickets_next_timer_at"))
        batch_op.drop_index(batch_op.f("ix_tickets_sla_due_at"))
        for name in reversed(_TIMESTAMPS):
            batch_op.drop_column(name)
        batch_op.drop_column("sla_policy")
