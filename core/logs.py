"""Logging that never shows a resident ID number or mobile number whole."""

from __future__ import annotations

import logging
import re

from core.crypto import mask_id_number, mask_phone

ID_NUMBER_RE = re.compile(r"(?<![0-9])[1-9][0-9]{16}[0-9Xx](?![0-9A-Za-z])")
PHONE_RE = re.compile(r"(?<![0-9])1[3-9][0-9]{9}(?![0-9])")


def mask_pii(text: str) -> str:
    """Mask anything shaped like an ID number or a mobile number in free text."""
    text = ID_NUMBER_RE.sub(lambda m: mask_id_number(m.group(0)), text)
    return PHONE_RE.sub(lambda m: mask_phone(m.group(0)), text)


class PiiMaskingFilter(logging.Filter):
    """Rewrite each record's message with personal numbers masked."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        masked = mask_pii(message)
        if masked != message:
            record.msg, record.args = masked, None
        return True


def install_pii_filter() -> None:
    """Attach the masking filter to the root logger's handlers and to every new record."""
    root = logging.getLogger()
    if not any(isinstance(f, PiiMaskingFilter) for f in root.filters):
        root.addFilter(PiiMaskingFilter())
    # Filters on a logger do not see records of child loggers; a record factory does.
    old_factory = logging.getLogRecordFactory()
    if getattr(old_factory, "masks_pii", False):
        return

    def factory(*args, **kwargs):
        record = old_factory(*args, **kwargs)
        PiiMaskingFilter().filter(record)
        return record

    factory.masks_pii = True
    logging.setLogRecordFactory(factory)
