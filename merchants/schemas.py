"""API shapes of applicants, applications, merchants, stores and staff; bank accounts only masked."""

from __future__ import annotations

from flask_smorest.fields import Upload
from marshmallow import Schema, fields, validate

from core.api import PageArgs, StrictSchema, page_schema
from merchants.models import ApplicationStatus, MerchantCategory, StoreStatus

CATEGORY = fields.Enum(MerchantCategory, by_value=True)


def coordinate(limit: int, **kwargs) -> fields.Decimal:
    """Return a latitude or longitude field in degrees, within ±limit, documented with numeric bounds."""
    return fields.Decimal(places=6, allow_none=True, validate=validate.Range(min=-limit, max=limit),
                          metadata={"minimum": -limit, "maximum": limit}, **kwargs)


class ApplicantSignupSchema(StrictSchema):
    username = fields.Str(required=True, validate=validate.Length(min=3, max=64))
    password = fields.Str(required=True, validate=validate.Length(min=1, max=256), load_only=True)
    phone = fields.Str(required=True, validate=validate.Length(max=30), load_only=True)
    display_name = fields.Str(validate=validate.Length(max=100))


class ApplicantSchema(Schema):
    id = fields.Str(attribute="public_id")
    username = fields.Str()
    role = fields.Function(lambda u: u.role.value)
    phone = fields.Str(attribute="phone_masked")


class StoreInputSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    address = fields.Str(validate=validate.Length(max=200))
    category = fields.Enum(MerchantCategory, by_value=True, allow_none=True)
    opening_hours = fields.Str(validate=validate.Length(max=100))
    latitude = coordinate(90, as_string=True)
    longitude = coordinate(180, as_string=True)


class OfferProposalSchema(StrictSchema):
    title = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    description = fields.Str(validate=validate.Length(max=1000))


class SettlementInputSchema(StrictSchema):
    method = fields.Str(required=True, validate=validate.OneOf(["bank", "stripe"]))
    bank_name = fields.Str(validate=validate.Length(max=100))
    account_name = fields.Str(validate=validate.Length(max=100))
    account_number = fields.Str(validate=validate.Length(max=40), load_only=True)


class ApplicationInputSchema(StrictSchema):
    name = fields.Str(required=True, validate=validate.Length(min=1, max=100))
    uscc = fields.Str(validate=validate.Length(max=40))
    legal_representative = fields.Str(validate=validate.Length(max=50))
    contact_phone = fields.Str(validate=validate.Length(max=30), load_only=True)
    category = CATEGORY
    region = fields.Str(validate=validate.Length(max=6))
    address = fields.Str(validate=validate.Length(max=200))
    stores = fields.List(fields.Nested(StoreInputSchema), validate=validate.Length(max=50))
    proposed_offers = fields.List(fields.Nested(OfferProposalSchema), validate=validate.Length(max=20))
    settlement = fields.Nested(SettlementInputSchema)


class ApplicationUpdateSchema(ApplicationInputSchema):
    name = fields.Str(validate=validate.Length(min=1, max=100))


class DocumentSchema(Schema):
    id = fields.Str(attribute="public_id")
    kind = fields.Str()
    filename = fields.Str()
    content_type = fields.Str()
    size = fields.Int()
    uploaded_at = fields.DateTime()


class CommentSchema(Schema):
    author = fields.Function(lambda c: c.author.display_name)
    action = fields.Str()
    body = fields.Str()
    created_at = fields.DateTime()


def _settlement(obj) -> dict | None:
    if obj.settlement_method is None:
        return None
    out = {"method": obj.settlement_method.value}
    if obj.settlement_method.value == "bank":
        out |= {"bank_name": obj.bank_name, "account_name": obj.bank_account_name,
                "account_number": obj.bank_account_masked}
    return out


class ApplicationSchema(Schema):
    id = fields.Str(attribute="public_id")
    status = fields.Function(lambda a: a.status.value)
    name = fields.Str()
    uscc = fields.Str(allow_none=True)
    legal_representative = fields.Str(allow_none=True)
    contact_phone = fields.Str(attribute="contact_phone_masked", allow_none=True)
    category = fields.Function(lambda a: a.category.value if a.category else None)
    region = fields.Str(allow_none=True)
    address = fields.Str(allow_none=True)
    stores = fields.List(fields.Dict())
    proposed_offers = fields.List(fields.Dict())
    settlement = fields.Function(_settlement)
    documents = fields.List(fields.Nested(DocumentSchema))
    comments = fields.List(fields.Nested(CommentSchema))
    merchant_id = fields.Function(lambda a: a.merchant.public_id if a.merchant else None)
    submitted_at = fields.DateTime(allow_none=True)
    decided_at = fields.DateTime(allow_none=True)
    created_at = fields.DateTime()
    updated_at = fields.DateTime()


class ApplicationQuery(PageArgs):
    status = fields.Enum(ApplicationStatus, by_value=True)
    category = CATEGORY
    region = fields.Str(validate=validate.Length(max=6))
    q = fields.Str(validate=validate.Length(min=1, max=100))


class DecisionSchema(StrictSchema):
    comment = fields.Str(load_default=None, validate=validate.Length(max=2000))


class CommentInputSchema(StrictSchema):
    comment = fields.Str(required=True, validate=validate.Length(min=1, max=2000))


class UploadSchema(Schema):
    file = Upload(required=True)


class StoreSchema(Schema):
    id = fields.Str(attribute="public_id")
    merchant_id = fields.Function(lambda s: s.merchant.public_id)
    name = fields.Str()
    address = fields.Str()
    category = fields.Function(lambda s: s.effective_category.value)
    opening_hours = fields.Str()
    # Degrees as a decimal string ("38.487193"): exact, as stored.
    latitude = fields.Decimal(as_string=True, allow_none=True, metadata={"type": "string", "format": "decimal"})
    longitude = fields.Decimal(as_string=True, allow_none=True, metadata={"type": "string", "format": "decimal"})
    status = fields.Function(lambda s: s.status.value)
    accepts_cards = fields.Function(lambda s: s.accepts_cards())


class StoreUpdateSchema(StrictSchema):
    name = fields.Str(validate=validate.Length(min=1, max=100))
    address = fields.Str(validate=validate.Length(min=1, max=200))
    category = fields.Enum(MerchantCategory, by_value=True, allow_none=True)
    opening_hours = fields.Str(validate=validate.Length(max=100))
    latitude = coordinate(90)
    longitude = coordinate(180)
    status = fields.Enum(StoreStatus, by_value=True)


class AgreementSchema(Schema):
    version = fields.Str()
    term_start = fields.Date()
    term_end = fields.Date()
    accepted_at = fields.DateTime()


class MerchantPublicSchema(Schema):
    """What anyone may see in the directory."""

    id = fields.Str(attribute="public_id")
    name = fields.Str()
    category = fields.Function(lambda m: m.category.value)
    region = fields.Str()
    address = fields.Str()
    stores = fields.Method("_open_stores")

    def _open_stores(self, merchant):
        return StoreSchema(many=True, only=("id", "name", "address", "category", "opening_hours", "latitude",
                                            "longitude")).dump([s for s in merchant.stores if s.status.value == "open"])


class MerchantSchema(MerchantPublicSchema):
    """What the merchant's staff and union staff see."""

    uscc = fields.Str()
    legal_representative = fields.Str()
    contact_phone = fields.Str(attribute="contact_phone_masked")
    status = fields.Function(lambda m: m.status.value)
    status_reason = fields.Str(allow_none=True)
    settlement = fields.Function(_settlement)
    stripe_account_id = fields.Str(allow_none=True)
    stripe_status = fields.Str(allow_none=True)
    agreement = fields.Function(lambda m: AgreementSchema().dump(m.agreements[-1]) if m.agreements else None)
    created_at = fields.DateTime()


class DirectoryQuery(PageArgs):
    category = CATEGORY
    region = fields.Str(validate=validate.Length(max=6))
    q = fields.Str(validate=validate.Length(min=1, max=100))


class StatusChangeSchema(StrictSchema):
    reason = fields.Str(required=True, validate=validate.Length(min=1, max=500))


class StaffInputSchema(StrictSchema):
    username = fields.Str(required=True, validate=validate.Length(min=3, max=64))
    password = fields.Str(required=True, validate=validate.Length(min=1, max=256), load_only=True)
    role = fields.Str(required=True, validate=validate.OneOf(["manager", "cashier"]))
    display_name = fields.Str(validate=validate.Length(max=100))


class StaffSchema(Schema):
    id = fields.Str(attribute="public_id")
    username = fields.Str()
    display_name = fields.Str()
    role = fields.Function(lambda u: u.role.value)
    is_active = fields.Bool()


class LinkSchema(Schema):
    url = fields.Str()


class RenewalQuery(Schema):
    within_days = fields.Int(load_default=60, validate=validate.Range(min=1, max=366))


class RenewalSchema(AgreementSchema):
    merchant_id = fields.Function(lambda a: a.merchant.public_id)
    merchant_name = fields.Function(lambda a: a.merchant.name)


ApplicationPage = page_schema(ApplicationSchema, "MerchantApplicationPage")
DirectoryPage = page_schema(MerchantPublicSchema, "MerchantDirectoryPage")
