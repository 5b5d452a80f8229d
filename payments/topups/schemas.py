"""API shapes of top-ups: the member's request, the started top-up with its checkout secret, and the top-up."""

from __future__ import annotations

from marshmallow import Schema, fields

from core.api import StrictSchema


class TopUpCreateSchema(StrictSchema):
    amount = fields.Int(required=True, strict=True,
                        metadata={"description": "fen; within TOPUP_MIN_AMOUNT and TOPUP_MAX_AMOUNT"})


class TopUpSchema(Schema):
    id = fields.Str(attribute="public_id")
    status = fields.Function(lambda t: t.status.value,
                             metadata={"description": "`pending`, `succeeded`, `failed` or `canceled`"})
    amount = fields.Int(metadata={"description": "fen"})
    currency = fields.Str()
    member_id = fields.Function(lambda t: t.member.public_id)
    card_id = fields.Function(lambda t: t.card.public_id)
    credited_card_id = fields.Function(lambda t: t.credited_card.public_id if t.credited_card else None,
                                       metadata={"description": "the card credited: the successor of a card "
                                                                "replaced before the payment arrived"})
    payment_intent_id = fields.Str()
    transaction_id = fields.Str(allow_none=True, metadata={"description": "the ledger transaction that credited it"})
    refund_due = fields.Bool(metadata={"description": "Stripe took the money but it could not be credited; "
                                                      "finance refunds it"})
    failure_code = fields.Str(allow_none=True)
    failure_message = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class TopUpCreatedSchema(Schema):
    id = fields.Str()
    status = fields.Str()
    amount = fields.Int()
    currency = fields.Str()
    card_id = fields.Str()
    payment_intent_id = fields.Str()
    client_secret = fields.Str(metadata={"description": "for the member's Stripe checkout only; never stored"})
