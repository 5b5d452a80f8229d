"""API shapes of the finance reports: the period asked for, and programs' and merchants' figures."""

from __future__ import annotations

import datetime as dt

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

from core.api import PageArgs
from merchants.models import MerchantCategory

EARLIEST = dt.date(2000, 1, 1)
LATEST = dt.date(2100, 12, 31)
DATE_RANGE = validate.Range(min=EARLIEST, max=LATEST, error="A date from 2000-01-01 to 2100-12-31.")
ID = validate.Length(min=1, max=40)


class ReportPeriodArgs(Schema):
    """Business days (Asia/Shanghai) from `from` to `to`, both included; either may be left open."""

    from_ = fields.Date(data_key="from", load_default=None, validate=DATE_RANGE,
                        metadata={"description": "First business day (YYYY-MM-DD, Asia/Shanghai)"})
    to = fields.Date(load_default=None, validate=DATE_RANGE,
                     metadata={"description": "Last business day, included"})

    @validates_schema
    def _in_order(self, data, **_kwargs):
        if data.get("from_") and data.get("to") and data["to"] < data["from_"]:
            raise ValidationError("The end of the period comes before its start.", "to")


class ProgramReportArgs(ReportPeriodArgs, PageArgs):
    program_id = fields.List(fields.Str(validate=ID), load_default=None, validate=validate.Length(max=200),
                             metadata={"description": "Only these programs (repeat the parameter)"})
    by = fields.Str(load_default="program", validate=validate.OneOf(["program", "month"]),
                    metadata={"description": "`month` adds each program's figures by business month "
                                             "(needs `from` and `to`, at most 36 months)"})

    @validates_schema
    def _months_need_a_period(self, data, **_kwargs):
        if data.get("by") == "month" and not (data.get("from_") and data.get("to")):
            raise ValidationError("Figures by month need `from` and `to`.", "by")


class MerchantReportArgs(ReportPeriodArgs, PageArgs):
    merchant_id = fields.Str(load_default=None, validate=ID,
                             metadata={"description": "One merchant (a merchant's owner or manager: their own)"})
    category = fields.Str(load_default=None, validate=validate.OneOf([c.value for c in MerchantCategory]))
    region = fields.Str(load_default=None, validate=validate.Regexp(r"^\d{6}$", error="A 6-digit region code."),
                        metadata={"description": "Administrative division code; covers its sub-regions"})


def _fen(description: str):
    return fields.Int(required=True, metadata={"description": description + " (fen)"})


class ProgramReportMonthSchema(Schema):
    month = fields.Str(required=True, metadata={"description": "YYYY-MM, Asia/Shanghai"})
    funded = _fen("Approved fundings")
    disbursed = _fen("Paid onto cards, less claw-backs")
    spent = _fen("Spent at merchants from the program's aid purses net of refunds, plus `subsidised`")
    subsidised = _fen("The union's share of offer discounts paid from the budget, net of refunds")
    expired = _fen("Swept back from aid purses at expiry")
    returned = _fen("Back to the budget: failed lines' reserve, claw-backs, refunds of expired aid")
    clawed_back = _fen("Taken back from cards (part of `returned`, left out of `disbursed`)")


class ProgramReportRowSchema(ProgramReportMonthSchema):
    class Meta:
        exclude = ("month",)

    id = fields.Str(attribute="program_id", required=True)
    name = fields.Str(required=True)
    currency = fields.Str(required=True)
    balance = _fen("In the budget now")
    months = fields.List(fields.Nested(ProgramReportMonthSchema),
                         metadata={"description": "With `by=month`: the figures of each month of the period"})


class ProgramReportSchema(Schema):
    from_ = fields.Date(data_key="from", allow_none=True, required=True)
    to = fields.Date(allow_none=True, required=True)
    data = fields.List(fields.Nested(ProgramReportRowSchema), required=True)
    next_cursor = fields.Str(allow_none=True, required=True)


class MerchantReportRowSchema(Schema):
    id = fields.Str(attribute="merchant_id", required=True)
    name = fields.Str(required=True)
    category = fields.Str(required=True)
    region = fields.Str(required=True)
    status = fields.Str(required=True)
    currency = fields.Str(required=True)
    receivable = _fen("Owed to the merchant now: `payable` + `in_transit`")
    payable = _fen("Its payable's balance now, not yet settled")
    in_transit = _fen("Settled, in payouts not yet paid")
    paid = _fen("Payouts paid in the period")
    payments = fields.Int(required=True, metadata={"description": "Card payments taken in the period"})
    sales = _fen("What cards were charged in the period")
    union_subsidy = _fen("The union's share of discounts, paid from program budgets")
    refunds = fields.Int(required=True, metadata={"description": "Refunds given in the period"})
    refunded = _fen("Given back to cards (or to programs, for expired aid)")
    union_refunded = _fen("Subsidy given back to programs")
    settled = _fen("Nets of its settlements of business days in the period")
    fees = _fen("Settlement fees of those settlements")


class MerchantReportSchema(Schema):
    from_ = fields.Date(data_key="from", allow_none=True, required=True)
    to = fields.Date(allow_none=True, required=True)
    data = fields.List(fields.Nested(MerchantReportRowSchema), required=True)
    next_cursor = fields.Str(allow_none=True, required=True)
