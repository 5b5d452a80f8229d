"""API shapes of cards, purses, statements, payment codes and bulk issuance runs; numbers only masked."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from cards.models import CardStatus
from core.api import PageArgs, StrictSchema, page_schema

PIN = fields.Str(validate=validate.Length(min=1, max=16), load_only=True)


class CardCreateSchema(StrictSchema):
    member_id = fields.Str(required=True, validate=validate.Length(min=1, max=40))


class CardSchema(Schema):
    id = fields.Str(attribute="public_id")
    number_masked = fields.Str()
    status = fields.Function(lambda c: c.status.value)
    member_id = fields.Function(lambda c: c.member.public_id)
    pin_set = fields.Function(lambda c: c.pin_hash is not None)
    frozen_by_staff = fields.Bool()
    replaces_id = fields.Function(lambda c: c.replaces.public_id if c.replaces_id else None)
    issued_at = fields.DateTime()
    activated_at = fields.DateTime(allow_none=True)
    closed_at = fields.DateTime(allow_none=True)


CardPage = page_schema(CardSchema, "CardPage")


class CardQuery(PageArgs):
    member_id = fields.Str(validate=validate.Length(max=40))
    union_id = fields.Str(validate=validate.Length(max=40))
    status = fields.Enum(CardStatus, by_value=True)


class CardNumberSchema(Schema):
    id = fields.Str()
    number = fields.Str()


class PinSchema(StrictSchema):
    pin = fields.Str(required=True, validate=validate.Length(min=1, max=16), load_only=True)
    current_pin = PIN


class PurseSchema(Schema):
    purse = fields.Str(metadata={"description": "`general`, or `restricted` (an aid program's purse)"})
    program_id = fields.Str(allow_none=True)
    label = fields.Str()
    amount = fields.Int(metadata={"description": "posted balance in fen"})
    available = fields.Int(metadata={"description": "what may be spent now: the balance less payments in progress"})
    currency = fields.Str()
    expires_at = fields.DateTime(allow_none=True)
    allowed_categories = fields.List(fields.Str(), allow_none=True,
                                     metadata={"description": "merchant categories it may be spent at; null: any"})


class BalancesSchema(Schema):
    card_id = fields.Str()
    currency = fields.Str()
    total = fields.Int()
    data = fields.List(fields.Nested(PurseSchema), required=True)
    next_cursor = fields.Str(allow_none=True)


class CardTransactionSchema(Schema):
    id = fields.Str(attribute="transaction_id")
    kind = fields.Str()
    reference = fields.Str(allow_none=True)
    description = fields.Function(lambda line: (line.metadata or {}).get("description"))
    created_at = fields.DateTime()
    amount = fields.Int(metadata={"description": "signed: positive money in, negative money out"})
    balance = fields.Int(metadata={"description": "the card's total balance after this line"})


CardTransactionPage = page_schema(CardTransactionSchema, "CardTransactionPage")


class PaymentCodeSchema(Schema):
    code = fields.Str(metadata={"description": "18 digits; show as QR or barcode, good once, until expires_at"})
    card_id = fields.Str()
    expires_at = fields.DateTime()
    expires_in = fields.Int(metadata={"description": "seconds left: trust this over the device's clock"})
    svg_url = fields.Str()
    png_url = fields.Str()


class IssuanceCreateSchema(StrictSchema):
    union_id = fields.Str(required=True, validate=validate.Length(min=1, max=40))


class IssuanceSchema(Schema):
    id = fields.Str(attribute="public_id")
    union_id = fields.Function(lambda r: r.union.public_id)
    status = fields.Function(lambda r: r.status.value)
    total = fields.Int()
    processed = fields.Int()
    issued = fields.Int()
    skipped = fields.Int()
    error = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
