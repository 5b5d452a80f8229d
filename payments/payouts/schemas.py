"""API shapes of payouts and bank transfer files: finance's view of a payout, the merchant's narrower
one, the bank file, its bank's answer, and a run of sending Stripe payouts. Account numbers are masked
in all of them: the full number is only ever in the bank file itself."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from core.api import PageArgs, StrictSchema, page_schema
from payments.payouts.models import ExceptionStatus, PayoutStatus


def _bank_account(payout) -> dict | None:
    merchant = payout.merchant
    if payout.method.value != "bank":
        return None
    return {"bank_name": merchant.bank_name, "account_name": merchant.bank_account_name,
            "account_number_masked": merchant.bank_account_masked}


class BankAccountSchema(Schema):
    bank_name = fields.Str(allow_none=True)
    account_name = fields.Str(allow_none=True)
    account_number_masked = fields.Str(allow_none=True, metadata={"description": "the last four digits only"})


BANK_ACCOUNT = fields.Function(_bank_account, metadata={"description": "the merchant's bank account (bank "
                                                                       "payouts), its number masked"})
STATUS = fields.Function(lambda p: p.status.value, metadata={
    "description": "`pending_approval`, `ready`, `submitted`, `paid` or `failed`"})


class MerchantPayoutSchema(Schema):
    """A payout as its merchant's owner and managers see it."""

    id = fields.Str(attribute="public_id")
    merchant_id = fields.Function(lambda p: p.merchant.public_id)
    settlement_id = fields.Function(lambda p: p.refs.settlement_id)
    amount = fields.Int(metadata={"description": "fen"})
    currency = fields.Str()
    method = fields.Function(lambda p: p.method.value, metadata={"description": "`bank` or `stripe`"})
    status = STATUS
    due_on = fields.Date()
    bank_account = BANK_ACCOUNT
    submitted_at = fields.DateTime(allow_none=True)
    paid_at = fields.DateTime(allow_none=True)
    failed_at = fields.DateTime(allow_none=True)
    failure_message = fields.Str(allow_none=True)
    carried_into_id = fields.Function(lambda p: p.refs.carried_into_id, metadata={
        "description": "the settlement that took a failed payout's money in again"})
    created_at = fields.DateTime()


class PayoutSchema(MerchantPayoutSchema):
    """A payout as finance and auditors see it."""

    merchant_name = fields.Function(lambda p: p.merchant.name)
    requires_approval = fields.Bool()
    created_by = fields.Function(lambda p: p.refs.created_by, metadata={"description": "the user who settled it"})
    approved_by = fields.Function(lambda p: p.refs.approved_by)
    approved_at = fields.DateTime(allow_none=True)
    stripe_account_id = fields.Str(allow_none=True)
    stripe_transfer_id = fields.Str(allow_none=True)
    stripe_payout_id = fields.Str(allow_none=True)
    bank_file_id = fields.Function(lambda p: p.refs.bank_file_id)
    status_at = fields.DateTime(allow_none=True, metadata={"description": "when the provider last reported on it"})
    failure_code = fields.Str(allow_none=True)
    last_error = fields.Str(allow_none=True, metadata={"description": "why the last attempt to send it failed"})
    attempts = fields.Int()
    paid_transaction_id = fields.Str(allow_none=True)
    returned_transaction_id = fields.Str(allow_none=True, metadata={
        "description": "the ledger transaction that gave a failed payout's money back to the merchant's payable"})
    exception_status = fields.Function(lambda p: p.exception_status.value if p.exception_status else None,
                                       metadata={"description": "`open` for a failed payout until resolved"})
    exception_note = fields.Str(allow_none=True)
    resolved_by = fields.Function(lambda p: p.refs.resolved_by)
    resolved_at = fields.DateTime(allow_none=True)


PayoutPage = page_schema(PayoutSchema, "PayoutPage")
MerchantPayoutPage = page_schema(MerchantPayoutSchema, "MerchantPayoutPage")


class PayoutQuery(PageArgs):
    status = fields.Enum(PayoutStatus, by_value=True)
    exception_status = fields.Enum(ExceptionStatus, by_value=True)
    merchant_id = fields.Str(validate=validate.Length(max=40))


class ResolveSchema(StrictSchema):
    note = fields.Str(required=True, validate=validate.Length(min=1, max=1000),
                      metadata={"description": "what was done about the failed payout"})


class SendResultSchema(Schema):
    payout_id = fields.Str()
    status = fields.Str()
    error = fields.Str(allow_none=True)


class SendReportSchema(Schema):
    sent = fields.Int(metadata={"description": "payouts sent to Stripe now"})
    failed = fields.Int(metadata={"description": "payouts Stripe did not take: they stay ready, with the error"})
    results = fields.List(fields.Nested(SendResultSchema))


class BankFilePayoutSchema(Schema):
    id = fields.Str(attribute="public_id")
    merchant_id = fields.Function(lambda p: p.merchant.public_id)
    merchant_name = fields.Function(lambda p: p.merchant.name)
    amount = fields.Int()
    currency = fields.Str()
    status = STATUS
    bank_account = BANK_ACCOUNT


class BankFileSchema(Schema):
    id = fields.Str(attribute="public_id")
    payouts_count = fields.Int()
    total = fields.Int(metadata={"description": "fen"})
    currency = fields.Str()
    sha256 = fields.Str(metadata={"description": "of the file as generated; every download is the same file"})
    created_at = fields.DateTime()
    answered_at = fields.DateTime(allow_none=True, metadata={"description": "when the bank's answer was last "
                                                                            "imported"})


class BankFileDetailSchema(BankFileSchema):
    payouts = fields.List(fields.Nested(BankFilePayoutSchema))


BankFilePage = page_schema(BankFileSchema, "BankFilePage")


class AnswerLineSchema(Schema):
    line = fields.Int()
    reference = fields.Str()
    status = fields.Str(allow_none=True)
    outcome = fields.Str(metadata={"description": "`paid`, `failed`, `returned` (failed after paid), `unchanged` "
                                                  "or `error`"})
    error = fields.Str(allow_none=True)
    message = fields.Str(allow_none=True)


class AnswerImportSchema(Schema):
    bank_file_id = fields.Function(lambda a: a.bank_file.public_id)
    paid = fields.Function(lambda a: a.count("paid"))
    failed = fields.Function(lambda a: a.count("failed"))
    returned = fields.Function(lambda a: a.count("returned"))
    unchanged = fields.Function(lambda a: a.count("unchanged"))
    errors = fields.Function(lambda a: a.count("error"))
    lines = fields.List(fields.Nested(AnswerLineSchema), attribute="results")
