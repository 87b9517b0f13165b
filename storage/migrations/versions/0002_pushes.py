"""Pushes: notices, outbox priority and delivery state, leases, the scheduler's job store.

Existing outbox rows get priority 5 (the server default) so the column can be NOT NULL.

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-23
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0002'
down_revision: Union[str, Sequence[str], None] = '0001'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('apscheduler_jobs',
    sa.Column('id', sa.Unicode(length=191), nullable=False),
    sa.Column('next_run_time', sa.Float(precision=25), nullable=True),
    sa.Column('job_state', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_apscheduler_jobs'))
    )
    with op.batch_alter_table('apscheduler_jobs', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_apscheduler_jobs_next_run_time'), ['next_run_time'], unique=False)

    op.create_table('leases',
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('owner', sa.String(length=64), nullable=False),
    sa.Column('expires_at', sa.DateTime(), nullable=False),
    sa.PrimaryKeyConstraint('name', name=op.f('pk_leases'))
    )
    op.create_table('notices',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('category', sa.String(length=8), nullable=False),
    sa.Column('title', sa.String(length=128), nullable=False),
    sa.Column('body', sa.Text(), nullable=False),
    sa.Column('publish_at', sa.DateTime(), nullable=False),
    sa.Column('audience', sa.String(length=8), nullable=False),
    sa.Column('audience_value', sa.String(length=16), nullable=True),
    sa.Column('push', sa.Boolean(), nullable=False),
    sa.Column('created_by', sa.String(length=64), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('fanned_out_at', sa.DateTime(), nullable=True),
    sa.Column('recipients', sa.Integer(), nullable=False),
    sa.CheckConstraint("audience in ('all', 'major', 'sitting')", name=op.f('ck_notices_audience')),
    sa.CheckConstraint("category in ('站内消息', '新闻通知')", name=op.f('ck_notices_category')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_notices'))
    )
    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.create_index('ix_notices_publish_at', ['publish_at'], unique=False)

    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.add_column(sa.Column('priority', sa.Integer(), server_default='5', nullable=False))
        batch_op.add_column(sa.Column('notice_id', sa.Integer(), nullable=True))
        batch_op.add_column(sa.Column('channel', sa.String(length=10), nullable=True))
        batch_op.add_column(sa.Column('delivery_status', sa.String(length=64), nullable=True))
        batch_op.drop_index(batch_op.f('ix_outbox_status_due'))
        batch_op.create_index(batch_op.f('ix_outbox_notice_id'), ['notice_id'], unique=False)
        batch_op.create_index('ix_outbox_status_priority_due', ['status', 'priority', 'due_at'], unique=False)
        batch_op.create_index(batch_op.f('ix_outbox_wechat_msgid'), ['wechat_msgid'], unique=False)
        batch_op.create_foreign_key(batch_op.f('fk_outbox_notice_id_notices'), 'notices', ['notice_id'], ['id'], ondelete='SET NULL')



def downgrade() -> None:
    with op.batch_alter_table('outbox', schema=None) as batch_op:
        batch_op.drop_constraint(batch_op.f('fk_outbox_notice_id_notices'), type_='foreignkey')
        batch_op.drop_index(batch_op.f('ix_outbox_wechat_msgid'))
        batch_op.drop_index('ix_outbox_status_priority_due')
        batch_op.drop_index(batch_op.f('ix_outbox_notice_id'))
        batch_op.create_index(batch_op.f('ix_outbox_status_due'), ['status', 'due_at'], unique=False)
        batch_op.drop_column('delivery_status')
        batch_op.drop_column('channel')
        batch_op.drop_column('notice_id')
        batch_op.drop_column('priority')

    with op.batch_alter_table('notices', schema=None) as batch_op:
        batch_op.drop_index('ix_notices_publish_at')

    op.drop_table('notices')
    op.drop_table('leases')
    with op.batch_alter_table('apscheduler_jobs', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_apscheduler_jobs_next_run_time'))

    op.drop_table('apscheduler_jobs')
