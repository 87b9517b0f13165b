"""Queries: graduation-fee orders, feedback, read marks of 站内消息.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-23
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0004'
down_revision: Union[str, Sequence[str], None] = '0003'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('orders',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('order_number', sa.String(length=32), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=False),
    sa.Column('admission_number', sa.String(length=12), nullable=False),
    sa.Column('major_code', sa.String(length=8), nullable=False),
    sa.Column('item', sa.String(length=32), nullable=False),
    sa.Column('amount', sa.Numeric(precision=10, scale=2), nullable=False),
    sa.Column('status', sa.String(length=8), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('paid_at', sa.DateTime(), nullable=True),
    sa.Column('closed_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint("status != 'paid' or paid_at is not null", name=op.f('ck_orders_paid_time')),
    sa.CheckConstraint("status in ('pending', 'paid', 'closed')", name=op.f('ck_orders_status')),
    sa.CheckConstraint('amount >= 0', name=op.f('ck_orders_amount')),
    sa.ForeignKeyConstraint(['admission_number'], ['admission_numbers.number'], name=op.f('fk_orders_admission_number_admission_numbers')),
    sa.ForeignKeyConstraint(['candidate_id'], ['candidates.id'], name=op.f('fk_orders_candidate_id_candidates'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['major_code'], ['majors.code'], name=op.f('fk_orders_major_code_majors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_orders')),
    sa.UniqueConstraint('order_number', name=op.f('uq_orders_order_number'))
    )
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_orders_candidate_id'), ['candidate_id'], unique=False)

    op.create_table('feedback',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=True),
    sa.Column('title', sa.String(length=64), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('contact_name', sa.String(length=32), nullable=True),
    sa.Column('contact_phone', sa.String(length=20), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('handled', sa.Boolean(), nullable=False),
    sa.Column('handled_at', sa.DateTime(), nullable=True),
    sa.CheckConstraint('length(body) > 0', name=op.f('ck_feedback_body')),
    sa.CheckConstraint('length(title) > 0', name=op.f('ck_feedback_title')),
    sa.ForeignKeyConstraint(['candidate_id'], ['candidates.id'], name=op.f('fk_feedback_candidate_id_candidates'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_feedback'))
    )
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.create_index('ix_feedback_handled_created_at', ['handled', 'created_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_feedback_openid'), ['openid'], unique=False)

    op.create_table('notice_reads',
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('notice_id', sa.Integer(), nullable=False),
    sa.Column('read_at', sa.DateTime(), nullable=False),
    sa.ForeignKeyConstraint(['notice_id'], ['notices.id'], name=op.f('fk_notice_reads_notice_id_notices'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('openid', 'notice_id', name=op.f('pk_notice_reads'))
    )


def downgrade() -> None:
    op.drop_table('notice_reads')
    with op.batch_alter_table('feedback', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_feedback_openid'))
        batch_op.drop_index('ix_feedback_handled_created_at')

    op.drop_table('feedback')
    with op.batch_alter_table('orders', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_orders_candidate_id'))

    op.drop_table('orders')
