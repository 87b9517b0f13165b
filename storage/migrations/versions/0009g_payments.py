"""WeChat Pay for graduation-fee orders: the JSAPI prepay, its payer and the paying transaction.

Revision ID: 0009g
Revises: 0005
Create Date: 2026-11-29
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0009g'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.add_column(sa.Column('prepay_id', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('prepay_openid', sa.String(length=64), nullable=True))
        batch_op.add_column(sa.Column('prepay_expires_at', sa.DateTime(), nullable=True))
        batch_op.add_column(sa.Column('transaction_id', sa.String(length=32), nullable=True))
        batch_op.create_unique_constraint(batch_op.f('uq_orders_transaction_id'), ['transaction_id'])


def downgrade() -> None:
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('uq_orders_transaction_id'), type_='unique')
        batch_op.drop_column('transaction_id')
        batch_op.drop_column('prepay_expires_at')
        batch_op.drop_column('prepay_openid')
        batch_op.drop_column('prepay_id')
