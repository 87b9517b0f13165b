"""Personal data stays out of error messages and logs."""
import pytest
from sqlalchemy.exc import IntegrityError

from storage.models import Candidate

SECRET_ID = "31010119900307001X"


async def test_database_errors_do_not_carry_parameters(db):
    async with db.session() as s, s.begin():
        s.add(Candidate(id_number=SECRET_ID, name="甲", password_hash="scrypt$secret-hash"))
    with pytest.raises(IntegrityError) as e:
        async with db.session() as s, s.begin():
            s.add(Candidate(id_number=SECRET_ID, name="乙", password_hash="scrypt$secret-hash"))
    assert SECRET_ID not in str(e.value) and "secret-hash" not in str(e.value)
