"""agent release chunks: a release's file is kept in the database, so every collector on it serves it

The file used to be kept only in the data dir of the collector it was added on (``<data_dir>/releases/<sha256>``);
with several collectors on one database the others answered its download with an error. Its bytes now live
here in fixed-size chunks, written with the release row. Files already in a data dir are imported by the
collector's first start (collector/store/releasefiles.py ``import_files``), not by this migration: a migration
knows the database only, and with several collectors each host's data dir may hold files the others lack.

Revision ID: 0010
Revises: 0009
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0010'
down_revision = '0009'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'agent_release_chunks',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('idx', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('sha256', 'idx'))


def downgrade() -> None:
    op.drop_table('agent_release_chunks')
