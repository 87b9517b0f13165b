"""Logging set-up for every process of the service (serve, demo, workers, CLI commands).

LOG_FORMAT=text (default) writes one readable line per record; LOG_FORMAT=json writes one JSON
object per line (python-json-logger) with the fields a log pipeline indexes: time, level, logger,
message, process id, and whatever the call site passes in `extra=` (the apology's reference code
as `ref`, a message's `kind`, an outbox row's `row_id` ...). One place, so that the access-log
format and the scrubbing of secrets (signature, access_token ...) are set up beside it.
"""
from __future__ import annotations

import logging
import sys

from pythonjsonlogger.json import JsonFormatter

TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"
JSON_FIELDS = "%(asctime)s %(levelname)s %(name)s %(message)s %(process)d"
FORMATS = ("text", "json")


def json_formatter() -> logging.Formatter:
    return JsonFormatter(
        JSON_FIELDS,
        rename_fields={"asctime": "time", "levelname": "level", "name": "logger", "process": "pid"},
        timestamp=False,
        json_ensure_ascii=False,  # Chinese stays readable in the log
    )


def setup_logging(level: str = "INFO", fmt: str = "text", stream=None) -> None:
    """Configure the root logger: our one handler (replacing the one an earlier call installed;
    handlers of others, such as pytest's log capture, stay)."""
    from bot.logsafe import RedactingFilter

    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(json_formatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT))
    handler.addFilter(RedactingFilter())  # no signature, nonce, openid or access_token in any line
    handler._zikao = True  # type: ignore[attr-defined]
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_zikao", False)]:
        root.removeHandler(old)
    root.addHandler(handler)
    root.setLevel(level.upper())
    if level.upper() != "DEBUG":
        # APScheduler logs every run of every job at INFO: the delivery job alone runs every 2 s.
        logging.getLogger("apscheduler").setLevel(logging.WARNING)
