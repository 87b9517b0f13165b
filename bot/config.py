"""Configuration from the environment (and an optional KEY=VALUE file), checked at start-up."""
from __future__ import annotations

import base64
import binascii
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Mapping
from urllib.parse import urlparse

REAL_WECHAT_API = "https://api.weixin.qq.com"


class ConfigError(Exception):
    """A bad setting; the message is one line naming the variable and the reason."""


@dataclass(frozen=True)
class Settings:
    wechat_token: str = "zikaobot"
    wechat_app_id: str = "wx0000000000000000"
    wechat_app_secret: str = ""
    wechat_aes_key: str = ""  # empty: plaintext mode
    wechat_aes_key_previous: str = ""  # kept during key rotation
    wechat_api_base: str = REAL_WECHAT_API
    database_url: str = "sqlite:///var/zikao.sqlite3"
    redis_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    reply_budget_seconds: float = 4.5
    dedupe_retention_hours: int = 48
    api_timeout_seconds: float = 5.0
    media_dir: str = "var/media"
    # Template ids per push kind (from the WeChat admin console); empty: customer-service text only.
    template_review_result: str = ""
    template_exam_notice: str = ""
    template_score_release: str = ""
    template_business_reminder: str = ""
    push_rate_per_second: float = 20.0
    push_daily_cap: int = 90000
    push_lease_seconds: float = 60.0
    log_level: str = "INFO"
    log_format: str = "text"  # or "json": one JSON object per line (bot/logs.py)
    # Guided dialogs: a flow left unfinished this long ends with a note on the next message.
    dialog_timeout_minutes: float = 30.0
    # The SMS gateway for verification codes (the emulator serves one); empty: no SMS.
    sms_api_base: str = ""
    sms_api_key: str = ""
    # "http": the generic gateway API of docs/sms.md; "tencent": Tencent Cloud SMS (bot/sms_tencent.py).
    sms_provider: str = "http"
    tencent_sms_secret_id: str = ""
    tencent_sms_secret_key: str = ""
    tencent_sms_sdk_app_id: str = ""
    tencent_sms_sign_name: str = "上海自考"
    tencent_sms_template_id: str = ""
    tencent_sms_region: str = "ap-guangzhou"
    # Consultation: the FAQ knowledge base (empty: the packaged dialogs/faq/kb.yaml) and jieba's cache.
    faq_kb_file: str = ""
    faq_cache_dir: str = "var/jieba"
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def aes_keys(self) -> list[bytes]:
        """The current key first, then the previous one: decryption tries them in this order."""
        return [aes_key_bytes(k) for k in (self.wechat_aes_key, self.wechat_aes_key_previous) if k]

    @property
    def safe_mode(self) -> bool:
        return bool(self.wechat_aes_key)

    def describe(self) -> dict[str, str]:
        """Settings fit for a log line: secrets replaced by their presence."""
        secret = {"wechat_app_secret", "wechat_aes_key", "wechat_aes_key_previous", "wechat_token", "sms_api_key",
                  "tencent_sms_secret_key"}
        out = {}
        for f in fields(self):
            if f.name == "extra":
                continue
            v = getattr(self, f.name)
            out[f.name] = ("set" if v else "empty") if f.name in secret else _hide_password(str(v))
        return out


def aes_key_bytes(key: str) -> bytes:
    return base64.b64decode(key + "=")


def _hide_password(url: str) -> str:
    return re.sub(r"://([^:/@]+):[^@]*@", r"://\1:***@", url)


EMPTY_ALLOWED = {"tencent_sms_secret_id", "tencent_sms_secret_key", "tencent_sms_sdk_app_id", "tencent_sms_template_id",
                 "wechat_aes_key", "wechat_app_secret", "redis_url", "sms_api_base", "sms_api_key", "faq_kb_file", "template_review_result",
                 "template_exam_notice", "template_score_release", "template_business_reminder"}
ENV_NAMES = {f.name: f.name.upper() for f in fields(Settings) if f.name != "extra"}


def read_env_file(path: str | Path) -> dict[str, str]:
    """KEY=VALUE lines; '#' comments and blank lines ignored; quotes around values stripped."""
    values: dict[str, str] = {}
    for n, line in enumerate(Path(path).read_text(encoding="utf-8").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        if "=" not in line:
            raise ConfigError(f"{path}:{n}: expected KEY=VALUE")
        k, v = line.split("=", 1)
        values[k.strip()] = v.strip().strip('"').strip("'")
    return values


def load_settings(environ: Mapping[str, str] | None = None, config_file: str | None = None) -> Settings:
    """Environment wins over the file named by `config_file` or ZIKAO_CONFIG."""
    env = dict(os.environ if environ is None else environ)
    path = config_file or env.get("ZIKAO_CONFIG")
    merged: dict[str, str] = {}
    if path:
        if not Path(path).is_file():
            raise ConfigError(f"ZIKAO_CONFIG: file not found: {path}")
        merged.update(read_env_file(path))
    merged.update(env)
    kwargs: dict = {}
    for f in fields(Settings):
        if f.name == "extra":
            continue
        raw = merged.get(ENV_NAMES[f.name])
        if raw is None or raw == "" and f.name not in EMPTY_ALLOWED:
            continue
        kwargs[f.name] = _convert(f.name, raw)
    settings = Settings(**kwargs)
    validate(settings)
    return settings


def _convert(name: str, raw: str):
    var = ENV_NAMES[name]
    target = Settings.__dataclass_fields__[name].type
    try:
        if target == "int":
            return int(raw)
        if target == "float":
            return float(raw)
    except ValueError:
        raise ConfigError(f"{var}: expected a number, got {raw!r}") from None
    return raw.strip()


def _check_aes_key(var: str, key: str) -> None:
    if len(key) != 43:
        raise ConfigError(f"{var}: an EncodingAESKey is 43 characters, got {len(key)}")
    try:
        raw = base64.b64decode(key + "=", validate=True)
    except (binascii.Error, ValueError):
        raise ConfigError(f"{var}: not a base64 EncodingAESKey") from None
    if len(raw) != 32:
        raise ConfigError(f"{var}: does not decode to 32 bytes")


def validate(s: Settings) -> None:
    if not re.fullmatch(r"[A-Za-z0-9]{3,32}", s.wechat_token):
        raise ConfigError("WECHAT_TOKEN: 3 to 32 letters or digits, as WeChat requires")
    if not re.fullmatch(r"wx[0-9a-zA-Z]{14,30}", s.wechat_app_id):
        raise ConfigError(f"WECHAT_APP_ID: expected an AppID like wx1234567890abcdef, got {s.wechat_app_id!r}")
    if s.wechat_aes_key:
        _check_aes_key("WECHAT_AES_KEY", s.wechat_aes_key)
    if s.wechat_aes_key_previous:
        if not s.wechat_aes_key:
            raise ConfigError("WECHAT_AES_KEY_PREVIOUS: set only together with WECHAT_AES_KEY")
        _check_aes_key("WECHAT_AES_KEY_PREVIOUS", s.wechat_aes_key_previous)
    api = urlparse(s.wechat_api_base)
    if api.scheme not in ("http", "https") or not api.netloc:
        raise ConfigError(f"WECHAT_API_BASE: expected an http(s) URL, got {s.wechat_api_base!r}")
    db = urlparse(s.database_url)
    if db.scheme.split("+")[0] not in ("sqlite", "postgresql", "postgres"):
        raise ConfigError(f"DATABASE_URL: only sqlite:/// and postgresql:// are supported, got {db.scheme or 'no scheme'!r}")
    if s.redis_url and urlparse(s.redis_url).scheme not in ("redis", "rediss", "unix"):
        raise ConfigError("REDIS_URL: expected redis://host:port/db")
    if not 0 < s.port < 65536:
        raise ConfigError(f"PORT: expected 1-65535, got {s.port}")
    if not 0.5 <= s.reply_budget_seconds <= 4.8:
        raise ConfigError("REPLY_BUDGET_SECONDS: must stay between 0.5 and 4.8 (WeChat waits 5 s)")
    if s.dedupe_retention_hours < 1:
        raise ConfigError("DEDUPE_RETENTION_HOURS: at least 1 (WeChat retries for ~15 s)")
    if s.api_timeout_seconds <= 0:
        raise ConfigError("API_TIMEOUT_SECONDS: must be positive")
    if not 0 < s.push_rate_per_second <= 1000:
        raise ConfigError("PUSH_RATE_PER_SECOND: between 0 and 1000")
    if s.push_daily_cap < 1:
        raise ConfigError("PUSH_DAILY_CAP: at least 1")
    if s.push_lease_seconds < 5:
        raise ConfigError("PUSH_LEASE_SECONDS: at least 5")
    if not 1 <= s.dialog_timeout_minutes <= 24 * 60:
        raise ConfigError("DIALOG_TIMEOUT_MINUTES: between 1 and 1440")
    if s.sms_api_base:
        sms = urlparse(s.sms_api_base)
        if sms.scheme not in ("http", "https") or not sms.netloc:
            raise ConfigError(f"SMS_API_BASE: expected an http(s) URL, got {s.sms_api_base!r}")
    if s.sms_provider not in ("http", "tencent"):
        raise ConfigError(f"SMS_PROVIDER: http or tencent, got {s.sms_provider!r}")
    if s.sms_provider == "tencent":
        for var in ("TENCENT_SMS_SECRET_ID", "TENCENT_SMS_SECRET_KEY", "TENCENT_SMS_SDK_APP_ID", "TENCENT_SMS_TEMPLATE_ID"):
            if not getattr(s, var.lower()):
                raise ConfigError(f"{var}: required with SMS_PROVIDER=tencent (docs/wechat-setup.md)")
    if s.faq_kb_file and not Path(s.faq_kb_file).is_file():
        raise ConfigError(f"FAQ_KB_FILE: file not found: {s.faq_kb_file}")
    if s.log_format not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT: text or json, got {s.log_format!r}")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("LOG_LEVEL: DEBUG, INFO, WARNING or ERROR")
