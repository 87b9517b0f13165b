"""The no-storage floor of shared/PERFORMANCE.md: aiohttp + wechatpy signature check, parse, text reply.

    python -m bench.floor --port 8090
Run it beside the bot and point the load generator at both in one session to compare.
"""
from __future__ import annotations

import argparse

from aiohttp import web
from wechatpy import parse_message
from wechatpy.exceptions import InvalidSignatureException
from wechatpy.replies import TextReply
from wechatpy.utils import check_signature


def create_floor_app(token: str) -> web.Application:
    async def handle(request: web.Request) -> web.Response:
        q = request.query
        try:
            check_signature(token, q.get("signature", ""), q.get("timestamp", ""), q.get("nonce", ""))
        except InvalidSignatureException:
            return web.Response(status=403)
        msg = parse_message(await request.read())
        return web.Response(text=TextReply(message=msg, content="您好").render(), content_type="application/xml")

    app = web.Application()
    app.router.add_post("/wechat", handle)
    return app


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--port", type=int, default=8090)
    p.add_argument("--token", default="benchtoken")
    args = p.parse_args()
    web.run_app(create_floor_app(args.token), host="127.0.0.1", port=args.port, print=None, access_log=None)


if __name__ == "__main__":
    main()
