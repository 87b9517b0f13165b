"""Applications (申请免考, 成绩补登 ...) with items, evidences, photos, events; the 凭证类型 list.

The evidence types are seeded here; the office adds more later (storage.applications.add_evidence_type).

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-23
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0005'
down_revision: Union[str, Sequence[str], None] = '0004'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None

# (code, name, position, for_exemption, needs_companion, companion)
EVIDENCE_TYPES = [
    ("pets2_certificate", "PETS-2 合格证书", 10, True, False, False),
    ("pets2_report", "PETS-2 成绩通知单", 20, True, False, False),
    ("pets3_certificate", "PETS-3 合格证书", 30, True, False, False),
    ("pets3_report", "PETS-3 成绩通知单", 40, True, False, False),
    ("cet4", "大学英语四级（CET-4）成绩单", 50, True, False, False),
    ("cet6", "大学英语六级（CET-6）成绩单", 60, True, False, False),
    # A diploma alone does not prove itself: it needs the 备案表 or the 认证报告 next to it.
    ("diploma", "毕业证书", 70, True, True, False),
    ("chsi_record", "教育部学历证书电子注册备案表", 80, True, False, True),
    ("cdgdc_report", "中国高等教育学历认证报告", 90, True, False, True),
    # The photo of an old result in 成绩补登 (理论与实践); not offered in 申请免考.
    ("score_proof", "成绩证明材料", 100, False, False, False),
]


def upgrade() -> None:
    op.create_table('evidence_types',
    sa.Column('code', sa.String(length=32), nullable=False),
    sa.Column('name', sa.String(length=64), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('active', sa.Boolean(), nullable=False),
    sa.Column('for_exemption', sa.Boolean(), nullable=False),
    sa.Column('needs_companion', sa.Boolean(), nullable=False),
    sa.Column('companion', sa.Boolean(), nullable=False),
    sa.PrimaryKeyConstraint('code', name=op.f('pk_evidence_types')),
    sa.UniqueConstraint('name', name=op.f('uq_evidence_types_name'))
    )
    op.create_table('photos',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('sha256', sa.String(length=64), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('width', sa.Integer(), nullable=False),
    sa.Column('height', sa.Integer(), nullable=False),
    sa.Column('content_type', sa.String(length=16), nullable=False),
    sa.Column('storage_key', sa.String(length=128), nullable=False),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.CheckConstraint("content_type in ('image/jpeg', 'image/png')", name=op.f('ck_photos_content_type')),
    sa.CheckConstraint('size > 0 and width > 0 and height > 0', name=op.f('ck_photos_positive')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_photos')),
    sa.UniqueConstraint('sha256', name=op.f('uq_photos_sha256'))
    )
    op.create_table('applications',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('kind', sa.String(length=16), nullable=False),
    sa.Column('status', sa.String(length=12), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=False),
    sa.Column('openid', sa.String(length=64), nullable=False),
    sa.Column('admission_number', sa.String(length=12), nullable=False),
    sa.Column('major_code', sa.String(length=8), nullable=True),
    sa.Column('window_id', sa.Integer(), nullable=True),
    sa.Column('created_at', sa.DateTime(), nullable=False),
    sa.Column('updated_at', sa.DateTime(), nullable=False),
    sa.Column('submitted_at', sa.DateTime(), nullable=True),
    sa.Column('decided_at', sa.DateTime(), nullable=True),
    sa.Column('decided_by', sa.String(length=64), nullable=True),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.Column('decisions', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.CheckConstraint("kind in ('exemption', 'backfill', 'thesis', 'graduation', 'degree', 'transfer_out')", name=op.f('ck_applications_kind')),
    sa.CheckConstraint("status in ('draft', 'submitted', 'approved', 'rejected')", name=op.f('ck_applications_status')),
    sa.ForeignKeyConstraint(['admission_number'], ['admission_numbers.number'], name=op.f('fk_applications_admission_number_admission_numbers')),
    sa.ForeignKeyConstraint(['candidate_id'], ['candidates.id'], name=op.f('fk_applications_candidate_id_candidates'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['major_code'], ['majors.code'], name=op.f('fk_applications_major_code_majors')),
    sa.ForeignKeyConstraint(['window_id'], ['business_windows.id'], name=op.f('fk_applications_window_id_business_windows'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_applications'))
    )
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.create_index('ix_applications_candidate_kind', ['candidate_id', 'kind'], unique=False)
        batch_op.create_index('ix_applications_status_submitted', ['status', 'submitted_at'], unique=False)
        batch_op.create_index('uq_applications_one_draft', ['candidate_id', 'kind'], unique=True, sqlite_where=sa.text("status = 'draft'"), postgresql_where=sa.text("status = 'draft'"))

    op.create_table('application_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('action', sa.String(length=12), nullable=False),
    sa.Column('from_status', sa.String(length=12), nullable=True),
    sa.Column('to_status', sa.String(length=12), nullable=False),
    sa.Column('actor', sa.String(length=64), nullable=False),
    sa.Column('reason', sa.Text(), nullable=True),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], name=op.f('fk_application_events_application_id_applications'), ondelete='CASCADE'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_application_events'))
    )
    with op.batch_alter_table('application_events', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_application_events_application_id'), ['application_id'], unique=False)

    op.create_table('application_items',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('application_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('course_code', sa.String(length=5), nullable=False),
    sa.Column('entry_kind', sa.String(length=10), nullable=True),
    sa.Column('passed_month', sa.String(length=7), nullable=True),
    sa.Column('score', sa.Numeric(precision=5, scale=1), nullable=True),
    sa.Column('grade', sa.String(length=8), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.Column('from_province', sa.String(length=16), nullable=True),
    sa.Column('from_admission_number', sa.String(length=32), nullable=True),
    sa.CheckConstraint("entry_kind is null or entry_kind in ('theory', 'exemption', 'transfer')", name=op.f('ck_application_items_entry_kind')),
    sa.CheckConstraint("passed_month is null or passed_month like '____-__'", name=op.f('ck_application_items_passed_month')),
    sa.CheckConstraint('score is null or (score >= 0 and score <= 100)', name=op.f('ck_application_items_score_range')),
    sa.ForeignKeyConstraint(['application_id'], ['applications.id'], name=op.f('fk_application_items_application_id_applications'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['course_code'], ['courses.code'], name=op.f('fk_application_items_course_code_courses')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_application_items')),
    sa.UniqueConstraint('application_id', 'course_code', name='uq_application_items_application_course')
    )
    with op.batch_alter_table('application_items', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_application_items_application_id'), ['application_id'], unique=False)

    op.create_table('application_evidences',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('item_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.Column('type_code', sa.String(length=32), nullable=False),
    sa.Column('number', sa.String(length=64), nullable=True),
    sa.Column('obtained_month', sa.String(length=7), nullable=True),
    sa.Column('province', sa.String(length=16), nullable=True),
    sa.Column('note', sa.Text(), nullable=True),
    sa.CheckConstraint("obtained_month is null or obtained_month like '____-__'", name=op.f('ck_application_evidences_obtained_month')),
    sa.ForeignKeyConstraint(['item_id'], ['application_items.id'], name=op.f('fk_application_evidences_item_id_application_items'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['type_code'], ['evidence_types.code'], name=op.f('fk_application_evidences_type_code_evidence_types')),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_application_evidences'))
    )
    with op.batch_alter_table('application_evidences', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_application_evidences_item_id'), ['item_id'], unique=False)

    op.create_table('evidence_photos',
    sa.Column('evidence_id', sa.Integer(), nullable=False),
    sa.Column('photo_id', sa.Integer(), nullable=False),
    sa.Column('position', sa.Integer(), nullable=False),
    sa.ForeignKeyConstraint(['evidence_id'], ['application_evidences.id'], name=op.f('fk_evidence_photos_evidence_id_application_evidences'), ondelete='CASCADE'),
    sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_evidence_photos_photo_id_photos')),
    sa.PrimaryKeyConstraint('evidence_id', 'photo_id', name=op.f('pk_evidence_photos'))
    )
    with op.batch_alter_table('evidence_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_evidence_photos_photo_id'), ['photo_id'], unique=False)

    evidence_types = sa.table(
        'evidence_types', sa.column('code', sa.String), sa.column('name', sa.String), sa.column('position', sa.Integer),
        sa.column('active', sa.Boolean), sa.column('for_exemption', sa.Boolean),
        sa.column('needs_companion', sa.Boolean), sa.column('companion', sa.Boolean),
    )
    op.bulk_insert(evidence_types, [
        {"code": c, "name": n, "position": p, "active": True, "for_exemption": fe, "needs_companion": nc,
         "companion": co}
        for c, n, p, fe, nc, co in EVIDENCE_TYPES
    ])


def downgrade() -> None:
    with op.batch_alter_table('evidence_photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_evidence_photos_photo_id'))

    op.drop_table('evidence_photos')
    with op.batch_alter_table('application_evidences', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_application_evidences_item_id'))

    op.drop_table('application_evidences')
    with op.batch_alter_table('application_items', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_application_items_application_id'))

    op.drop_table('application_items')
    with op.batch_alter_table('application_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_application_events_application_id'))

    op.drop_table('application_events')
    with op.batch_alter_table('applications', schema=None) as batch_op:
        batch_op.drop_index('uq_applications_one_draft', sqlite_where=sa.text("status = 'draft'"), postgresql_where=sa.text("status = 'draft'"))
        batch_op.drop_index('ix_applications_status_submitted')
        batch_op.drop_index('ix_applications_candidate_kind')

    op.drop_table('applications')
    op.drop_table('photos')
    op.drop_table('evidence_types')
