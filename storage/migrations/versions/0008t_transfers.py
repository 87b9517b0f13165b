"""省际转考: 外省转入 records (transfers_in, transfer_in_courses); applications.details (本市转出's form).

Revision ID: 0008t
Revises: 0005
Create Date: 2026-11-29
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0008t'
down_revision: Union[str, Sequence[str], None] = '0006s'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table('transfers_in',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('reference', sa.String(length=32), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=False),
    sa.Column('admission_number', sa.String(length=12), nullable=False),
    sa.Column('from_province', sa.String(length=16), nullable=False),
    sa.Column('from_admission_number', sa.String(length=32), nullable=False),
    sa.Column('major_code', sa.String(length=8), nullable=False),
    sa.Column('applied_on', sa.Date(), nullable=True),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('confirm_at', sa.DateTime(), nullable=True),
    sa.Column('confirm_ends_at', sa.DateTime(), nullable=True),
    sa.Column('confirm_place', sa.String(length=255), nullable=True),
    sa.Column('confirm_bring', sa.Text(), nullable=True),
    sa.Column('status_changes', sa.Integer(), nullable=False),
    sa.Column('status_changed_at', sa.DateTime(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("status in ('pending', 'reviewing', 'confirming', 'completed', 'rejected')", name=op.f('ck_transfers_in_status')),
    sa.CheckConstraint('confirm_ends_at is null or confirm_at is null or confirm_ends_at > confirm_at', name=op.f('ck_transfers_in_confirm_order')),
    sa.ForeignKeyConstraint(['admission_number'], ['admission_numbers.number'], name=op.f('fk_transfers_in_admission_number_admission_numbers')),
    sa.ForeignKeyConstraint(['candidate_id'], ['candidates.id'], name=op.f('fk_transfers_in_candidate_id_candidates'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['major_code'], ['majors.code'], name=op.f('fk_transfers_in_major_code_majors')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transfers_in')),
    sa.UniqueConstraint('reference', name=op.f('uq_transfers_in_reference'))
    )
    with op.batch_alter_table('transfers_in', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transfers_in_candidate_id'), ['candidate_id'], unique=False)
        batch_op.create_index('ix_transfers_in_status_confirm', ['status', 'confirm_at'], unique=False)

    op.create_table('transfer_in_courses',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('transfer_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('course_code', sa.String(length=5), nullable=False),
    sa.Column('source_name', sa.String(length=128), nullable=True),
    sa.Column('score', sa.Numeric(precision=5, scale=1), nullable=True),
    sa.Column('grade', sa.String(length=8), nullable=True),
    sa.Column('passed_on', sa.Date(), nullable=True),
    sa.Column('accepted', sa.Boolean(), nullable=True),
    sa.Column('note', sa.String(length=255), nullable=True),
    sa.CheckConstraint('score is null or (score >= 0 and score <= 100)', name=op.f('ck_transfer_in_courses_score_range')),
    sa.ForeignKeyConstraint(['course_code'], ['courses.code'], name=op.f('fk_transfer_in_courses_course_code_courses')),
    sa.ForeignKeyConstraint(['transfer_id'], ['transfers_in.id'], name=op.f('fk_transfer_in_courses_transfer_id_transfers_in'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_transfer_in_courses')),
    sa.UniqueConstraint('transfer_id', 'course_code', name='uq_transfer_in_courses_transfer_course')
    )
    with op.batch_alter_table('transfer_in_courses', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_transfer_in_courses_transfer_id'), ['transfer_id'], unique=False)

    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.add_column(sa.Column('details', sa.JSON(), nullable=True))



def downgrade() -> None:
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_column('details')

    with op.batch_alter_table('transfer_in_courses', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_transfer_in_courses_transfer_id'))

    op.drop_table('transfer_in_courses')
    with op.batch_alter_table('transfers_in', schema=None) as batch_op:
        batch_op.drop_index('ix_transfers_in_status_confirm')
        batch_op.drop_index(batch_op.f('ix_transfers_in_candidate_id'))

    op.drop_table('transfers_in')
