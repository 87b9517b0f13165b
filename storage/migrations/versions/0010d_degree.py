"""申请学位: the materials each major requires (degree_requirements) and the photos an application
holds outside course evidences (application_photos).

Revision ID: 0010d
Revises: 0009g
Create Date: 2026-11-29
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


# revision identifiers, used by Alembic.
revision: str = '0010d'
down_revision: Union[str, Sequence[str], None] = '0009g'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def upgrade() -> None:
    op.create_table(
        'degree_requirements',
        sa.Column('id', sa.Integer(), nullable=False),
        sa.Column('major_code', sa.String(length=8), nullable=False),
        sa.Column('code', sa.String(length=32), nullable=False),
        sa.Column('name', sa.String(length=64), nullable=False),
        sa.Column('group_name', sa.String(length=32), nullable=True),
        sa.Column('asks_score', sa.Boolean(), nullable=False),
        sa.Column('asks_month', sa.Boolean(), nullable=False),
        sa.Column('asks_province', sa.Boolean(), nullable=False),
        sa.Column('asks_number', sa.Boolean(), nullable=False),
        sa.Column('photo_required', sa.Boolean(), nullable=False),
        sa.Column('min_score', sa.Numeric(precision=6, scale=1), nullable=True),
        sa.Column('note', sa.Text(), nullable=True),
        sa.Column('position', sa.Integer(), nullable=False),
        sa.Column('active', sa.Boolean(), nullable=False),
        sa.ForeignKeyConstraint(['major_code'], ['majors.code'], name=op.f('fk_degree_requirements_major_code_majors')),
        sa.PrimaryKeyConstraint('id', name=op.f('pk_degree_requirements')),
        sa.UniqueConstraint('major_code', 'code', name='uq_degree_requirements_major_code'),
    )
    with op.batch_alter_table('degree_requirements', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_degree_requirements_major_code'), ['major_code'], unique=False)
    op.create_table(
        'application_photos',
        sa.Column('application_id', sa.Integer(), nullable=False),
        sa.Column('photo_id', sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(['application_id'], ['applications.id'],
                                name=op.f('fk_application_photos_application_id_applications'), ondelete='CASCADE'),
        sa.ForeignKeyConstraint(['photo_id'], ['photos.id'], name=op.f('fk_application_photos_photo_id_photos')),
        sa.PrimaryKeyConstraint('application_id', 'photo_id', name=op.f('pk_application_photos')),
    )
    with op.batch_alter_table('application_photos', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_application_photos_photo_id'), ['photo_id'], unique=False)


def downgrade() -> None:
    with op.batch_alter_table('application_photos', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_application_photos_photo_id'))
    op.drop_table('application_photos')
    with op.batch_alter_table('degree_requirements', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_degree_requirements_major_code'))
    op.drop_table('degree_requirements')
