"""Offers in Chromium: a union admin writes and publishes an offer in the console, and a member reads it in
the catalog on a 390 px phone, in Chinese and in English, without sideways scrolling."""

from __future__ import annotations

import pytest

from core.auth import create_user
from core.db import db
from core.models import Role
from tests import factories as f
from tests.e2e.conftest import PASSWORD, serve, shot, sign_in, fits_the_phone


@pytest.fixture(scope="module")
def offers_server(tmp_path_factory):
    """A live server with a union admin, a member, a partner merchant and an aid program."""
    def setup(app):
        session, cipher = db.session, app.extensions["cipher"]
        tree = f.org_tree(session)
        member = f.member(session, cipher, tree["yc_base"], "马丽")
        create_user(session, username="e2e-offer-admin", password=PASSWORD, role=Role.UNION_ADMIN,
                    display_name="普惠管理员")
        create_user(session, username="e2e-offer-member", password=PASSWORD, role=Role.MEMBER,
                    member_id=member.id, display_name="马丽")
        session.commit()
        shop = f.merchant(session, cipher, "银川惠民超市", category="supermarket")
        return {"merchant_id": shop.public_id}

    with serve(tmp_path_factory, "e2e_offers", setup) as (url, app, facts):
        yield {"url": url, "app": app, **facts}


def test_an_admin_publishes_an_offer_and_a_member_reads_it_on_a_phone(page, offers_server):
    url = offers_server["url"]
    sign_in(page, url, "e2e-offer-admin")
    page.goto(f"{url}/console/offers/new")
    page.fill("#title", "超市会员日9折")
    page.select_option("#merchant_id", offers_server["merchant_id"])
    page.select_option("#kind", "percent_off")
    page.fill("#value", "10")
    page.fill("#max_discount", "20")
    page.check("#weekdays input[value='6']")
    page.fill("#limit_count", "4")
    page.select_option("#limit_period", "month")
    assert fits_the_phone(page)
    shot(page, "offers-1-form-390")
    page.click("#save")
    page.click("#publish")
    assert "已发布" in page.inner_text("h1")
    shot(page, "offers-2-published-390")
    page.context.clear_cookies()
    sign_in(page, url, "e2e-offer-member")
    page.goto(f"{url}/offers/")
    card = page.locator("#offers li.offer").first
    assert "超市会员日9折" in card.inner_text() and "立减10%，最多优惠¥20.00" in card.inner_text()
    assert "每人每月4次" in card.inner_text() and "银川惠民超市" in card.inner_text()
    assert fits_the_phone(page)
    shot(page, "offers-3-catalog-390")
    page.click("#families a:has-text('日常消费')")
    assert "超市会员日9折" in page.inner_text("#offers")
    page.goto(f"{url}/offers/?lang=en")
    assert "10% off, up to ¥20.00" in page.inner_text("#offers") and "4 times a month per member" in page.inner_text(
        "#offers")
    assert fits_the_phone(page)
    shot(page, "offers-4-catalog-en-390")
