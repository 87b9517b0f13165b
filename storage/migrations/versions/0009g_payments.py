"""WeChat Pay for graduation-fee orders (the JSAPI prepay, its payer, the paying transaction); one open
论文/毕业/学位 application per major.

Revision ID: 0009g
Revises: 0005
Create Date: 2026-11-29
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0009g'
down_revision: Union[str, Sequence[str], None] = '0008t'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

_OPEN_PER_MAJOR = "kind in ('thesis', 'graduation', 'degree') and status in ('draft', 'submitted', 'approved')"


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prepay_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('prepay_openid', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('prepay_expires_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('transaction_id', sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_orders_transaction_id'), ['transaction_id'])
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.create_index('uq_applications_one_open_per_major', ['candidate_id', 'kind', 'major_code'],
                              unique=True, sqlite_where=sa.text(_OPEN_PER_MAJOR),
                              postgresql_where=sa.text(_OPEN_PER_MAJOR))


def downgrade() -> None:
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_index('uq_applications_one_open_per_major',
                            sqlite_where=sa.text(_OPEN_PER_MAJOR), postgresql_where=sa.text(_OPEN_PER_MAJOR))
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_orders_transaction_id'), type_='unique')
        batch_op.drop_column('transaction_id')
        batch_op.drop_column('prepay_expires_at')
        batch_op.drop_column('prepay_openid')
        batch_op.drop_column('prepay_id')
