"""The edge reads what the router needs in its dedupe round trip (Deduper.prefetch)."""
from __future__ import annotations

from bot.dedupe import Deduper
from dialogs.types import Message, Reply
from tests.dialog_fixtures import add_candidate, bind_on_page, make_router
from tests.transcript import router_sender, run


async def test_prefetch_runs_for_owned_claims_only(db):
    seen: list[list[str]] = []

    async def prefetch(conn, openids):
        seen.append(list(openids))
        return [f"ctx-{o}" for o in openids]

    d = Deduper(db, prefetch=prefetch)
    first = await d.claim("o1:100", "o1", wait_seconds=0.1)
    assert first.owner and first.prefetched == "ctx-o1"
    await d.finish("o1:100", Reply("hi"), "o1")
    again = await d.claim("o1:100", "o1", wait_seconds=0.1)
    assert not again.owner and again.prefetched is None
    assert seen == [["o1"]]


async def test_router_prefetch_sees_binding_and_flow(db):
    await add_candidate(db, verified=True)
    router = make_router(db)
    send = router_sender(router, "o_pref_0000000000000000001")
    await bind_on_page(db, "o_pref_0000000000000000001")
    await run(send, "> 修改联系方式\n< 请选择要修改的项目")
    async with db.engine.connect() as conn:
        [(user, conv)] = await router.prefetch(conn, ["o_pref_0000000000000000001"])
    assert user.bound and conv.flow == "contact" and conv.step == "which"
    # A message carrying the prefetched state is handled like one that reads it itself.
    reply = await router.handle(Message(openid=user.openid, kind="text", text="取消", prefetched=(user, conv)))
    assert "已取消「修改联系方式」" in reply.text
