"""API shapes of offers: what a union admin or a merchant owner writes, and what everyone reads."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from benefits.models import LimitPeriod, OfferCategory, OfferFunding, OfferKind, OfferStatus
from benefits.service import MAX_FEN, MAX_LIMIT_COUNT, MAX_PRIORITY, MAX_UNIONS, limit_of
from core.api import PageArgs, StrictSchema, UtcDateTime, page_schema
from merchants.models import MerchantCategory

HHMM = validate.Regexp(r"^(?:[01][0-9]|2[0-3]):[0-5][0-9]$", error="Give a time of day as HH:MM, such as 09:00.")
PUBLIC_ID = validate.Length(min=1, max=40)


def _fen(low: int = 0) -> validate.Range:
    return validate.Range(min=low, max=MAX_FEN)


class OfferLimitInputSchema(StrictSchema):
    count = fields.Int(strict=True, allow_none=True, validate=validate.Range(min=1, max=MAX_LIMIT_COUNT),
                       metadata={"description": "Times a member may use the offer in a period"})
    amount = fields.Int(strict=True, allow_none=True, validate=_fen(1),
                        metadata={"description": "Discount a member may get in a period, fen"})
    period = fields.Enum(LimitPeriod, by_value=True, required=True)


class OfferEligibilityInputSchema(StrictSchema):
    hardship_only = fields.Bool(metadata={"description": "Only for members on the hardship register"})
    union_ids = fields.List(fields.Str(validate=PUBLIC_ID), allow_none=True,
                            validate=validate.Length(max=MAX_UNIONS),
                            metadata={"description": "Unions whose members (and their sub-unions') it is for; "
                                                     "empty for all members"})


class OfferInputSchema(StrictSchema):
    merchant_id = fields.Str(allow_none=True, validate=PUBLIC_ID,
                             metadata={"description": "The merchant's public id; a merchant owner's own always"})
    title = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    description = fields.Str(validate=validate.Length(max=1000))
    category = fields.Enum(OfferCategory, by_value=True, allow_none=True,
                           metadata={"description": "The 普惠 family; defaults to the merchant's"})
    merchant_category = fields.Enum(MerchantCategory, by_value=True, allow_none=True,
                                    metadata={"description": "Narrows a family-wide offer to merchants of one trade"})
    kind = fields.Enum(OfferKind, by_value=True, required=True)
    value = fields.Int(required=True, strict=True, validate=_fen(),
                       metadata={"description": "Basis points for percent_off (1-10000), else fen"})
    min_spend = fields.Int(strict=True, validate=_fen())
    max_discount = fields.Int(strict=True, allow_none=True, validate=_fen(1))
    funding = fields.Enum(OfferFunding, by_value=True, required=True)
    union_share_bp = fields.Int(strict=True, validate=validate.Range(min=0, max=10_000),
                                metadata={"description": "The union's share of a split discount (1-9999)"})
    program_id = fields.Str(allow_none=True, validate=PUBLIC_ID,
                            metadata={"description": "The active aid program paying union or split funding"})
    starts_at = UtcDateTime(metadata={"description": "Defaults to now"})
    ends_at = UtcDateTime(allow_none=True)
    weekdays = fields.List(fields.Int(strict=True, validate=validate.Range(min=1, max=7)), allow_none=True,
                           validate=validate.Length(max=7), metadata={"description": "ISO days, 1 = Monday"})
    hours_from = fields.Str(allow_none=True, validate=HHMM, metadata={"description": "Local time, Asia/Shanghai"})
    hours_to = fields.Str(allow_none=True, validate=HHMM)
    per_member_limit = fields.Nested(OfferLimitInputSchema, allow_none=True)
    budget_amount = fields.Int(strict=True, allow_none=True, validate=_fen(1),
                               metadata={"description": "Discount the offer may give in all, across its versions"})
    eligibility = fields.Nested(OfferEligibilityInputSchema, allow_none=True)
    stackable = fields.Bool()
    priority = fields.Int(strict=True, validate=validate.Range(min=-MAX_PRIORITY, max=MAX_PRIORITY))


class OfferUpdateSchema(OfferInputSchema):
    title = fields.Str(validate=validate.Length(min=1, max=100))
    kind = fields.Enum(OfferKind, by_value=True)
    value = fields.Int(strict=True, validate=_fen())
    funding = fields.Enum(OfferFunding, by_value=True)


def _value(attribute: str):
    return fields.Function(lambda o: getattr(getattr(o, attribute), "value", None), allow_none=True)


class OfferSchema(Schema):
    id = fields.Str(attribute="public_id")
    lineage = fields.Str(metadata={"description": "The offer across its versions: its first version's id"})
    version = fields.Int()
    status = _value("status")
    merchant_id = fields.Function(lambda o: o.merchant.public_id if o.merchant is not None else None,
                                  allow_none=True)
    title = fields.Str()
    description = fields.Str()
    category = _value("category")
    merchant_category = _value("merchant_category")
    kind = _value("kind")
    value = fields.Int()
    currency = fields.Constant("CNY")
    min_spend = fields.Int()
    max_discount = fields.Int(allow_none=True)
    funding = _value("funding")
    union_share_bp = fields.Int()
    program_id = fields.Str(allow_none=True)
    starts_at = fields.DateTime()
    ends_at = fields.DateTime(allow_none=True)
    weekdays = fields.List(fields.Int(), allow_none=True)
    hours_from = fields.Str(allow_none=True)
    hours_to = fields.Str(allow_none=True)
    per_member_limit = fields.Function(limit_of, allow_none=True)
    budget_amount = fields.Int(allow_none=True)
    eligibility = fields.Function(lambda o: {"hardship_only": o.hardship_only, "union_ids": list(o.union_ids or [])})
    stackable = fields.Bool()
    priority = fields.Int()
    decision_comment = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    proposed_at = fields.DateTime(allow_none=True)
    published_at = fields.DateTime(allow_none=True)
    ended_at = fields.DateTime(allow_none=True)


class OfferQuery(PageArgs):
    status = fields.Enum(OfferStatus, by_value=True)
    merchant_id = fields.Str(validate=PUBLIC_ID)
    category = fields.Enum(OfferCategory, by_value=True)
    q = fields.Str(validate=validate.Length(min=1, max=100))


class OfferWithdrawalSchema(StrictSchema):
    comment = fields.Str(load_default=None, allow_none=True, validate=validate.Length(max=500))


class OfferRejectionSchema(StrictSchema):
    comment = fields.Str(required=True, validate=validate.Length(min=1, max=500),
                         metadata={"description": "Why, for the merchant"})


OfferPage = page_schema(OfferSchema, "OfferPage")
