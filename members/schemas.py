"""API shapes of unions, members, hardship entries and imports; personal numbers only masked."""

from __future__ import annotations

import datetime as dt

from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate

from core.api import PageArgs, StrictSchema, page_schema
from members.models import MemberStatus, RowStatus


class UnionCreateSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    parent_id = fields.Str(load_default=None, allow_none=True, validate=validate.Length(max=40))
    region = fields.Str(required=True, validate=validate.Length(equal=6))


class UnionSchema(Schema):
    id = fields.Str(attribute="public_id")
    name = fields.Str()
    parent_id = fields.Function(lambda u: u.parent.public_id if u.parent else None)
    region = fields.Str()
    kind = fields.Function(lambda u: u.kind.value)
    created_at = fields.DateTime()


class UnionQuery(PageArgs):
    parent_id = fields.Str(validate=validate.Length(max=40))


class HardshipSchema(Schema):
    level = fields.Int()
    reason = fields.Str()
    valid_until = fields.Date()
    current = fields.Function(lambda h: h.is_current(dt.date.today()))


class HardshipInputSchema(StrictSchema):
    level = fields.Int(required=True, strict=True, validate=validate.Range(min=1, max=3))
    reason = fields.Str(required=True, validate=validate.Length(min=1, max=500))
    valid_until = fields.Date(required=True)


class MemberCreateSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=50))
    id_number = fields.Str(required=True, validate=validate.Length(max=40), load_only=True)
    phone = fields.Str(required=True, validate=validate.Length(max=30), load_only=True)
    union_id = fields.Str(required=True, validate=validate.Length(max=40))
    join_date = fields.Date(load_default=None)


class MemberUpdateSchema(StrictSchema):
    name = fields.Str(validate=validate.Length(min=1, max=50))
    phone = fields.Str(validate=validate.Length(max=30), load_only=True)
    status = fields.Enum(MemberStatus, by_value=True)
    union_id = fields.Str(validate=validate.Length(max=40))


class MemberSchema(Schema):
    """A member as staff and the member see it: ID number and phone masked."""

    id = fields.Str(attribute="public_id")
    name = fields.Str()
    id_number = fields.Str(attribute="id_number_masked")
    phone = fields.Str(attribute="phone_masked")
    union_id = fields.Function(lambda m: m.union.public_id)
    union_name = fields.Function(lambda m: m.union.name)
    status = fields.Function(lambda m: m.status.value)
    join_date = fields.Date()
    hardship = fields.Nested(HardshipSchema, allow_none=True)
    created_at = fields.DateTime()


class MemberQuery(PageArgs):
    union_id = fields.Str(validate=validate.Length(max=40))
    hardship = fields.Bool()
    status = fields.Enum(MemberStatus, by_value=True)
    q = fields.Str(validate=validate.Length(min=1, max=50))
    id_number = fields.Str(validate=validate.Length(max=40))
    phone = fields.Str(validate=validate.Length(max=30))


class ImportUploadSchema(Schema):
    file = Upload(required=True)


class ImportRowSchema(Schema):
    line = fields.Int()
    status = fields.Function(lambda r: r.status.value)
    member_id = fields.Function(lambda r: r.member.public_id if r.member else None)
    error = fields.Str(allow_none=True)
    message = fields.Str(allow_none=True)


class ImportSchema(Schema):
    id = fields.Str(attribute="public_id")
    status = fields.Function(lambda i: i.status.value)
    filename = fields.Str()
    total_rows = fields.Int()
    processed_rows = fields.Int()
    created = fields.Int(attribute="created_rows")
    unchanged = fields.Int(attribute="unchanged_rows")
    rejected = fields.Int(attribute="rejected_rows")
    error = fields.Str(allow_none=True)
    created_at = fields.DateTime()
    finished_at = fields.DateTime(allow_none=True)
    rows = fields.List(fields.Nested(ImportRowSchema), dump_default=list)
    rows_next_cursor = fields.Str(allow_none=True)


class ImportRowQuery(PageArgs):
    status = fields.Enum(RowStatus, by_value=True)


UnionPage = page_schema(UnionSchema, "UnionPage")
MemberPage = page_schema(MemberSchema, "MemberPage")
ImportRowPage = page_schema(ImportRowSchema, "ImportRowPage")
