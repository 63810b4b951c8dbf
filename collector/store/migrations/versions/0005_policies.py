"""central policy: policy documents, issued digests, points' registered devices

Revision ID: 0005
Revises: 0004
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0005'
down_revision = '0004'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'policy_documents',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('scope', sa.String(length=10), nullable=False),
        sa.Column('key', sa.String(length=400), nullable=False),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('region_path', sa.String(length=400), nullable=False),
        sa.Column('source', sa.Text(), nullable=False),
        sa.Column('body', sa.JSON(), nullable=False),
        sa.Column('diff', sa.JSON(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('created_by', sa.String(length=120), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('scope', 'key', 'version', name='uq_policy_documents_version'),
    )
    op.create_index('ix_policy_documents_key', 'policy_documents', ['scope', 'key'])
    op.create_index('ix_policy_documents_region_path', 'policy_documents', ['region_path'])
    op.create_table(
        'policy_issues',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('point_code', sa.String(length=40), nullable=False),
        sa.Column('digest', sa.String(length=80), nullable=False),
        sa.Column('policy', sa.JSON(), nullable=False),
        sa.Column('issued_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('superseded_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('fetched_at', sa.DateTime(timezone=True), nullable=True),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('point_code', 'digest', name='uq_policy_issues_point_digest'),
    )
    op.create_index('ix_policy_issues_point', 'policy_issues', ['point_code', 'superseded_at'])
    with op.batch_alter_table('points', schema=None) as batch_op:
        batch_op.add_column(sa.Column('devices', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('points', schema=None) as batch_op:
        batch_op.drop_column('devices')
    op.drop_index('ix_policy_issues_point', table_name='policy_issues')
    op.drop_table('policy_issues')
    op.drop_index('ix_policy_documents_region_path', table_name='policy_documents')
    op.drop_index('ix_policy_documents_key', table_name='policy_documents')
    op.drop_table('policy_documents')
