"""API shapes of the union console's figures: an org subtree's overview and its trends by month."""

from __future__ import annotations

import datetime as dt

from marshmallow import Schema, ValidationError, fields, validate, validates_schema

MONTH = validate.Regexp(r"^(20\d\d|2100)-(0[1-9]|1[0-2])$", error="A month as YYYY-MM.")
ID = validate.Length(min=1, max=40)


def _fen(description: str):
    return fields.Int(required=True, metadata={"description": description + " (fen)"})


def _count(description: str):
    return fields.Int(required=True, metadata={"description": description})


def _rate(description: str):
    return fields.Float(required=True, allow_none=True,
                        metadata={"description": description + "; a fraction from 0 to 1 with four decimals, null "
                                                                "when there is nothing to divide by"})


class OverviewArgs(Schema):
    union_id = fields.Str(load_default=None, validate=ID,
                          metadata={"description": "A union of the org tree (its whole subtree); a union admin's own "
                                                   "union when left out, the whole platform for finance and auditors"})


def parse_month(value: str | None) -> dt.date | None:
    return dt.date(int(value[:4]), int(value[5:7]), 1) if value else None


class TrendArgs(OverviewArgs):
    from_ = fields.Str(data_key="from", load_default=None, validate=MONTH,
                       metadata={"description": "First month (YYYY-MM, Asia/Shanghai); 11 months before `to` by default"})
    to = fields.Str(load_default=None, validate=MONTH, metadata={"description": "Last month, included; this month by default"})

    @validates_schema
    def _in_order(self, data, **_kwargs):
        if data.get("from_") and data.get("to") and data["to"] < data["from_"]:
            raise ValidationError("The last month comes before the first.", "to")


class UnionRefSchema(Schema):
    id = fields.Str(attribute="public_id", required=True)
    name = fields.Str(required=True)
    kind = fields.Function(lambda u: u.kind.value, required=True,
                           metadata={"description": "federation, city, county or grassroots"})
    region = fields.Str(required=True)


class CardCountsSchema(Schema):
    issued = _count("Cards in members' hands: issued and not replaced or cancelled")
    not_activated = _count("Of them, not activated yet")
    active = _count("Of them, active")
    frozen = _count("Of them, frozen")
    lost = _count("Of them, reported lost")


def _cards(counts) -> dict:
    return {"issued": counts.cards_issued, "not_activated": counts.cards_not_activated, "active": counts.cards_active,
            "frozen": counts.cards_frozen, "lost": counts.cards_lost}


class ActivitySchema(Schema):
    payments = _count("Card payments")
    amount = _fen("Their list prices")
    discount = _fen("Discounts given")
    charged = _fen("Paid by cards")
    merchant_share = _fen("Discounts borne by merchants")
    union_share = _fen("Discounts paid by the union from aid programs")
    refunds = _count("Refunds")
    refunded = _fen("Given back by refunds")
    union_subsidised = _fen("`union_share` less the subsidy refunds gave back to the programs")
    members_joined = _count("Members registered")
    cards_issued = _count("Cards issued")
    cards_activated = _count("Cards activated")
    currency = fields.Str(required=True)


class DiscountsSchema(Schema):
    merchant_borne = _fen("Discounts borne by merchants, since the start")
    union_subsidised = _fen("Discounts paid by the union from aid programs, less what refunds gave back")
    currency = fields.Str(required=True)


class MerchantCategorySchema(Schema):
    category = fields.Str(attribute="key", required=True)
    merchants = _count("Active partner merchants")
    stores = _count("Their open stores")


class MerchantCitySchema(Schema):
    region = fields.Str(attribute="key", required=True, metadata={"description": "The city's region code"})
    name = fields.Str(required=True, metadata={"description": "The city union's name, when there is one"})
    merchants = _count("Active partner merchants")
    stores = _count("Their open stores")


class OfferCategorySchema(Schema):
    category = fields.Str(required=True, metadata={"description": "culture, legal, health, safety, entertainment "
                                                                  "or everyday"})
    offers = _count("Offers on offer now")


class OverviewProgramSchema(Schema):
    id = fields.Str(attribute="program_id", required=True)
    name = fields.Str(required=True)
    union_name = fields.Str(required=True, metadata={"description": "The union that runs it"})
    funded = _fen("Approved fundings")
    disbursed = _fen("Paid onto cards, less claw-backs")
    spent = _fen("Spent at merchants from its aid purses net of refunds, plus `subsidised`")
    subsidised = _fen("The union's share of offer discounts paid from the budget, net of refunds")
    expired = _fen("Swept back from aid purses at expiry")
    returned = _fen("Back to the budget: failed lines' reserve, claw-backs, refunds of expired aid")
    balance = _fen("In the budget now")
    currency = fields.Str(required=True)


class OverviewChildSchema(Schema):
    id = fields.Str(required=True)
    name = fields.Str(required=True)
    kind = fields.Str(required=True)
    region = fields.Str(required=True)
    members = _count("Active real-name members of its subtree")
    hardship_members = _count("Of them, on the hardship register")
    cards = fields.Nested(CardCountsSchema, required=True)
    cards_used_30d = _count("Active cards that paid in the last 30 days")
    usage_rate = _rate("`cards_used_30d` over active cards")
    payments_30d = _count("Card payments in the last 30 days")
    charged_30d = _fen("Paid by cards in the last 30 days")


class OverviewSchema(Schema):
    union = fields.Nested(UnionRefSchema, allow_none=True, required=True,
                          metadata={"description": "The subtree's root; null for the whole platform"})
    refreshed_at = fields.DateTime(allow_none=True, required=True,
                                   metadata={"description": "When the figures were computed; null: not yet"})
    members = _count("Active real-name members")
    hardship_members = _count("Of them, on the hardship register now")
    cards = fields.Nested(CardCountsSchema, required=True)
    cards_used_30d = _count("Active cards that paid at least once in the last 30 days")
    usage_rate = _rate("`cards_used_30d` over active cards")
    merchants = _count("Active partner merchants in the union's region")
    stores = _count("Their open stores")
    merchants_by_category = fields.List(fields.Nested(MerchantCategorySchema), required=True)
    merchants_by_city = fields.List(fields.Nested(MerchantCitySchema), required=True)
    offers = _count("普惠 offers on offer now to the union's members")
    offers_by_category = fields.List(fields.Nested(OfferCategorySchema), required=True)
    discounts = fields.Nested(DiscountsSchema, required=True)
    payments = fields.Nested(ActivitySchema, required=True, metadata={"description": "Since the start"})
    last_30_days = fields.Nested(ActivitySchema, required=True)
    programs = fields.List(fields.Nested(OverviewProgramSchema), required=True,
                           metadata={"description": "Aid programs run by unions of the subtree, since the start"})
    children = fields.List(fields.Nested(OverviewChildSchema), required=True,
                           metadata={"description": "The next level down, for the drill-down"})


def _activity(a) -> dict:
    return {name: getattr(a, name) for name in ActivitySchema().fields}


def overview_body(o) -> dict:
    """The overview as the API shows it."""
    c = o.counts
    return {
        "union": o.union, "refreshed_at": o.refreshed_at, "members": c.members,
        "hardship_members": c.hardship_members, "cards": _cards(c), "cards_used_30d": c.cards_used_30d,
        "usage_rate": c.usage_rate, "merchants": o.merchants, "stores": o.stores,
        "merchants_by_category": o.merchants_by_category, "merchants_by_city": o.merchants_by_city,
        "offers": o.offers, "offers_by_category": [{"category": k, "offers": n} for k, n in o.offers_by_category],
        "discounts": {"merchant_borne": o.total.merchant_share, "union_subsidised": o.total.union_subsidised,
                      "currency": o.total.currency},
        "payments": _activity(o.total), "last_30_days": _activity(o.last_30_days), "programs": o.programs,
        "children": [{"id": k.union.public_id, "name": k.union.name, "kind": k.union.kind.value,
                      "region": k.union.region, "members": k.counts.members,
                      "hardship_members": k.counts.hardship_members, "cards": _cards(k.counts),
                      "cards_used_30d": k.counts.cards_used_30d, "usage_rate": k.counts.usage_rate,
                      "payments_30d": k.last_30_days.payments, "charged_30d": k.last_30_days.charged}
                     for k in o.children],
    }


class TrendMonthSchema(ActivitySchema):
    month = fields.Str(required=True, metadata={"description": "YYYY-MM, Asia/Shanghai"})
    card_users = _count("Cards that paid at least once in the month")
    live_cards = _count("Cards active at some time in the month")
    usage_rate = _rate("`card_users` over `live_cards`")
    aid_funded = _fen("Aid programs of the subtree: approved fundings")
    aid_disbursed = _fen("Aid paid onto cards, less claw-backs")
    aid_spent = _fen("Aid spent at merchants, with the union's offer subsidies")


class TrendSchema(Schema):
    union = fields.Nested(UnionRefSchema, allow_none=True, required=True)
    from_ = fields.Str(data_key="from", required=True)
    to = fields.Str(required=True)
    data = fields.List(fields.Nested(TrendMonthSchema), required=True)
