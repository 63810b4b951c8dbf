"""agent_releases: signed agent packages the collector serves, one row per version and platform

Revision ID: 0007
Revises: 0006
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0007'
down_revision = '0006'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'agent_releases',
        sa.Column('version', sa.String(length=40), nullable=False),
        sa.Column('platform', sa.String(length=20), nullable=False),
        sa.Column('file_name', sa.String(length=200), nullable=False),
        sa.Column('size', sa.BigInteger(), nullable=False),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('manifest', sa.LargeBinary(), nullable=False),
        sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('paused_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('paused_reason', sa.Text(), nullable=True),
        sa.PrimaryKeyConstraint('version', 'platform'))


def downgrade() -> None:
    op.drop_table('agent_releases')
