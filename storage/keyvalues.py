"""Small JSON values shared by every process (the key_values table): read one, write one."""
from __future__ import annotations

import datetime as dt
from typing import Any, Optional

from storage.db import Database
from storage.models import KeyValue, utcnow


async def get_value(db: Database, key: str) -> Optional[dict[str, Any]]:
    async with db.session() as s:
        row = await s.get(KeyValue, key)
        return row.value if row is not None else None


async def put_value(db: Database, key: str, value: dict[str, Any], *, now: Optional[dt.datetime] = None) -> None:
    """Insert or replace `key` (concurrent writers: the last one wins)."""
    now = now or utcnow()
    stmt = db.insert(KeyValue.__table__).values(key=key, value=value, updated_at=now)
    async with db.session() as s, s.begin():
        await s.execute(stmt.on_conflict_do_update(index_elements=["key"], set_={"value": value, "updated_at": now}))
