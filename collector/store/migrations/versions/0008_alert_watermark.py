"""alert watermark: the last report whose results the alert engine judged, per point

The engine replays every result received since then, in order, so a violation that arrived together with
its recovery (an agent's backlog) still raises its alert. Points that exist already start at their newest
report: what was stored before this migration was judged by the previous engine.

Revision ID: 0008
Revises: 0007
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0008'
down_revision = '0007'
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.create_index('ix_reports_point_id', ['point_code', 'id'], unique=False)
    with op.batch_alter_table('point_state', schema=None) as batch_op:
        batch_op.add_column(sa.Column('alerts_evaluated_report', sa.BigInteger(), nullable=True))
    op.execute("UPDATE point_state SET alerts_evaluated_report = "
               "(SELECT max(reports.id) FROM reports WHERE reports.point_code = point_state.point_code)")


def downgrade() -> None:
    with op.batch_alter_table('point_state', schema=None) as batch_op:
        batch_op.drop_column('alerts_evaluated_report')
    with op.batch_alter_table('reports', schema=None) as batch_op:
        batch_op.drop_index('ix_reports_point_id')
