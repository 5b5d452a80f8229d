"""API shapes of the ledger's read-only reports."""

from __future__ import annotations

from marshmallow import Schema, fields


class VerifyReportSchema(Schema):
    ok = fields.Bool(required=True)
    problems = fields.List(fields.Dict(), required=True)
    checked = fields.Dict(keys=fields.Str(), values=fields.Int())


class TrialBalanceRowSchema(Schema):
    group = fields.Str(required=True, metadata={"description": "The account code up to its first colon"})
    currency = fields.Str(required=True)
    accounts = fields.Int(required=True)
    debits = fields.Int(required=True, metadata={"description": "Sum of the debit balances, minor units"})
    credits = fields.Int(required=True, metadata={"description": "Sum of the credit balances, minor units"})
    balance = fields.Int(required=True, metadata={"description": "debits - credits"})


class TrialBalanceTotalSchema(Schema):
    currency = fields.Str(required=True)
    debits = fields.Int(required=True)
    credits = fields.Int(required=True)
    balance = fields.Int(required=True, metadata={"description": "Zero when the books balance"})


class TrialBalanceSchema(Schema):
    data = fields.List(fields.Nested(TrialBalanceRowSchema), required=True)
    totals = fields.List(fields.Nested(TrialBalanceTotalSchema), required=True)
    balanced = fields.Bool(required=True)
