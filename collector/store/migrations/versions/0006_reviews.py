"""reviews: a reviewer's scoring of a point for a period, its entries, attachments and content-addressed blobs

Revision ID: 0006
Revises: 0005
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

BIG_ID = sa.BigInteger().with_variant(sa.Integer(), 'sqlite')

revision = '0006'
down_revision = '0005'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'reviews',
        sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
        sa.Column('point_code', sa.String(length=40), nullable=False),
        sa.Column('region_path', sa.String(length=400), nullable=False),
        sa.Column('profile', sa.String(length=60), nullable=False),
        sa.Column('period_start', sa.DateTime(timezone=True), nullable=False),
        sa.Column('period_end', sa.DateTime(timezone=True), nullable=False),
        sa.Column('given_from', sa.String(length=40), nullable=False),
        sa.Column('given_to', sa.String(length=40), nullable=False),
        sa.Column('state', sa.String(length=12), nullable=False),
        sa.Column('reviewer', sa.String(length=120), nullable=False),
        sa.Column('identity', sa.JSON(), nullable=False),
        sa.Column('opened_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('submitted_at', sa.DateTime(timezone=True), nullable=True),
        sa.Column('replaces_id', BIG_ID, nullable=True),
        sa.Column('version', sa.Integer(), nullable=False),
        sa.Column('frozen', sa.JSON(), nullable=False),
        sa.Column('bundle_sha256', sa.String(length=64), nullable=True),
        sa.Column('manifest_sha256', sa.String(length=64), nullable=True),
        sa.PrimaryKeyConstraint('id'))
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.create_index('ix_reviews_point_period', ['point_code', 'period_start', 'period_end'], unique=False)
        batch_op.create_index('ix_reviews_region_path', ['region_path'], unique=False)
    op.create_table(
        'review_items',
        sa.Column('review_id', BIG_ID, nullable=False),
        sa.Column('item_id', sa.String(length=80), nullable=False),
        sa.Column('score', sa.Float(), nullable=False),
        sa.Column('note', sa.Text(), nullable=False),
        sa.Column('veto', sa.Boolean(), nullable=False),
        sa.Column('reason', sa.Text(), nullable=True),
        sa.Column('updated_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('review_id', 'item_id'))
    op.create_table(
        'review_attachments',
        sa.Column('id', BIG_ID, autoincrement=True, nullable=False),
        sa.Column('review_id', BIG_ID, nullable=False),
        sa.Column('item_id', sa.String(length=80), nullable=True),
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('media_type', sa.String(length=40), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('name', sa.String(length=200), nullable=False),
        sa.Column('added_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('review_id', 'sha256', name='uq_review_attachment'))
    with op.batch_alter_table('review_attachments', schema=None) as batch_op:
        batch_op.create_index('ix_review_attachments_review_id', ['review_id'], unique=False)
    op.create_table(
        'blobs',
        sa.Column('sha256', sa.String(length=64), nullable=False),
        sa.Column('media_type', sa.String(length=40), nullable=False),
        sa.Column('size', sa.Integer(), nullable=False),
        sa.Column('data', sa.LargeBinary(), nullable=False),
        sa.Column('created_at', sa.DateTime(timezone=True), nullable=False),
        sa.PrimaryKeyConstraint('sha256'))


def downgrade() -> None:
    op.drop_table('blobs')
    with op.batch_alter_table('review_attachments', schema=None) as batch_op:
        batch_op.drop_index('ix_review_attachments_review_id')
    op.drop_table('review_attachments')
    op.drop_table('review_items')
    with op.batch_alter_table('reviews', schema=None) as batch_op:
        batch_op.drop_index('ix_reviews_region_path')
        batch_op.drop_index('ix_reviews_point_period')
    op.drop_table('reviews')
