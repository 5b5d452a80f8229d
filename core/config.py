"""Configuration from environment variables, with safe defaults for a first local run."""

from __future__ import annotations

import base64
import os
import secrets
from pathlib import Path


def _instance_secret(instance_path: str, name: str, nbytes: int) -> str:
    """Read a generated secret from the instance folder, creating it on first use."""
    path = Path(instance_path) / name
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "w") as fh:
            fh.write(base64.urlsafe_b64encode(secrets.token_bytes(nbytes)).decode())
    return path.read_text().strip()


def normalize_database_url(url: str) -> str:
    """Point plain PostgreSQL URLs at the psycopg 3 driver."""
    for prefix in ("postgres://", "postgresql://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


def load_config(instance_path: str, overrides: dict | None = None) -> dict:
    """Build the app configuration: environment first, then explicit overrides."""
    env = os.environ
    overrides = dict(overrides or {})
    instance_path = overrides.pop("INSTANCE_PATH", instance_path)
    db_default = "sqlite:///" + str(Path(instance_path) / "unioncard.sqlite3")
    cfg = {
        "INSTANCE_PATH": instance_path,
        "DATABASE_URL": normalize_database_url(env.get("DATABASE_URL") or db_default),
        "REDIS_URL": env.get("REDIS_URL") or None,
        "REDIS_PREFIX": env.get("REDIS_PREFIX", "uc:"),
        "SECRET_KEY": env.get("SECRET_KEY"),
        "DATA_KEY": env.get("DATA_KEY"),
        "STRIPE_API_KEY": env.get("STRIPE_API_KEY", ""),
        "STRIPE_WEBHOOK_SECRET": env.get("STRIPE_WEBHOOK_SECRET", ""),
        "STRIPE_API_BASE": env.get("STRIPE_API_BASE", ""),
        "UPLOAD_FOLDER": env.get("UPLOAD_FOLDER") or str(Path(instance_path) / "uploads"),
        # Whole-request ceiling (CSV uploads); JSON bodies get a much smaller one.
        "MAX_CONTENT_LENGTH": int(env.get("MAX_CONTENT_LENGTH", 32 * 1024 * 1024)),
        "MAX_JSON_LENGTH": int(env.get("MAX_JSON_LENGTH", 256 * 1024)),
        # argon2id cost; the defaults are the argon2-cffi library's (RFC 9106 low-memory profile).
        "PASSWORD_HASH_TIME_COST": int(env.get("PASSWORD_HASH_TIME_COST", 3)),
        "PASSWORD_HASH_MEMORY_KIB": int(env.get("PASSWORD_HASH_MEMORY_KIB", 65536)),
        "TOKEN_TTL_SECONDS": int(env.get("TOKEN_TTL_SECONDS", 8 * 3600)),
        "LOGIN_MAX_FAILURES": int(env.get("LOGIN_MAX_FAILURES", 5)),
        "LOGIN_IP_MAX_FAILURES": int(env.get("LOGIN_IP_MAX_FAILURES", 30)),
        "LOGIN_WINDOW_SECONDS": int(env.get("LOGIN_WINDOW_SECONDS", 900)),
        "LOGIN_LOCKOUT_SECONDS": int(env.get("LOGIN_LOCKOUT_SECONDS", 900)),
        "MAX_LICENCE_BYTES": int(env.get("MAX_LICENCE_BYTES", 10 * 1024 * 1024)),
        "IMPORT_INLINE_ROWS": int(env.get("IMPORT_INLINE_ROWS", 5000)),
        "IMPORT_MAX_ROWS": int(env.get("IMPORT_MAX_ROWS", 200_000)),
        # Cards: the issuer prefix of card numbers, PIN lockout, and member payment codes.
        "CARD_PREFIX": env.get("CARD_PREFIX", "880064"),
        "PIN_MAX_FAILURES": int(env.get("PIN_MAX_FAILURES", 5)),
        "PIN_LOCKOUT_SECONDS": int(env.get("PIN_LOCKOUT_SECONDS", 1800)),
        "PAYMENT_CODE_TTL_SECONDS": int(env.get("PAYMENT_CODE_TTL_SECONDS", 60)),
        "PAYMENT_CODES_PER_MINUTE": int(env.get("PAYMENT_CODES_PER_MINUTE", 20)),
        "CARD_ISSUANCE_INLINE": int(env.get("CARD_ISSUANCE_INLINE", 2000)),
        # Member top-ups through Stripe, in fen: Stripe refuses charges worth less than about US$0.50.
        "TOPUP_MIN_AMOUNT": int(env.get("TOPUP_MIN_AMOUNT", 500)),
        "TOPUP_MAX_AMOUNT": int(env.get("TOPUP_MAX_AMOUNT", 500_000)),
        # The most one card payment may be (fen): ¥50,000 by default.
        "PAYMENT_MAX_AMOUNT": int(env.get("PAYMENT_MAX_AMOUNT", 5_000_000)),
        # Disbursement batches: size limit, chunk per committed step, an optional pause between chunks
        # (to leave room for other work on a busy database), and the amount above which two approvers sign.
        "DISBURSEMENT_MAX_LINES": int(env.get("DISBURSEMENT_MAX_LINES", 1_000_000)),
        "DISBURSEMENT_CHUNK": int(env.get("DISBURSEMENT_CHUNK", 5000)),
        "DISBURSEMENT_CHUNK_PAUSE": float(env.get("DISBURSEMENT_CHUNK_PAUSE", 0)),
        "DISBURSEMENT_SECOND_APPROVAL_ABOVE": int(env.get("DISBURSEMENT_SECOND_APPROVAL_ABOVE", 100_000_000)),
        # Settlement: business day D (Asia/Shanghai) is paid out on D + SETTLEMENT_DELAY_DAYS (T+N); an optional
        # fee in basis points of what the day's payments brought the merchant.
        "SETTLEMENT_DELAY_DAYS": int(env.get("SETTLEMENT_DELAY_DAYS", 1)),
        "SETTLEMENT_FEE_BP": int(env.get("SETTLEMENT_FEE_BP", 0)),
        # A payout above this (fen) waits for a finance approver other than whoever settled it: ¥50,000.
        "PAYOUT_SECOND_APPROVAL_ABOVE": int(env.get("PAYOUT_SECOND_APPROVAL_ABOVE", 5_000_000)),
        # Reconciliation: how many days apart a statement line and a payout or funding may be and still match.
        "RECONCILIATION_DATE_WINDOW_DAYS": int(env.get("RECONCILIATION_DATE_WINDOW_DAYS", 3)),
        # The union console refreshes its figures in the background when a view finds them older than this
        # (seconds); 0 leaves it to `flask stats refresh` on a schedule.
        "STATS_REFRESH_AFTER": int(env.get("STATS_REFRESH_AFTER", 300)),
        # Monitoring: "json" writes one JSON object per log line (with the request id); /metrics answers only a
        # scraper sending "Authorization: Bearer <METRICS_TOKEN>" (unset: no /metrics).
        "LOG_FORMAT": env.get("LOG_FORMAT", "text"),
        "LOG_REQUESTS": env.get("LOG_REQUESTS", "1") == "1",
        "METRICS_TOKEN": env.get("METRICS_TOKEN", ""),
        "JOBS_MODE": env.get("JOBS_MODE", ""),  # "rq", "thread" or "sync"; empty picks by REDIS_URL
        "BABEL_DEFAULT_LOCALE": "zh",
        "BABEL_DEFAULT_TIMEZONE": "Asia/Shanghai",
        "LANGUAGES": ["zh", "en"],
        "SESSION_COOKIE_HTTPONLY": True,
        "SESSION_COOKIE_SAMESITE": "Lax",
        "SESSION_COOKIE_SECURE": env.get("SESSION_COOKIE_SECURE", "0") == "1",
        "WTF_CSRF_TIME_LIMIT": None,
        "API_TITLE": "Union member card platform",
        "API_VERSION": "v1",
        "OPENAPI_VERSION": "3.0.3",
        "OPENAPI_URL_PREFIX": "/api/v1",
        "OPENAPI_JSON_PATH": "openapi.json",
        "TESTING": False,
    }
    cfg.update(overrides)
    cfg["DATABASE_URL"] = normalize_database_url(cfg["DATABASE_URL"])
    if not cfg["SECRET_KEY"]:
        cfg["SECRET_KEY"] = _instance_secret(instance_path, "secret_key", 32)
    if not cfg["DATA_KEY"]:
        cfg["DATA_KEY"] = _instance_secret(instance_path, "data_key", 32)
    return cfg
