"""agent release stage pauses: the collector's automatic pause holds one rollout stage, not the version

The collector used to pause a version for every stage when one stage failed, and one point's own reports
could tip a stage of one. Its pause now holds the stage (this table); an admin's pause stays on the release
rows (every stage). A pause already on the release rows stays as it is until it is resumed. Versions held
under another text of the same numbers ("0.2") are renamed to the canonical one ("0.2.0", agent/versions.py),
the text agents now ask for; one whose canonical text is already held is left as it is.

Revision ID: 0009
Revises: 0008
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = '0009'
down_revision = '0008'
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        'agent_release_stage_pauses',
        sa.Column('version', sa.String(length=40), nullable=False),
        sa.Column('stage', sa.String(length=420), nullable=False),
        sa.Column('paused_at', sa.DateTime(timezone=True), nullable=False),
        sa.Column('paused_reason', sa.Text(), nullable=False),
        sa.PrimaryKeyConstraint('version', 'stage'))
    from agent.versions import canonical_or_none

    bind = op.get_bind()
    releases = sa.table('agent_releases', sa.column('version', sa.String), sa.column('platform', sa.String))
    rows = bind.execute(sa.select(releases.c.version, releases.c.platform)).all()
    held = {(v, p) for v, p in rows}
    for version, platform in rows:
        better = canonical_or_none(version)
        if better and better != version and (better, platform) not in held:
            bind.execute(releases.update().where(releases.c.version == version, releases.c.platform == platform)
                         .values(version=better))
            held.add((better, platform))


def downgrade() -> None:
    op.drop_table('agent_release_stage_pauses')
