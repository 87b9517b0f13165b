"""The aiohttp application: one place that owns every resource from start to stop."""
from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
from typing import AsyncIterator, Awaitable, Callable

import aiohttp
from aiohttp import web

from bot import jobs, metrics
from bot.config import Settings, apply_secret_key
from bot.h5.pages import H5Env, create_h5_app
from bot.crypto import MessageCrypto
from bot.delivery import Deliverer, deliver_late_reply, record_template_finish
from bot.endpoint import WeChatEndpoint
from bot.faq_cli import faq_locations
from bot.freshness import RedisNonces
from bot.pay import PAY, PayConfig, PayGateway, PayService, add_pay_routes
from bot.scheduler import SchedulerOptions, ServiceScheduler, owner_id
from bot.token_store import DatabaseTokenStore, RedisTokenStore
from bot.wechat_client import MediaExpired, MediaTooLarge, WeChatAPIError, WeChatBusy, WeChatClient
from bot.sms import build_gateway as build_sms_gateway
from console.app import create_console
from console.core import DB as CONSOLE_DB, ConsoleConfig
from dialogs.consult import Consultant
from dialogs.faq import FaqError, FaqService
from dialogs.router import Router
from dialogs.services import MediaUnavailable, Services
from dialogs.types import Reply
from storage import followers, outbox
from storage.db import Database
from storage.photos import LocalPhotoStore

log = logging.getLogger("zikao.app")

SETTINGS = web.AppKey("settings", Settings)
DB = web.AppKey("db", Database)
CLIENT = web.AppKey("wechat_client", WeChatClient)
ENDPOINT = web.AppKey("endpoint", WeChatEndpoint)
SCHEDULER = web.AppKey("scheduler", ServiceScheduler)
SCHEDULER_OPTIONS = web.AppKey("scheduler_options", SchedulerOptions)
REDIS = web.AppKey("redis", object)
H5 = web.AppKey("h5", H5Env)
FREEZE_GC = web.AppKey("freeze_gc", bool)


def media_download(fetch: Callable[[str], Awaitable[tuple[bytes, str]]]) -> Callable[[str], Awaitable[tuple[bytes, str]]]:
    """The client's media download as dialogs see it: the client's typed errors become
    MediaUnavailable, so dialogs/ never learns WeChat's error codes."""

    async def download(media_id: str) -> tuple[bytes, str]:
        try:
            return await fetch(media_id)
        except MediaExpired as e:  # 40007 / 41006: expired after 3 days, or never issued
            raise MediaUnavailable("expired", str(e.errcode)) from e
        except MediaTooLarge as e:
            raise MediaUnavailable("too_large", str(e.errcode)) from e
        except WeChatBusy as e:  # -1 / 45009 / 45011, timeouts and connection failures
            raise MediaUnavailable("busy", str(e.errcode)) from e
        except WeChatAPIError as e:
            raise MediaUnavailable("other", str(e.errcode)) from e
        except Exception as e:  # anything else on the way: treat like a busy WeChat, ask again
            raise MediaUnavailable("busy", type(e).__name__) from e
    return download


def create_app(settings: Settings, *, scheduler: SchedulerOptions | None = None,
               freeze_gc: bool = False) -> web.Application:
    """The service. `scheduler` tunes or turns off the scheduled jobs (pushes, purges), e.g. in
    tests: SchedulerOptions(enabled=False), or SchedulerOptions(deliver=False) to keep the outbox.
    `freeze_gc` (the `serve` command): what start-up built is frozen out of the garbage
    collector's full collections once the FAQ index is ready (a process-wide setting, so not in
    tests that build many apps in one process)."""
    apply_secret_key(settings)  # refuses a production start without SECRET_KEY
    app = web.Application(client_max_size=1024 * 1024)
    app[SETTINGS] = settings
    app[FREEZE_GC] = freeze_gc
    app[SCHEDULER_OPTIONS] = scheduler or SchedulerOptions()
    app.cleanup_ctx.append(_resources)
    app.router.add_get("/healthz", _healthz)
    app.router.add_get("/metrics", _metrics)
    # The endpoint is built at start-up (it needs the database); routes must exist before.
    app.router.add_get("/wechat", _wechat_get)
    app.router.add_post("/wechat", _wechat_post)
    # The exam office's console (console/); it reads the database the service opens at start-up.
    kb, cache_dir = faq_locations(settings)
    app.add_subapp("/console/", create_console(ConsoleConfig(
        photo_store=LocalPhotoStore.under_media_dir(settings.media_dir), faq_kb_file=kb, faq_cache_dir=cache_dir)))
    app.router.add_get("/console", _console_home)
    # 绑定 and 修改密码 pages (their resources are filled in at start-up).
    app[H5] = H5Env(app_id=settings.wechat_app_id, app_secret=settings.wechat_app_secret,
                    api_base=settings.wechat_api_base, oauth_base=settings.wechat_oauth_base,
                    public_base=settings.public_base, timeout=settings.api_timeout_seconds)
    app.add_subapp("/h5/", create_h5_app(app[H5]))
    if settings.wechatpay_mchid:
        add_pay_routes(app)  # the 毕业审定费 in WeChat Pay (bot/pay.py)
    return app


async def _console_home(request: web.Request) -> web.Response:
    raise web.HTTPFound("/console/")


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


async def _warm_faq(faq: FaqService, freeze_gc: bool) -> None:
    try:
        await asyncio.to_thread(faq.warm)
        if freeze_gc:
            # What start-up built (modules, the FAQ index: ~300,000 tracked objects) lives as long
            # as the process: keep it out of every later full collection (~50 ms each).
            gc.collect()
            gc.freeze()
    except FaqError as e:
        log.critical("the FAQ knowledge base is invalid, stopping:\n%s", "\n".join(e.errors))
        os.kill(os.getpid(), signal.SIGTERM)  # aiohttp's run_app shuts down cleanly on SIGTERM
    except Exception:
        log.exception("could not load the FAQ knowledge base, stopping")
        os.kill(os.getpid(), signal.SIGTERM)


async def _resources(app: web.Application) -> AsyncIterator[None]:
    settings = app[SETTINGS]
    db = Database(settings.database_url)
    session = aiohttp.ClientSession(timeout=aiohttp.ClientTimeout(total=settings.api_timeout_seconds))
    redis = None
    if settings.redis_url:
        import redis.asyncio as aioredis

        redis = aioredis.from_url(settings.redis_url)
        token_store = RedisTokenStore(redis)
        nonces = RedisNonces(redis, settings.wechat_max_age_seconds)
    else:
        token_store = DatabaseTokenStore(db)
        nonces = None  # recorded in the dedupe claim's transaction (bot/dedupe.py)
    client = WeChatClient(
        session,
        api_base=settings.wechat_api_base,
        app_id=settings.wechat_app_id,
        app_secret=settings.wechat_app_secret,
        token_store=token_store,
        timeout=settings.api_timeout_seconds,
    )
    crypto = (MessageCrypto(settings.wechat_token, settings.aes_keys, settings.wechat_app_id)
              if settings.mode != "plain" else None)
    pay_config = PayConfig.from_settings(settings)
    pay = PayService(db, PayGateway(pay_config)) if pay_config else None
    if pay is not None:
        app[PAY] = pay
    services = Services(
        sms=build_sms_gateway(settings, session),
        download_media=media_download(client.download_media),
        upload_image=lambda data, filename: client.upload_media(
            "image", data, filename, "image/png" if filename.lower().endswith(".png") else "image/jpeg"),
        photo_store=LocalPhotoStore.under_media_dir(settings.media_dir),
        web_page=app[H5].page_url,
        pay_link=pay.link if pay else None,
    )
    app[H5].db, app[H5].services, app[H5].http = db, services, session
    # Changes of a follower's binding or conversation reach every process's warm path (storage/followers.py).
    followers.views_for(db).redis = redis
    # jieba's dictionary and the BM25 index (seconds with an empty jieba cache) are built in a
    # thread while the listener already answers: score queries and menus need neither, and a
    # consultation arriving meanwhile waits for them (dialogs/consult.py). An invalid knowledge
    # base still stops the service, with its reason, a few seconds after start.
    faq = FaqService(settings.faq_kb_file or None, cache_dir=settings.faq_cache_dir)
    faq_warming = asyncio.create_task(_warm_faq(faq, app[FREEZE_GC]))
    router = Router(
        db,
        faq=Consultant(metrics.CountedFaq(faq)),
        on_template_finish=lambda msgid, status: record_template_finish(db, msgid, status),
        services=services,
        flow_timeout_minutes=settings.dialog_timeout_minutes,
    )

    async def deliver_later(openid: str, reply: Reply) -> None:
        await deliver_late_reply(db, client, openid, reply.text, reply.image_media_id)

    endpoint = WeChatEndpoint(
        token=settings.wechat_token,
        crypto=crypto,
        db=db,
        handler=router.handle,
        deliver_later=deliver_later,
        budget_seconds=settings.reply_budget_seconds,
        prefetch=router.prefetch,
        mode=settings.mode,
        # On the warm path with Redis the nonce is checked in the claim's Redis round trip.
        nonces=None if settings.warm else nonces,
        max_age_seconds=settings.wechat_max_age_seconds,
        cached=router.cached if settings.warm else None,
        views=router.views() if settings.warm else None,
        redis=redis,
    )

    # Scheduled jobs run in whichever process holds the scheduler lease (bot/scheduler.py);
    # they reach this process's resources through the runtime registered under its owner id.
    options = app[SCHEDULER_OPTIONS]
    key = owner_id()
    deliverer = Deliverer.from_settings(db, client, settings, owner=key) if options.deliver else None
    jobs.register(key, jobs.Runtime(db=db, settings=settings, deduper=endpoint.deduper, deliverer=deliverer,
                                    pay=pay))
    scheduler = ServiceScheduler(db, settings.database_url, key, options)
    if options.enabled:
        scheduler.start()

    app[DB], app[CLIENT], app[ENDPOINT], app[SCHEDULER] = db, client, endpoint, scheduler
    app[CONSOLE_DB] = db
    app[REDIS] = redis
    log.info("zikao-bot ready: %s", settings.describe())
    try:
        yield
    finally:
        faq_warming.cancel()
        await scheduler.stop()
        jobs.unregister(key)
        await endpoint.drain()
        await session.close()
        if redis is not None:
            await redis.aclose()
        await db.dispose()
