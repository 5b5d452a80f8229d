"""API shapes of payments and refunds (amounts in fen, CNY)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from core.api import StrictSchema

ID = fields.Str(validate=validate.Length(min=1, max=40))


class PaymentCreateSchema(StrictSchema):
    store_id = fields.Str(required=True, validate=validate.Length(min=1, max=40))
    amount = fields.Int(required=True, strict=True)
    currency = fields.Str(load_default="CNY", validate=validate.Length(equal=3))
    payment_code = fields.Str(validate=validate.Length(min=1, max=40))
    card_id = fields.Str(validate=validate.Length(min=1, max=40))
    pin = fields.Str(validate=validate.Length(min=1, max=16), load_only=True)


class PursePaidSchema(Schema):
    purse = fields.Str(attribute="purse_kind")
    program_id = fields.Str(allow_none=True)
    amount = fields.Int()
    refunded = fields.Int()


class AppliedOfferSchema(Schema):
    offer_id = fields.Function(lambda po: po.offer_public_id)
    lineage = fields.Str()
    discount = fields.Int()
    union_share = fields.Int()
    program_id = fields.Str(allow_none=True)


class FundingSchema(Schema):
    merchant = fields.Int(attribute="merchant_share")
    union = fields.Int(attribute="union_share")
    program_id = fields.Str(allow_none=True)


class RefundSchema(Schema):
    id = fields.Str(attribute="public_id")
    payment_id = fields.Function(lambda r: r.payment.public_id)
    amount = fields.Int()
    union_back = fields.Int()
    currency = fields.Constant("CNY")
    reason = fields.Str()
    legs = fields.Function(lambda r: [{"to": leg["to"], "amount": leg["amount"], "program_id": leg["program_id"]}
                                      for leg in r.legs])
    transaction_id = fields.Str()
    created_at = fields.DateTime()


class PaymentSchema(Schema):
    id = fields.Str(attribute="public_id")
    status = fields.Function(lambda p: p.status.value)
    amount = fields.Int()
    discount = fields.Int()
    charged = fields.Int()
    currency = fields.Str()
    offer_id = fields.Str(allow_none=True)
    funding = fields.Function(lambda p: FundingSchema().dump(p))
    offers = fields.List(fields.Nested(AppliedOfferSchema))
    purses = fields.List(fields.Nested(PursePaidSchema))
    refunded = fields.Int()
    method = fields.Function(lambda p: p.method.value)
    store_id = fields.Function(lambda p: p.store.public_id)
    merchant_id = fields.Function(lambda p: p.merchant.public_id)
    card_id = fields.Function(lambda p: p.card.public_id)
    transaction_id = fields.Str(allow_none=True)
    pricing_notes = fields.List(fields.Dict())
    refunds = fields.List(fields.Nested(RefundSchema))
    created_at = fields.DateTime()


class RefundCreateSchema(StrictSchema):
    amount = fields.Int(required=True, strict=True)
    reason = fields.Str(load_default="", validate=validate.Length(max=200))
