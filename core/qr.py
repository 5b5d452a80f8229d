"""QR code images (SVG and PNG) through the qrcode library."""

from __future__ import annotations

import io

import qrcode
import qrcode.image.svg
from qrcode.constants import ERROR_CORRECT_M

MAX_PAYLOAD = 512


def _code(payload: str) -> qrcode.QRCode:
    if not payload or len(payload) > MAX_PAYLOAD:
        raise ValueError("QR payload must be 1-512 characters")
    code = qrcode.QRCode(error_correction=ERROR_CORRECT_M, box_size=10, border=4)
    code.add_data(payload)
    code.make(fit=True)
    return code


def svg(payload: str) -> bytes:
    """Render the payload as an SVG QR code."""
    return _code(payload).make_image(image_factory=qrcode.image.svg.SvgPathImage).to_string()


def png(payload: str) -> bytes:
    """Render the payload as a PNG QR code."""
    out = io.BytesIO()
    _code(payload).make_image().save(out, format="PNG")
    return out.getvalue()
