"""Accounts at rest: ID numbers and mobiles encrypted, a blind index for lookups, the audit log.

- candidates: `id_index` (HMAC of the ID under SECRET_KEY) becomes the unique key; `id_number`,
  `mobile`, `emergency_mobile` are rewritten encrypted (storage/keys.py), so the migration needs
  SECRET_KEY configured when candidates exist.
- sms_codes: the number only as its blind index (`mobile_key`); live codes are dropped (they
  last 5 minutes).
- bind_failures: counted per openid too; old rows were keyed by the former constant key and
  are dropped (they last 15 minutes).
- account_events: the audit trail.

Revision ID: 0006b
Revises: 0005
Create Date: 2026-11-29
"""
from typing import Sequence, Union

from alembic import op
import sqlalchemy as sa


revision: str = '0006b'
down_revision: Union[str, Sequence[str], None] = '0005'
branch_labels: Union[str, Sequence[str], None] = None
depends_on: Union[str, Sequence[str], None] = None


def _encrypt_candidates() -> None:
    from storage import keys

    conn = op.get_bind()
    cand = sa.table('candidates', sa.column('id', sa.Integer), sa.column('id_number', sa.String),
                    sa.column('id_index', sa.String), sa.column('mobile', sa.String),
                    sa.column('emergency_mobile', sa.String))
    rows = conn.execute(sa.select(cand.c.id, cand.c.id_number, cand.c.mobile, cand.c.emergency_mobile)).all()
    if not rows:
        return
    if not keys.configured():
        raise RuntimeError("migration 0006b encrypts candidates' ID numbers: configure SECRET_KEY first")

    def seal(v):
        return None if v is None or v.startswith(keys.PREFIX) else keys.encrypt(v)

    for r in rows:
        plain_id = keys.decrypt(r.id_number)
        conn.execute(cand.update().where(cand.c.id == r.id).values(
            id_number=seal(r.id_number) or r.id_number, id_index=keys.id_index(plain_id),
            mobile=seal(r.mobile), emergency_mobile=seal(r.emergency_mobile),
        ))


def upgrade() -> None:
    with op.batch_alter_table('candidates', schema=None) as batch_op:
        batch_op.add_column(sa.Column('id_index', sa.String(length=64), nullable=True))
        batch_op.alter_column('id_number', type_=sa.String(length=128), existing_nullable=False)
        batch_op.alter_column('mobile', type_=sa.String(length=128), existing_nullable=True)
        batch_op.alter_column('emergency_mobile', type_=sa.String(length=128), existing_nullable=True)
        batch_op.drop_constraint('uq_candidates_id_number', type_='unique')
    _encrypt_candidates()
    with op.batch_alter_table('candidates', schema=None) as batch_op:
        batch_op.alter_column('id_index', existing_type=sa.String(length=64), nullable=False)
        batch_op.create_unique_constraint(batch_op.f('uq_candidates_id_index'), ['id_index'])

    op.execute("DELETE FROM sms_codes")
    with op.batch_alter_table('sms_codes', schema=None) as batch_op:
        batch_op.drop_column('mobile')
        batch_op.add_column(sa.Column('mobile_key', sa.String(length=64), nullable=False))
        batch_op.create_index(batch_op.f('ix_sms_codes_mobile_key'), ['mobile_key'], unique=False)

    op.execute("DELETE FROM bind_failures")
    with op.batch_alter_table('bind_failures', schema=None) as batch_op:
        batch_op.create_index('ix_bind_failures_openid_failed_at', ['openid', 'failed_at'], unique=False)

    op.create_table('account_events',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('at', sa.DateTime(), nullable=False),
    sa.Column('event', sa.String(length=32), nullable=False),
    sa.Column('candidate_id', sa.Integer(), nullable=True),
    sa.Column('subject', sa.String(length=32), nullable=False),
    sa.Column('openid_tag', sa.String(length=16), nullable=False),
    sa.Column('detail', sa.JSON(), nullable=True),
    sa.ForeignKeyConstraint(['candidate_id'], ['candidates.id'], name=op.f('fk_account_events_candidate_id_candidates'), ondelete='SET NULL'),
    sa.PrimaryKeyConstraint('id', name=op.f('pk_account_events'))
    )
    with op.batch_alter_table('account_events', schema=None) as batch_op:
        batch_op.create_index('ix_account_events_at', ['at'], unique=False)
        batch_op.create_index(batch_op.f('ix_account_events_candidate_id'), ['candidate_id'], unique=False)


def downgrade() -> None:
    """Back to plaintext columns (needs SECRET_KEY to decrypt)."""
    from storage import keys

    with op.batch_alter_table('account_events', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_account_events_candidate_id'))
        batch_op.drop_index('ix_account_events_at')
    op.drop_table('account_events')
    with op.batch_alter_table('bind_failures', schema=None) as batch_op:
        batch_op.drop_index('ix_bind_failures_openid_failed_at')
    op.execute("DELETE FROM sms_codes")
    with op.batch_alter_table('sms_codes', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sms_codes_mobile_key'))
        batch_op.drop_column('mobile_key')
        batch_op.add_column(sa.Column('mobile', sa.String(length=20), nullable=False))
    conn = op.get_bind()
    cand = sa.table('candidates', sa.column('id', sa.Integer), sa.column('id_number', sa.String),
                    sa.column('mobile', sa.String), sa.column('emergency_mobile', sa.String))
    for r in conn.execute(sa.select(cand.c.id, cand.c.id_number, cand.c.mobile, cand.c.emergency_mobile)).all():
        conn.execute(cand.update().where(cand.c.id == r.id).values(
            id_number=keys.decrypt(r.id_number),
            mobile=None if r.mobile is None else keys.decrypt(r.mobile),
            emergency_mobile=None if r.emergency_mobile is None else keys.decrypt(r.emergency_mobile)))
    with op.batch_alter_table('candidates', schema=None) as batch_op:
        batch_op.drop_constraint('uq_candidates_id_index', type_='unique')
        batch_op.drop_column('id_index')
        batch_op.alter_column('id_number', type_=sa.String(length=32), existing_nullable=False)
        batch_op.alter_column('mobile', type_=sa.String(length=20), existing_nullable=True)
        batch_op.alter_column('emergency_mobile', type_=sa.String(length=20), existing_nullable=True)
        batch_op.create_unique_constraint('uq_candidates_id_number', ['id_number'])
