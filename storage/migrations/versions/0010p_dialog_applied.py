"""The message a dialog step last applied (its dedupe key and reply), written with the step's state:
a retry of that message after a crash answers from it instead of applying the step again.

Revision ID: 0010p
Revises: 0010d
Create Date: 2026-11-29
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0010p'
down_revision: Union[str, Sequence[str], None] = '0010d'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('dialog_states', schema=None) as batch_op:
        batch_op.add_column(sa.Column('applied_key', sa.String(length=200), nullable=True))
        batch_op.add_column(sa.Column('applied_reply', sa.JSON(), nullable=True))


def downgrade() -> None:
    with op.batch_alter_table('dialog_states', schema=None) as batch_op:
        batch_op.drop_column('applied_reply')
        batch_op.drop_column('applied_key')
