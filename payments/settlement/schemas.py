"""API shapes of settlements (amounts in fen, CNY)."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from core.api import PageArgs, StrictSchema, page_schema
from payments.settlement.models import SettlementStatus


class SettleRequestSchema(StrictSchema):
    business_date = fields.Date(required=True, metadata={"description": "The business day (Asia/Shanghai)"})


class SettlementQuery(PageArgs):
    business_date = fields.Date()
    merchant_id = fields.Str(validate=validate.Length(min=1, max=40))
    status = fields.Enum(SettlementStatus, by_value=True)


class SettlementSchema(Schema):
    id = fields.Str(attribute="public_id")
    merchant_id = fields.Function(lambda s: s.merchant.public_id)
    merchant_name = fields.Function(lambda s: s.merchant.name)
    business_date = fields.Date()
    currency = fields.Str()
    status = fields.Function(lambda s: s.status.value)
    payments_count = fields.Int()
    amount = fields.Int(metadata={"description": "List prices of the payments"})
    discount = fields.Int()
    charged = fields.Int(metadata={"description": "What members' cards paid"})
    union_subsidy = fields.Int(metadata={"description": "The union's share of discounts, receivable from programs"})
    refunds_count = fields.Int()
    refunded = fields.Int()
    union_refunded = fields.Int()
    fee = fields.Int()
    carried_in = fields.Int(metadata={"description": "Earlier negative nets and returned payouts taken in"})
    net = fields.Int(metadata={"description": "charged + union_subsidy - refunded - union_refunded - fee + carried_in"})
    transaction_id = fields.Str(allow_none=True)
    payout_due_on = fields.Date()
    payout_id = fields.Str(allow_none=True, dump_default=None)
    payout_status = fields.Str(allow_none=True, dump_default=None)
    created_at = fields.DateTime()


class SettleRunSchema(Schema):
    business_date = fields.Date(required=True)
    created = fields.Int(required=True, metadata={"description": "Settlements made by this request"})
    data = fields.List(fields.Nested(SettlementSchema), required=True,
                       metadata={"description": "Every settlement of the day, including earlier runs'"})


class StatementLineSchema(Schema):
    kind = fields.Str()
    id = fields.Str()
    created_at = fields.DateTime()
    amount = fields.Int()
    discount = fields.Int()
    charged = fields.Int()
    union_share = fields.Int()
    to_merchant = fields.Int()


class StatementQuery(Schema):
    limit = fields.Int(load_default=200, validate=validate.Range(min=1, max=1000))
    offset = fields.Int(load_default=0, validate=validate.Range(min=0, max=10_000_000))


class StatementSchema(Schema):
    settlement = fields.Nested(SettlementSchema, required=True)
    lines = fields.List(fields.Nested(StatementLineSchema), required=True)


SettlementPage = page_schema(SettlementSchema, "SettlementPage")
