"""A service process killed between a dialog step's commit and the stored reply: run by
tests/test_crash_recovery.py, then SIGKILLed.

`python -m tests.crash_applier DATABASE_URL [warm]` serves the real /wechat endpoint with the real router
(and docs/dialogs.md's example flow, started by "情况说明") on a free port and prints `ready PORT`.
Its dedupe store hangs before writing the reply of a message that changed state and prints
`applied <reply>` first: the step is committed, the reply not stored, the message row still
`processing` (with `warm`, the warm path of docs/delivery.md: no row at all). The test kills the process there. Leases are one second so the test is quick.
"""
from __future__ import annotations

import asyncio
import datetime as dt
import json
import sys

from aiohttp import web

from bot.endpoint import WeChatEndpoint
from dialogs import example, menu
from dialogs.types import Reply
from storage.db import Database
from tests.dialog_fixtures import make_router

TOKEN = "testtoken"
LEASE_SECONDS = 1.0


async def main(url: str, warm: bool = False) -> None:
    db = Database(url)
    router = make_router(db)
    router.add_flow(example.EXAMPLE)
    menu.KEYWORDS.setdefault("情况说明", "flow:explain")

    async def deliver(openid: str, reply: Reply) -> None:
        return None

    endpoint = WeChatEndpoint(token=TOKEN, crypto=None, db=db, handler=router.handle, deliver_later=deliver,
                              budget_seconds=4.5, prefetch=router.prefetch, clock=lambda: 1700000001.0,
                              cached=router.cached if warm else None, views=router.views() if warm else None)
    endpoint.deduper.lease = dt.timedelta(seconds=LEASE_SECONDS)
    finish = endpoint.deduper.finish

    async def hang_before_storing(key: str, reply: Reply, openid: str | None = None, *, durable: bool = True) -> None:
        if not durable:
            return await finish(key, reply, openid, durable=durable)
        print("applied " + json.dumps(reply.text, ensure_ascii=False), flush=True)
        await asyncio.Event().wait()  # never set: the process is killed here

    endpoint.deduper.finish = hang_before_storing
    app = web.Application()
    app.router.add_post("/wechat", endpoint.post)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    print(f"ready {runner.addresses[0][1]}", flush=True)
    await asyncio.Event().wait()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], warm=sys.argv[2:] == ["warm"]))
