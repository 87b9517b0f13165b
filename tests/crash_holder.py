"""A service process that dies mid-message: run by tests/test_crash_recovery.py, then SIGKILLed.

`python -m tests.crash_holder DATABASE_URL` serves the real /wechat endpoint on a free port and
prints `ready PORT`. Its handler takes the user's step lock (dialogs/state.py) and then hangs,
like a photo that takes forever to decode; the test kills the process with SIGKILL while the
message is `processing` and the lock is held. Leases are one second so the test is quick.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import sys

from aiohttp import web

from bot.endpoint import WeChatEndpoint
from dialogs.state import StateStore
from dialogs.types import Message, Reply
from storage.db import Database

TOKEN = "testtoken"
LEASE_SECONDS = 1.0


async def main(url: str) -> None:
    db = Database(url)
    store = StateStore(db, lease_seconds=LEASE_SECONDS)

    async def hang(msg: Message) -> Reply:
        async with store.locked(msg.openid):
            await asyncio.Event().wait()  # never set: the process is killed here
        return Reply("never")

    async def deliver(openid: str, reply: Reply) -> None:
        return None

    endpoint = WeChatEndpoint(token=TOKEN, crypto=None, db=db, handler=hang, deliver_later=deliver,
                              budget_seconds=4.5, clock=lambda: 1700000001.0)
    endpoint.deduper.lease = dt.timedelta(seconds=LEASE_SECONDS)
    app = web.Application()
    app.router.add_post("/wechat", endpoint.post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = runner.addresses[0][1]
    print(f"ready {port}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1]))
