"""Edge security: nonces of accepted requests, a lease on messages being processed.

Revision ID: 0006s
Revises: 0005
Create Date: 2026-11-29
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0006s'
down_revision: Union[str, Sequence[str], None] = '0007c'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('inbound_nonces',
    sa.Column('key', sa.String(length=96), nullable=False),
    sa.Column('seen_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('key', name=op.f('pk_inbound_nonces'))
    )
    with op.batch_alter_table('inbound_nonces', schema=None) as batch_op:
        batch_op.create_index('ix_inbound_nonces_seen_at', ['seen_at'], unique=False)
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.add_column(sa.Column('lease_until', sa.DateTime(), nullable=True))
    # Records made before this revision kept full reply texts for 48 hours: drop them now.
    op.execute("UPDATE inbound_messages SET reply = NULL WHERE status = 'done'")


def downgrade() -> None:
    with op.batch_alter_table('inbound_messages', schema=None) as batch_op:
        batch_op.drop_column('lease_until')
    with op.batch_alter_table('inbound_nonces', schema=None) as batch_op:
        batch_op.drop_index('ix_inbound_nonces_seen_at')
    op.drop_table('inbound_nonces')
