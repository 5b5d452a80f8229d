"""Field encryption for personal data, blind indexes for exact look-up, and masking for display."""

from __future__ import annotations

import base64
import hashlib
import hmac
import os

from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

VERSION = "v1"


def _derive(master: bytes, purpose: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose).derive(master)


def _decode_key(data_key: str) -> bytes:
    raw = data_key.encode()
    for decoder in (base64.urlsafe_b64decode, base64.b64decode, bytes.fromhex):
        try:
            key = decoder(raw if decoder is not bytes.fromhex else data_key)
        except (ValueError, TypeError):
            continue
        if len(key) >= 32:
            return key
    # A passphrase: stretch it so short keys do not become short AES keys.
    return hashlib.sha256(raw).digest()


class FieldCipher:
    """Encrypt and index personal fields with keys derived from DATA_KEY."""

    def __init__(self, data_key: str):
        master = _decode_key(data_key)
        self._aead = AESGCM(_derive(master, b"unioncard field encryption"))
        self._index_key = _derive(master, b"unioncard blind index")

    def encrypt(self, plaintext: str, context: str) -> str:
        """Encrypt a value, bound to its context (e.g. 'member.id_number')."""
        nonce = os.urandom(12)
        sealed = self._aead.encrypt(nonce, plaintext.encode(), context.encode())
        return VERSION + ":" + base64.urlsafe_b64encode(nonce + sealed).decode()

    def decrypt(self, token: str, context: str) -> str:
        """Decrypt a value sealed by encrypt() for the same context."""
        version, _, body = token.partition(":")
        if version != VERSION:
            raise ValueError("unknown ciphertext version")
        raw = base64.urlsafe_b64decode(body)
        return self._aead.decrypt(raw[:12], raw[12:], context.encode()).decode()

    def blind_index(self, value: str, context: str) -> str:
        """Return a keyed hash of a normalized value for exact-match look-up."""
        mac = hmac.new(self._index_key, context.encode() + b"\x00" + value.encode(), hashlib.sha256)
        return mac.hexdigest()


def mask_id_number(value: str) -> str:
    """Show an ID number as its first four and last four characters, e.g. 1101**********002X."""
    if len(value) <= 8:
        return "*" * len(value)
    return value[:4] + "*" * (len(value) - 8) + value[-4:]


def mask_phone(value: str) -> str:
    """Show a mobile number as 138****1234."""
    if len(value) < 7:
        return "*" * len(value)
    return value[:3] + "*" * (len(value) - 7) + value[-4:]


def mask_account_number(value: str) -> str:
    """Show a bank account number as its last four digits only."""
    return "*" * max(0, len(value) - 4) + value[-4:]
