"""Logging that never shows a resident ID number or mobile number whole, in messages or tracebacks."""

from __future__ import annotations

import datetime as dt
import json
import logging
import re
import unicodedata

from flask import g, has_request_context

from core.crypto import mask_id_number, mask_phone

# Digits as people type them: ASCII or full-width (an IME's default in Chinese text).
_D = "[0-9\uff10-\uff19]"
_NOT_DIGIT_BEFORE = "(?<![0-9\uff10-\uff19])"
_NOT_DIGIT_AFTER = "(?![0-9\uff10-\uff19])"
# Between digit groups: a space (also URL-encoded, or '+' in a query string), a dash or a dot.
_SEP = r"(?:[\s\-.\uff0d\u2010-\u2015]|%20|\+)?"
ID_NUMBER_RE = re.compile(
    f"{_NOT_DIGIT_BEFORE}[1-9\uff11-\uff19]{_D}{{5}}{_SEP}{_D}{{8}}{_SEP}{_D}{{3}}[0-9Xx\uff10-\uff19\uff38\uff58]"
    "(?![0-9A-Za-z\uff10-\uff19\uff21-\uff3a\uff41-\uff5a])")
# A country prefix (+86, 0086, URL-encoded %2B86, full-width) or no digit right before the number.
_PHONE_START = (f"(?:(?:\\+|%2[Bb]|\uff0b|{_NOT_DIGIT_BEFORE}00|{_NOT_DIGIT_BEFORE}\uff10\uff10)(?:86|\uff18\uff16)"
                f"{_SEP}|{_NOT_DIGIT_BEFORE})")
PHONE_RE = re.compile(
    f"{_PHONE_START}[1\uff11][3-9\uff13-\uff19]{_D}{_SEP}{_D}{{4}}{_SEP}{_D}{{4}}{_NOT_DIGIT_AFTER}")


def _digits(text: str) -> str:
    """Return the ASCII digits (and check letter) of a match, dropping separators and URL escapes."""
    text = re.sub("%[0-9A-Fa-f]{2}", "", unicodedata.normalize("NFKC", text))
    return "".join(c for c in text if c.isascii() and c.isalnum()).upper()


def _mask_phone_match(match: re.Match) -> str:
    digits = _digits(match.group(0))
    return mask_phone(digits[-11:])


def mask_pii(text: str) -> str:
    """Mask anything shaped like an ID number or a mobile number in free text."""
    text = ID_NUMBER_RE.sub(lambda m: mask_id_number(_digits(m.group(0))), text)
    return PHONE_RE.sub(_mask_phone_match, text)


def mask_record(record: logging.LogRecord) -> logging.LogRecord:
    """Mask a record's message, its exception's traceback and its stack in place."""
    message = record.getMessage()
    masked = mask_pii(message)
    if masked != message:
        record.msg, record.args = masked, None
    if record.exc_info and not record.exc_text:
        # Formatters print exc_text when it is set, so the traceback is formatted once, here, masked.
        record.exc_text = logging.Formatter().formatException(record.exc_info)
    if record.exc_text:
        record.exc_text = mask_pii(record.exc_text)
    if record.stack_info:
        record.stack_info = mask_pii(record.stack_info)
    return record


class PiiMaskingFilter(logging.Filter):
    """Rewrite each record with personal numbers masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        mask_record(record)
        return True


class PiiMaskingFormatter(logging.Formatter):
    """Wrap a handler's formatter and mask what it produced (a last line of defence for custom formats)."""

    def __init__(self, inner: logging.Formatter | None = None):
        super().__init__()
        self.inner = inner or logging.Formatter()

    def format(self, record: logging.LogRecord) -> str:
        return mask_pii(self.inner.format(record))

    def formatException(self, ei) -> str:
        return mask_pii(self.inner.formatException(ei))


def wrap_handler_formatters(logger: logging.Logger) -> None:
    """Make every handler of `logger` mask its output."""
    for handler in logger.handlers:
        if not isinstance(handler.formatter, PiiMaskingFormatter):
            handler.setFormatter(PiiMaskingFormatter(handler.formatter))


def install_pii_filter() -> None:
    """Mask every record as it is made, and every formatted line of the root logger's handlers."""
    root = logging.getLogger()
    if not any(isinstance(f, PiiMaskingFilter) for f in root.filters):
        root.addFilter(PiiMaskingFilter())
    wrap_handler_formatters(root)
    # Filters on a logger do not see records of child loggers; a record factory does.
    old_factory = logging.getLogRecordFactory()
    if getattr(old_factory, "masks_pii", False):
        return

    def factory(*args, **kwargs):
        return mask_record(old_factory(*args, **kwargs))

    factory.masks_pii = True
    logging.setLogRecordFactory(factory)


TEXT_FORMAT = "%(asctime)s %(levelname)s %(name)s [%(request_id)s] %(message)s"
# What a request's log line carries besides its message (see core.metrics.finish_request).
REQUEST_FIELDS = ("method", "path", "route", "status", "duration_ms", "user")


class RequestIdFilter(logging.Filter):
    """Give every record the id of the request it was written in ("-" outside a request)."""

    def filter(self, record: logging.LogRecord) -> bool:
        if not hasattr(record, "request_id"):
            record.request_id = (g.get("request_id") if has_request_context() else None) or "-"
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object a line: time (UTC), level, logger, message, request id, a request's fields, traceback."""

    def format(self, record: logging.LogRecord) -> str:
        doc = {"time": dt.datetime.fromtimestamp(record.created, dt.timezone.utc).isoformat(timespec="milliseconds"),
               "level": record.levelname, "logger": record.name, "message": record.getMessage(),
               "request_id": getattr(record, "request_id", "-")}
        doc.update({name: getattr(record, name) for name in REQUEST_FIELDS if hasattr(record, name)})
        if record.exc_info and not record.exc_text:
            record.exc_text = self.formatException(record.exc_info)
        if record.exc_text:
            doc["exception"] = record.exc_text
        return json.dumps(doc, ensure_ascii=False, default=str)


def configure_logging(fmt: str = "text") -> None:
    """Log to stderr at INFO, as text or JSON lines, each with its request id, personal numbers masked."""
    logging.basicConfig(level=logging.INFO, format=TEXT_FORMAT)
    logging.getLogger("unioncard").setLevel(logging.INFO)
    for handler in logging.getLogger().handlers:
        if not any(isinstance(f, RequestIdFilter) for f in handler.filters):
            handler.addFilter(RequestIdFilter())
        # Only the plain stderr handler this function made is ours to reformat; a test runner's are its own.
        if type(handler) is logging.StreamHandler:
            inner = JsonFormatter() if fmt == "json" else logging.Formatter(TEXT_FORMAT)
            handler.setFormatter(inner)
    install_pii_filter()
