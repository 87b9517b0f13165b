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
MODES = ("plain", "compat", "safe")


class ConfigError(Exception):
    """A bad setting; the message is one line naming the variable and the reason."""


@dataclass(frozen=True)
class Settings:
    wechat_token: str = "zikaobot"
    wechat_app_id: str = "wx0000000000000000"
    wechat_app_secret: str = ""
    wechat_aes_key: str = ""  # empty: plaintext mode
    wechat_aes_key_previous: str = ""  # kept during key rotation
    # plain | compat | safe; empty: safe when WECHAT_AES_KEY is set, else plain (docs/security.md).
    wechat_mode: str = ""
    # A POST whose timestamp is further than this from our clock is refused, and a nonce is
    # remembered this long (so a logged request URL cannot be replayed).
    wechat_max_age_seconds: int = 300
    wechat_api_base: str = REAL_WECHAT_API
    database_url: str = "sqlite:///var/zikao.sqlite3"
    redis_url: str = ""
    host: str = "127.0.0.1"
    port: int = 8080
    reply_budget_seconds: float = 4.5
    # The warm path (docs/delivery.md): an idle follower's query answered with no database
    # statement awaited (claims and nonces in memory, written behind). auto: on with SQLite (one
    # process) and with REDIS_URL (claims across processes); off for PostgreSQL without Redis.
    warm_path: str = "auto"
    # How long dedupe records (with the reply texts) are kept: WeChat retries for ~15 s.
    dedupe_retention_minutes: int = 10
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
    # Keys the blind index of ID numbers, the encryption of ID numbers and mobiles at rest and the
    # H5 pages' session cookie (storage/keys.py). Required (>= 32 characters) in production.
    secret_key: str = ""
    # production / demo / test: outside production a missing SECRET_KEY falls back to the demo key.
    zikao_mode: str = "production"
    # The H5 pages (绑定, 修改密码) as the visitor's browser reaches this service; empty:
    # http://HOST:PORT. WeChat's web authorisation sends visitors to WECHAT_OAUTH_BASE.
    public_base_url: str = ""
    wechat_oauth_base: str = "https://open.weixin.qq.com"
    # WeChat Pay API v3 for the 毕业审定费 (docs/payments.md); empty WECHATPAY_MCHID: no payment in WeChat.
    wechatpay_mchid: str = ""
    wechatpay_api_v3_key: str = ""
    wechatpay_private_key_path: str = ""  # the merchant's API private key (apiclient_key.pem)
    wechatpay_cert_serial_no: str = ""  # its certificate's serial number
    wechatpay_public_key_path: str = ""  # WeChat Pay's public key (pub_key.pem)
    wechatpay_public_key_id: str = ""  # PUB_KEY_ID_...
    wechatpay_api_base: str = "https://api.mch.weixin.qq.com"
    extra: Mapping[str, str] = field(default_factory=dict, compare=False, repr=False)

    @property
    def aes_keys(self) -> list[bytes]:
        """The current key first, then the previous one: decryption tries them in this order."""
        return [aes_key_bytes(k) for k in (self.wechat_aes_key, self.wechat_aes_key_previous) if k]

    @property
    def mode(self) -> str:
        """The message mode in force: WECHAT_MODE, or safe with an AES key and plain without."""
        return self.wechat_mode.lower() or ("safe" if self.wechat_aes_key else "plain")

    @property
    def warm(self) -> bool:
        """Whether the warm path is on (WARM_PATH; auto: SQLite, or any database with Redis)."""
        w = self.warm_path.lower()
        if w != "auto":
            return w == "on"
        return bool(self.redis_url) or self.database_url.startswith("sqlite")

    @property
    def safe_mode(self) -> bool:
        """Only encrypted bodies are accepted."""
        return self.mode == "safe"

    @property
    def public_base(self) -> str:
        return (self.public_base_url or f"http://{self.host}:{self.port}").rstrip("/")

    def describe(self) -> dict[str, str]:
        """Settings fit for a log line: secrets replaced by their presence."""
        secret = {"wechat_app_secret", "wechat_aes_key", "wechat_aes_key_previous", "wechat_token", "sms_api_key",
                  "secret_key", "wechatpay_api_v3_key", "tencent_sms_secret_key"}
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
                 "wechat_aes_key", "secret_key", "wechat_mode", "public_base_url", "wechat_app_secret", "redis_url", "sms_api_base", "sms_api_key", "faq_kb_file", "template_review_result",
                 "template_exam_notice", "template_score_release", "template_business_reminder"}
# WeChat Pay is off until a merchant number is set.
EMPTY_ALLOWED |= {"wechatpay_mchid", "wechatpay_api_v3_key", "wechatpay_private_key_path", "wechatpay_cert_serial_no",
                  "wechatpay_public_key_path", "wechatpay_public_key_id"}
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


# The local instance's settings file, next to its default database (var/zikao.sqlite3): written by
# `zikao-bot demo`, read by every `zikao-bot` command run in the same directory unless ZIKAO_CONFIG
# (even empty) or --config says otherwise. So after `make demo`, `zikao-bot review list` opens the
# demo's data with the demo's key, with no variable to set.
LOCAL_CONFIG_FILE = "var/zikao.env"


def write_env_file(path: str | Path, values: Mapping[str, str]) -> None:
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    lines = ["# Written by `zikao-bot demo`: the demo's settings, read by zikao-bot commands run here."]
    p.write_text("\n".join(lines + [f"{k}={v}" for k, v in values.items()]) + "\n", encoding="utf-8")


def load_settings(environ: Mapping[str, str] | None = None, config_file: str | None = None, *,
                  local_file: bool = False) -> Settings:
    """Environment wins over the file named by `config_file` or ZIKAO_CONFIG; with `local_file`
    (the command line) and neither of them set, over LOCAL_CONFIG_FILE when it exists."""
    env = dict(os.environ if environ is None else environ)
    path = config_file or env.get("ZIKAO_CONFIG")
    if not path and local_file and "ZIKAO_CONFIG" not in env and Path(LOCAL_CONFIG_FILE).is_file():
        path = LOCAL_CONFIG_FILE
    merged: dict[str, str] = {}
    if path:
        if not Path(path).is_file():
            raise ConfigError(f"ZIKAO_CONFIG: file not found: {path}")
        merged.update(read_env_file(path))
    merged.update(env)
    if merged.get("DEDUPE_RETENTION_HOURS"):
        raise ConfigError("DEDUPE_RETENTION_HOURS: replaced by DEDUPE_RETENTION_MINUTES (reply texts are kept minutes, not hours)")
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


def _check_wechatpay(s: Settings) -> None:
    if not re.fullmatch(r"\d{8,12}", s.wechatpay_mchid):
        raise ConfigError("WECHATPAY_MCHID: the merchant number (商户号) is 8-12 digits")
    if len(s.wechatpay_api_v3_key.encode()) != 32:
        raise ConfigError("WECHATPAY_API_V3_KEY: the APIv3 key is 32 characters")
    for var, path in (("WECHATPAY_PRIVATE_KEY_PATH", s.wechatpay_private_key_path),
                      ("WECHATPAY_PUBLIC_KEY_PATH", s.wechatpay_public_key_path)):
        if not path or not Path(path).is_file():
            raise ConfigError(f"{var}: file not found: {path or '(empty)'}")
    if not s.wechatpay_cert_serial_no or not s.wechatpay_public_key_id:
        raise ConfigError("WECHATPAY_CERT_SERIAL_NO and WECHATPAY_PUBLIC_KEY_ID: both needed with WECHATPAY_MCHID")
    for var, url in (("WECHATPAY_API_BASE", s.wechatpay_api_base),):
        if url and (urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc):
            raise ConfigError(f"{var}: expected an http(s) URL, got {url!r}")


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
    if s.wechat_mode and s.wechat_mode.lower() not in MODES:
        raise ConfigError(f"WECHAT_MODE: plain, compat or safe, got {s.wechat_mode!r}")
    if s.mode != "plain" and not s.wechat_aes_key:
        raise ConfigError(f"WECHAT_MODE: {s.mode} mode needs WECHAT_AES_KEY")
    if s.mode == "plain" and s.wechat_aes_key:
        raise ConfigError("WECHAT_MODE: plain mode with WECHAT_AES_KEY set; use safe (or compat while switching)")
    if not 30 <= s.wechat_max_age_seconds <= 3600:
        raise ConfigError("WECHAT_MAX_AGE_SECONDS: between 30 and 3600 (a few minutes is right)")
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
    if s.warm_path.lower() not in ("auto", "on", "off"):
        raise ConfigError(f"WARM_PATH: auto, on or off, got {s.warm_path!r}")
    if not 0.5 <= s.reply_budget_seconds <= 4.8:
        raise ConfigError("REPLY_BUDGET_SECONDS: must stay between 0.5 and 4.8 (WeChat waits 5 s)")
    if not 1 <= s.dedupe_retention_minutes <= 2880:
        raise ConfigError("DEDUPE_RETENTION_MINUTES: between 1 and 2880 (WeChat retries for ~15 s)")
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
    if s.wechatpay_mchid:
        _check_wechatpay(s)
    if s.log_format not in ("text", "json"):
        raise ConfigError(f"LOG_FORMAT: text or json, got {s.log_format!r}")
    if s.log_level.upper() not in ("DEBUG", "INFO", "WARNING", "ERROR"):
        raise ConfigError("LOG_LEVEL: DEBUG, INFO, WARNING or ERROR")
    if s.zikao_mode not in RUN_MODES:
        raise ConfigError(f"ZIKAO_MODE: one of {', '.join(RUN_MODES)}, got {s.zikao_mode!r}")
    _check_secret_key(s)
    for var, url in (("PUBLIC_BASE_URL", s.public_base_url), ("WECHAT_OAUTH_BASE", s.wechat_oauth_base)):
        if url and (urlparse(url).scheme not in ("http", "https") or not urlparse(url).netloc):
            raise ConfigError(f"{var}: expected an http(s) URL, got {url!r}")


RUN_MODES = ("production", "demo", "test")


def _check_secret_key(s: Settings) -> None:
    from storage.keys import MIN_SECRET_KEY_LENGTH

    if s.secret_key and len(s.secret_key) < MIN_SECRET_KEY_LENGTH:
        raise ConfigError(f"SECRET_KEY: at least {MIN_SECRET_KEY_LENGTH} characters, got {len(s.secret_key)}")


def apply_secret_key(s: Settings) -> None:
    """Configure storage.keys from the settings, at the start-up of the service and of every
    command. Production refuses to start without a SECRET_KEY of its own: with a key everybody
    knows, anyone could enumerate ID numbers against the blind index and decrypt the database.
    ZIKAO_MODE=demo or test runs with the built-in demo key; a process that configured
    storage.keys itself (a test harness) keeps its key."""
    from storage import keys

    _check_secret_key(s)
    if s.secret_key:
        if s.zikao_mode == "production" and s.secret_key == keys.DEMO_SECRET_KEY:
            raise ConfigError("SECRET_KEY: the demo key cannot be used in production")
        keys.configure(s.secret_key)
    elif s.zikao_mode in ("demo", "test"):
        if not keys.configured():
            keys.configure(keys.DEMO_SECRET_KEY)
    elif not keys.configured():
        raise ConfigError("SECRET_KEY: required in production (at least 32 random characters, e.g. from "
                          "`python -c 'import secrets; print(secrets.token_urlsafe(48))'`); "
                          "ZIKAO_MODE=demo runs with the built-in demo key")


def command_settings(config_file: str | None = None, overrides: Mapping[str, str] | None = None) -> Settings:
    """The settings of a `zikao-bot` command: the environment over `overrides` and over the
    settings file (--config, ZIKAO_CONFIG, else LOCAL_CONFIG_FILE), with the SECRET_KEY applied."""
    env = dict(os.environ)
    for k, v in (overrides or {}).items():
        env.setdefault(k, v)
    settings = load_settings(env, config_file, local_file=True)
    apply_secret_key(settings)
    return settings
