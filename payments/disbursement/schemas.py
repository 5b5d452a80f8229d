"""API shapes of aid programs, fundings, disbursement batches, their lines and claw-backs."""

from __future__ import annotations

from marshmallow import Schema, fields, validate

from core.api import PageArgs, StrictSchema, UtcDateTime, page_schema
from merchants.models import MerchantCategory
from payments.disbursement.models import LineStatus, ProgramKind, PursePolicy

AMOUNT = fields.Int(required=True, strict=True, validate=validate.Range(min=1, max=10**12))


class ProgramCreateSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    kind = fields.Enum(ProgramKind, by_value=True, required=True)
    purse = fields.Enum(PursePolicy, by_value=True, required=True)
    union_id = fields.Str(required=True, validate=validate.Length(min=1, max=40))
    allowed_categories = fields.List(fields.Str(validate=validate.OneOf([c.value for c in MerchantCategory])),
                                     validate=validate.Length(max=20), allow_none=True)
    expires_at = UtcDateTime(allow_none=True)
    max_line_amount = fields.Int(strict=True, validate=validate.Range(min=1, max=100_000_000))


class ProgramSchema(Schema):
    id = fields.Str(attribute="public_id")
    name = fields.Str()
    kind = fields.Function(lambda p: p.kind.value)
    purse = fields.Function(lambda p: p.purse.value)
    allowed_categories = fields.List(fields.Str(), allow_none=True)
    expires_at = fields.DateTime(allow_none=True)
    union_id = fields.Function(lambda p: p.union.public_id)
    max_line_amount = fields.Int()
    status = fields.Function(lambda p: p.status.value)
    budget_account = fields.Str()
    created_at = fields.DateTime()


class ProgramFiguresSchema(Schema):
    funded = fields.Int()
    available = fields.Int()
    reserved = fields.Int()
    disbursed = fields.Int()


class ProgramDetailSchema(ProgramSchema):
    figures = fields.Nested(ProgramFiguresSchema)


ProgramPage = page_schema(ProgramSchema, "ProgramPage")


class FundingCreateSchema(StrictSchema):
    amount = AMOUNT
    currency = fields.Str(load_default="CNY", validate=validate.OneOf(["CNY"]))
    reference = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    note = fields.Str(load_default="", validate=validate.Length(max=500))


class FundingSchema(Schema):
    id = fields.Str(attribute="public_id")
    program_id = fields.Function(lambda f: f.program.public_id)
    amount = fields.Int()
    currency = fields.Str()
    reference = fields.Str()
    note = fields.Str()
    status = fields.Function(lambda f: f.status.value)
    transaction_id = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)


FundingPage = page_schema(FundingSchema, "FundingPage")


class RuleSchema(StrictSchema):
    amount = AMOUNT
    union_id = fields.Str(validate=validate.Length(min=1, max=40))
    hardship_min_level = fields.Int(strict=True, validate=validate.Range(min=1, max=3))


class RuleBatchSchema(StrictSchema):
    program_id = fields.Str(required=True, validate=validate.Length(min=1, max=40))
    rule = fields.Nested(RuleSchema, required=True)
    note = fields.Str(load_default="", validate=validate.Length(max=500))


class UploadFormSchema(StrictSchema):
    program_id = fields.Str(required=True, validate=validate.Length(min=1, max=40))
    note = fields.Str(load_default="", validate=validate.Length(max=500))


class UnionTotalSchema(Schema):
    union_id = fields.Str()
    name = fields.Str()
    lines = fields.Int()
    amount = fields.Int()


class BatchSchema(Schema):
    id = fields.Str(attribute="public_id")
    program_id = fields.Function(lambda b: b.program.public_id)
    source = fields.Str()
    rule = fields.Dict(allow_none=True)
    filename = fields.Str(allow_none=True)
    note = fields.Str()
    status = fields.Function(lambda b: b.status.value)
    total_lines = fields.Int()
    valid_lines = fields.Int()
    invalid_lines = fields.Int()
    done_lines = fields.Int()
    failed_lines = fields.Int()
    amount = fields.Int(metadata={"description": "the valid lines' total, in fen"})
    done_amount = fields.Int()
    failed_amount = fields.Int()
    returned_amount = fields.Int()
    currency = fields.Constant("CNY")
    approvals_needed = fields.Int()
    approvals = fields.Function(lambda b: int(b.approved_by_id is not None) + int(b.second_approved_by_id is not None))
    error = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    approved_at = fields.DateTime(allow_none=True)
    finished_at = fields.DateTime(allow_none=True)


class BatchDetailSchema(BatchSchema):
    by_union = fields.List(fields.Nested(UnionTotalSchema))
    errors = fields.Dict(keys=fields.Str(), values=fields.Int(), metadata={"description": "invalid lines by reason"})


BatchPage = page_schema(BatchSchema, "BatchPage")


class BatchQuery(PageArgs):
    program_id = fields.Str(validate=validate.Length(max=40))


class LineSchema(Schema):
    line = fields.Int(attribute="line_no")
    reference = fields.Str(attribute="ref_masked")
    amount = fields.Int()
    note = fields.Str()
    status = fields.Function(lambda line: line.status.value)
    error = fields.Str(attribute="error_code", allow_none=True)
    message = fields.Str(attribute="error_message", allow_none=True)
    transaction_id = fields.Str(allow_none=True)
    clawed_back = fields.Int()


LinePage = page_schema(LineSchema, "LinePage")


class LineQuery(PageArgs):
    status = fields.Enum(LineStatus, by_value=True)


class ClawbackCreateSchema(StrictSchema):
    reason = fields.Str(required=True, validate=validate.Length(min=1, max=500))


class ClawbackSchema(Schema):
    id = fields.Str(attribute="public_id")
    line = fields.Function(lambda c: c.line.line_no)
    reason = fields.Str()
    status = fields.Function(lambda c: c.status.value)
    amount_taken = fields.Int()
    transaction_id = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    decided_at = fields.DateTime(allow_none=True)
