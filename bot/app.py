"""The aiohttp application: one place that owns every resource from start to stop."""
from __future__ import annotations

import asyncio
import logging
import uuid
from typing import AsyncIterator

import aiohttp
from aiohttp import web

from bot import jobs, metrics
from bot.config import Settings
from bot.crypto import MessageCrypto
from bot.delivery import Deliverer, record_template_finish
from bot.endpoint import WeChatEndpoint
from bot.scheduler import SchedulerOptions, ServiceScheduler, owner_id
from bot.token_store import DatabaseTokenStore, RedisTokenStore
from bot.wechat_client import WeChatClient
from bot.sms import build_gateway as build_sms_gateway
from dialogs.consult import Consultant
from dialogs.faq import FaqService
from dialogs.router import Router
from dialogs.services import Services
from dialogs.types import Reply
from storage.db import Database
from storage.photos import LocalPhotoStore
from storage.models import Outbox

log = logging.getLogger("zikao.app")

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
CLIENT = web.AppKey("wechat_client", WeChatClient)
ENDPOINT = web.AppKey("endpoint", WeChatEndpoint)
SCHEDULER = web.AppKey("scheduler", ServiceScheduler)
SCHEDULER_OPTIONS = web.AppKey("scheduler_options", SchedulerOptions)
REDIS = web.AppKey("redis", object)


def create_app(settings: Settings, *, scheduler: SchedulerOptions | None = None) -> web.Application:
    """The service. `scheduler` tunes or turns off the scheduled jobs (pushes, purges), e.g. in
    tests: SchedulerOptions(enabled=False), or SchedulerOptions(deliver=False) to keep the outbox."""
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[SCHEDULER_OPTIONS] = scheduler or SchedulerOptions()
    app.cleanup_ctx.append(_resources)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    # The endpoint is built at start-up (it needs the database); routes must exist before.
    app.router.add_get("/wechat", _wechat_get)
    app.router.add_post("/wechat", _wechat_post)
    return app


async def _wechat_get(request: web.Request) -> web.Response:
    return await request.app[ENDPOINT].get(request)


async def _wechat_post(request: web.Request) -> web.Response:
    return await request.app[ENDPOINT].post(request)


async def _healthz(request: web.Request) -> web.Response:
    """200 when the database (and Redis, when configured) answer within 2 s, else 503."""
    checks = await metrics.check_health(request.app[DB], request.app.get(REDIS))
    ok = all(v == "ok" for v in checks.values())
    return web.json_response({"ok": ok, **checks}, status=200 if ok else 503)


async def _metrics(request: web.Request) -> web.Response:
    body, content_type = await metrics.render(request.app[DB])
    return web.Response(body=body, headers={"Content-Type": content_type})


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = Database(settings.database_url)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.api_timeout_seconds))
    redis = None
    if settings.redis_url:
        import redis.asyncio as aioredis

        redis = aioredis.from_url(settings.redis_url)
        token_store = RedisTokenStore(redis)
    else:
        token_store = DatabaseTokenStore(db)
    client = WeChatClient(
        session,
        api_base=settings.wechat_api_base,
        app_id=settings.wechat_app_id,
        app_secret=settings.wechat_app_secret,
        token_store=token_store,
        timeout=settings.api_timeout_seconds,
    )
    crypto = MessageCrypto(settings.wechat_token, settings.aes_keys, settings.wechat_app_id) if settings.safe_mode else None
    services = Services(
        sms=build_sms_gateway(settings, session),
        download_media=client.download_media,
        upload_image=lambda data, filename: client.upload_media(
            "image", data, filename, "image/png" if filename.lower().endswith(".png") else "image/jpeg"),
        photo_store=LocalPhotoStore.under_media_dir(settings.media_dir),
    )
    # jieba's dictionary and the BM25 index are built now, so the first question is as fast as
    # the hundredth; an invalid knowledge base stops start-up with its reason.
    faq = FaqService(settings.faq_kb_file or None, cache_dir=settings.faq_cache_dir)
    await asyncio.to_thread(faq.warm)
    router = Router(
        db,
        faq=Consultant(metrics.CountedFaq(faq)),
        on_template_finish=lambda msgid, status: record_template_finish(db, msgid, status),
        services=services,
        flow_timeout_minutes=settings.dialog_timeout_minutes,
    )

    async def deliver_later(openid: str, reply: Reply) -> None:
        """A result that missed the reply budget goes out as a customer-service message;
        if WeChat refuses (48-hour window, quota), it waits in the outbox."""
        try:
            if reply.text:
                await client.send_text(openid, reply.text)
            if reply.image_media_id:
                await client.send_image(openid, reply.image_media_id)
            metrics.LATE_REPLIES.labels("sent").inc()
        except Exception as e:
            log.warning("customer-service send failed (%s); queued in the outbox", e)
            metrics.LATE_REPLIES.labels("queued").inc()
            payload = {"text": reply.text, "image": reply.image_media_id}
            async with db.session() as s, s.begin():
                s.add(Outbox(openid=openid, kind="reply", payload=payload,
                             client_msg_id=uuid.uuid4().hex, status="waiting", last_error=str(e)[:255]))

    endpoint = WeChatEndpoint(
        token=settings.wechat_token,
        crypto=crypto,
        db=db,
        handler=router.handle,
        deliver_later=deliver_later,
        budget_seconds=settings.reply_budget_seconds,
        prefetch=router.prefetch,
    )

    # Scheduled jobs run in whichever process holds the scheduler lease (bot/scheduler.py);
    # they reach this process's resources through the runtime registered under its owner id.
    options = app[SCHEDULER_OPTIONS]
    key = owner_id()
    deliverer = Deliverer.from_settings(db, client, settings, owner=key) if options.deliver else None
    jobs.register(key, jobs.Runtime(db=db, settings=settings, deduper=endpoint.deduper, deliverer=deliverer))
    scheduler = ServiceScheduler(db, settings.database_url, key, options)
    if options.enabled:
        scheduler.start()

    app[DB], app[CLIENT], app[ENDPOINT], app[SCHEDULER] = db, client, endpoint, scheduler
    app[REDIS] = redis
    log.info("zikao-bot ready: %s", settings.describe())
    try:
        yield
    finally:
        await scheduler.stop()
        jobs.unregister(key)
        await endpoint.drain()
        await session.close()
        if redis is not None:
            await redis.aclose()
        await db.dispose()
