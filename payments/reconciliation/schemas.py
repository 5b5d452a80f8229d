"""API shapes of reconciliations, their lines, resolutions and the daily report."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from core.api import PageArgs, StrictSchema, page_schema
from payments import accounts
from payments.reconciliation.models import LineState, ResolutionKind, ResolutionStatus, Source
from payments.reports.schemas import DATE_RANGE

STATES = [s.value for s in LineState]
LINE_FILTERS = [*STATES, "exceptions"]
REPORT_ACCOUNTS = [accounts.BANK, accounts.CLEARING, accounts.IN_TRANSIT]
LANGS = ["zh", "en"]


class ReconciliationUploadSchema(StrictSchema):
    source = fields.Str(required=True, validate=validate.OneOf([s.value for s in Source]),
                        metadata={"description": "`stripe` (balance-transactions CSV export) or `bank` (CSV)"})


class ReconciliationStripeImportSchema(StrictSchema):
    source = fields.Str(required=True, validate=validate.OneOf([Source.STRIPE.value],
                                                               error="Only Stripe is read through its API: upload "
                                                                     "the bank's statement as CSV."))
    since = fields.Date(required=True, validate=DATE_RANGE,
                        metadata={"description": "first business day (Asia/Shanghai)"})
    until = fields.Date(required=True, validate=DATE_RANGE, metadata={"description": "last business day, included"})


class ReconciliationItemSchema(Schema):
    kind = fields.Str(metadata={"description": "payout, funding or top_up"})
    id = fields.Str()
    amount = fields.Int(metadata={"description": "what the statement should show for it, in the statement's sign"})
    status = fields.Str()


class ReconciliationResolutionSchema(Schema):
    id = fields.Str(attribute="public_id")
    reconciliation_id = fields.Function(lambda r: r.reconciliation.public_id)
    line = fields.Int(attribute="line_no")
    group = fields.Int(attribute="group_no")
    lines = fields.Int(metadata={"description": "exception lines of the group it resolves"})
    kind = fields.Function(lambda r: r.kind.value)
    status = fields.Function(lambda r: r.status.value)
    note = fields.Str()
    account = fields.Str(allow_none=True)
    amount = fields.Int(allow_none=True, metadata={
        "description": "an adjustment's amount in the statement's sign: positive credits the account"})
    currency = fields.Str()
    transaction_id = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)


ResolutionPage = page_schema(ReconciliationResolutionSchema, "ReconciliationResolutionPage")


class ReconciliationLineSchema(Schema):
    line = fields.Int(attribute="line_no")
    origin = fields.Function(lambda line: line.origin.value,
                             metadata={"description": "statement (a line of theirs) or internal (ours, no line)"})
    date = fields.Date(attribute="value_date")
    reference = fields.Str(allow_none=True)
    amount = fields.Int(metadata={"description": "fen; positive leaves the account, negative arrives"})
    fee = fields.Int()
    currency = fields.Str()
    description = fields.Str(allow_none=True)
    external_id = fields.Str(allow_none=True)
    type = fields.Str(allow_none=True)
    state = fields.Function(lambda line: line.state.value)
    rule = fields.Function(lambda line: line.rule.value if line.rule else None, allow_none=True)
    group = fields.Int(attribute="group_no")
    difference = fields.Int(allow_none=True, metadata={"description": "the statement's amount minus ours"})
    items = fields.List(fields.Nested(ReconciliationItemSchema))
    resolution = fields.Nested(ReconciliationResolutionSchema, allow_none=True)


class ReconciliationSchema(Schema):
    id = fields.Str(attribute="public_id")
    source = fields.Function(lambda r: r.source.value)
    method = fields.Function(lambda r: r.method.value)
    account = fields.Str()
    filename = fields.Str(allow_none=True)
    sha256 = fields.Str()
    period_start = fields.Date()
    period_end = fields.Date()
    lines_count = fields.Int(metadata={"description": "the statement's lines"})
    matched = fields.Int()
    unmatched_internal = fields.Int()
    unmatched_external = fields.Int()
    mismatched = fields.Int()
    resolved = fields.Int()
    open = fields.Function(lambda r: r.exceptions - r.resolved)
    total_out = fields.Int()
    total_in = fields.Int()
    total_fees = fields.Int()
    currency = fields.Constant("CNY")
    created_at = fields.DateTime()


class ReconciliationDetailSchema(ReconciliationSchema):
    lines = fields.List(fields.Nested(ReconciliationLineSchema))
    lines_next_cursor = fields.Str(allow_none=True)


ReconciliationPage = page_schema(ReconciliationSchema, "ReconciliationPage")


class ReconciliationListQuery(PageArgs):
    source = fields.Str(validate=validate.OneOf([s.value for s in Source]))


class ReconciliationLineQuery(PageArgs):
    state = fields.Str(validate=validate.OneOf(LINE_FILTERS))


class ReconciliationResolveSchema(StrictSchema):
    kind = fields.Str(required=True, validate=validate.OneOf([k.value for k in ResolutionKind]))
    note = fields.Str(required=True, validate=validate.Length(min=1, max=1000))
    amount = fields.Int(strict=True, allow_none=True, validate=validate.Range(min=-10**12, max=10**12), metadata={
        "description": "an adjustment's amount in fen, in the statement's sign; the difference when left out"})


class ReconciliationResolutionQuery(PageArgs):
    status = fields.Str(validate=validate.OneOf([s.value for s in ResolutionStatus]))


class ReconciliationExportQuery(Schema):
    state = fields.Str(validate=validate.OneOf(LINE_FILTERS))
    lang = fields.Str(load_default="zh", validate=validate.OneOf(LANGS))


class ReconciliationReportQuery(Schema):
    date = fields.Date(validate=DATE_RANGE, metadata={"description": "one business day"})
    since = fields.Date(validate=DATE_RANGE)
    until = fields.Date(validate=DATE_RANGE)
    account = fields.Str(validate=validate.OneOf(REPORT_ACCOUNTS))


class ReconciliationReportExportQuery(ReconciliationReportQuery):
    lang = fields.Str(load_default="zh", validate=validate.OneOf(LANGS))


class ReconciliationReportRowSchema(Schema):
    account = fields.Str()
    date = fields.Date(attribute="day")
    currency = fields.Str()
    opening = fields.Int()
    inflow = fields.Int(data_key="in", metadata={"description": "movements growing the balance"})
    outflow = fields.Int(data_key="out", metadata={"description": "movements shrinking it"})
    closing = fields.Int()
    statement_in = fields.Int(allow_none=True)
    statement_out = fields.Int(allow_none=True, metadata={"description": "fees included"})
    statement_net = fields.Int(allow_none=True)
    difference = fields.Int(allow_none=True, metadata={"description": "the books' net movement minus the statement's"})
    reconciliation_id = fields.Str(allow_none=True)


class ReconciliationReportSchema(Schema):
    since = fields.Date()
    until = fields.Date()
    rows = fields.List(fields.Nested(ReconciliationReportRowSchema))
