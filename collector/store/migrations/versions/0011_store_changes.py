"""store what changed: reports name the keys they carried, results rows are written on change

Ingest used to write a results row for every result of every report. It now writes one only when a key
(check, target) says something new, or its heartbeat is due (collector/ingest/changes.py); a report names the
set of keys it carried (``keysets``, ``keyset_members``, ``reports.keyset_id``), so every sample is still
known: a key's status in a report is that of its latest results row at or before the report. ``result_tails``
holds what each key's last row said, the state the next sample is compared with. ``reports.verdict`` keeps
the status of the report's agent.policy verdict on the report itself (it used to be read from the verdict's
own results row, which is now written only when the verdict changes); it is filled here for reports already
stored. Reports stored before this migration keep NULL keysets: their results rows are their samples.
``result_hourly`` is unchanged (its model moved to historymodels.py).

Revision ID: 0011
Revises: 0010
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0011'
down_revision = '0010'
branch_labels = None
depends_on = None

BigId = sa.BigInteger().with_variant(sa.Integer(), "sqlite")


def upgrade() -> None:
    op.create_table(
        'keysets',
        sa.Column('id', BigId, autoincrement=True, nullable=False),
        sa.Column('point_code', sa.String(length=40), nullable=False),
        sa.Column('digest', sa.String(length=64), nullable=False),
        sa.PrimaryKeyConstraint('id'),
        sa.UniqueConstraint('point_code', 'digest', name='uq_keysets_point_digest'))
    op.create_table(
        'keyset_members',
        sa.Column('keyset_id', BigId, nullable=False),
        sa.Column('check', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=200), nullable=False),
        sa.ForeignKeyConstraint(['keyset_id'], ['keysets.id'], ondelete='CASCADE'),
        sa.PrimaryKeyConstraint('keyset_id', 'check', 'target'))
    op.create_table(
        'result_tails',
        sa.Column('point_code', sa.String(length=40), nullable=False),
        sa.Column('check', sa.String(length=64), nullable=False),
        sa.Column('target', sa.String(length=200), nullable=False),
        sa.Column('status', sa.String(length=8), nullable=False),
        sa.Column('message', sa.Text(), nullable=False),
        sa.Column('value', sa.Float(), nullable=True),
        sa.Column('details', sa.Text(), nullable=False),
        sa.Column('written_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('report_pk', sa.BigInteger(), nullable=False),
        sa.PrimaryKeyConstraint('point_code', 'check', 'target'))
    with op.batch_alter_table('reports') as batch:
        batch.add_column(sa.Column('keyset_id', sa.BigInteger(), nullable=True))
        batch.add_column(sa.Column('verdict', sa.String(length=8), nullable=True))
    bind = op.get_bind()
    source = ("json_extract(r.details, '$.source')" if bind.dialect.name == "sqlite"
              else "(r.details::jsonb ->> 'source')")
    bind.execute(sa.text(
        "UPDATE reports SET verdict = (SELECT r.status FROM results r WHERE r.report_pk = reports.id "
        f"AND r.\"check\" = 'agent.policy' AND {source} = 'collector' ORDER BY r.id LIMIT 1)"))


def downgrade() -> None:
    with op.batch_alter_table('reports') as batch:
        batch.drop_column('verdict')
        batch.drop_column('keyset_id')
    op.drop_table('result_tails')
    op.drop_table('keyset_members')
    op.drop_table('keysets')
