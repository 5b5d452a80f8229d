"""The union console in Chromium: the federation's admin drills down from the province to a grassroots union and
back up on a laptop, reads the same overview on a 390 px phone, and downloads the next level as XLSX; a city's
admin sees only the city's subtree, and an auditor the whole platform."""

from __future__ import annotations

import io

import pytest
from flask_babel import gettext
from openpyxl import load_workbook

from cards import service as cards
from core.auth import Actor, create_user
from core.db import db
from core.models import Role
from payments.checkout import service as checkout
from stats import service as stats
from stats.views import TABLES
from tests import factories as f
from tests.checkout.conftest import PIN, PREFIX, card_with_pin, fund, guard
from tests.e2e.conftest import PASSWORD, serve, shot, sign_in

WIDE = {"width": 1280, "height": 900}
PHONE_WIDTH = 390

# Who is in the world, by grassroots union: (name, has an active card, what the card paid, in fen).
PEOPLE = {
    "yc_base": [("马丽", True, [12_800, 6_600]), ("杨洋", True, [4_500]), ("赵军", True, []), ("孙红", False, [])],
    "gy_base": [("李强", True, [8_800]), ("何静", True, [])],
}
# Counted by hand from PEOPLE: members, cards, and the active cards that paid in the last 30 days.
YINCHUAN = {"members": "4", "cards": "3", "usage": "66.7%"}  # 2 of 3 cards paid
GUYUAN = {"members": "2", "cards": "2", "usage": "50.0%"}  # 1 of 2
PROVINCE = {"members": "6", "cards": "5", "usage": "60.0%"}  # 3 of 5


@pytest.fixture(scope="module")
def console_server(tmp_path_factory):
    """A live server with the org tree, members and cards in two grassroots unions, a few card payments at
    partner merchants in 银川 and 固原, a published offer, the figures refreshed, and the console's readers."""
    def setup(app):
        # The figures stay as this setup computed them: no page view queues a refresh behind the test's back.
        app.config["STATS_REFRESH_AFTER"] = 0
        session, cipher = db.session, app.extensions["cipher"]
        tree = f.org_tree(session)
        shops = {"yc_base": f.merchant(session, cipher, "塞上江南餐厅", category="dining", region="640104"),
                 "gy_base": f.merchant(session, cipher, "六盘山农家菜", category="dining", region="640402")}
        for where, people in PEOPLE.items():
            for name, has_card, amounts in people:
                member = f.member(session, cipher, tree[where], name)
                if not has_card:
                    continue
                if not amounts:
                    card = cards.issue_card(session, cipher, f.PLATFORM, member.public_id, prefix=PREFIX)
                    cards.change_state(session, f.PLATFORM, card.public_id, "activate")
                    continue
                member_user = f.user(session, Role.MEMBER, member=member)
                card = card_with_pin(session, cipher, app, member, member_user)
                fund(session, card, 100_000)
                for amount in amounts:
                    checkout.pay(session, Actor.of(member_user), checkout.PayRequest(
                        store_id=shops[where].stores[0].public_id, amount=amount, card_id=card.public_id, pin=PIN),
                        codes=None, pins=guard(app), max_amount=10**7)
        f.offer(session, f.PLATFORM, publish=True)
        create_user(session, username="e2e-console-province", password=PASSWORD, role=Role.UNION_ADMIN,
                    union_id=tree["fed"].id, display_name="省总 管理员")
        create_user(session, username="e2e-console-guyuan", password=PASSWORD, role=Role.UNION_ADMIN,
                    union_id=tree["gy"].id, display_name="固原 管理员")
        create_user(session, username="e2e-console-auditor", password=PASSWORD, role=Role.AUDITOR,
                    display_name="审计 刘")
        stats.refresh(session)
        session.commit()
        return {"ids": {key: u.public_id for key, u in tree.items()}, "names": {key: u.name for key, u in tree.items()}}

    with serve(tmp_path_factory, "e2e_console", setup) as (url, app, facts):
        yield {"url": url, "app": app, **facts}


def tile(page, name: str) -> str:
    return page.inner_text(f"#tiles [data-tile={name}] .figure").strip()


def child(page, union_id: str, figure: str) -> str:
    return page.inner_text(f"#children-table tr[data-union={union_id}] td[data-figure={figure}]").strip()


def child_ids(page) -> list[str]:
    return page.eval_on_selector_all("#children-table tr[data-union]", "rows => rows.map(r => r.dataset.union)")


def trail(page) -> tuple[list[str], str]:
    """The breadcrumb's links (the way back up) and the union the page is about."""
    links = [a.strip() for a in page.locator("#trail a").all_inner_texts()]
    return links, page.inner_text("#trail [aria-current=page]").strip()


def open_child(page, base, union_id: str) -> None:
    page.click(f"#children-table tr[data-union={union_id}] a")
    page.wait_for_url(f"{base}/console/?union_id={union_id}")


def chinese_words(text: str) -> bool:
    """True for words in Chinese: some Han characters, no Latin letters."""
    return any("\u4e00" <= ch <= "\u9fff" for ch in text) and not any("a" <= ch.lower() <= "z" for ch in text)


def no_sideways_scroll(page, width: int) -> bool:
    return page.evaluate("document.documentElement.scrollWidth") <= width + 2


def rows_of(xlsx: bytes) -> list[tuple]:
    return list(load_workbook(io.BytesIO(xlsx), read_only=True).active.iter_rows(values_only=True))


def test_the_province_admin_drills_down_to_a_grassroots_union_and_back(console_server, chromium):
    base, ids, names = console_server["url"], console_server["ids"], console_server["names"]
    context = chromium.new_context(viewport=WIDE, locale="zh-CN")
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        sign_in(page, base, "e2e-console-province")
        assert page.goto(f"{base}/console/").status == 200
        assert page.get_attribute("html", "lang") == "zh-CN"
        assert chinese_words(page.inner_text("h1").split(":")[0])
        assert (tile(page, "members"), tile(page, "cards"), tile(page, "usage")) == tuple(PROVINCE.values())
        assert page.get_attribute("#tiles [data-tile=usage] .figure", "data-rate") == "0.6"
        assert tile(page, "merchants") == "2" and tile(page, "offers") == "1"
        assert child_ids(page) == [ids["yc"], ids["gy"]]
        assert child(page, ids["yc"], "members") == YINCHUAN["members"]
        assert child(page, ids["yc"], "usage_rate") == YINCHUAN["usage"]
        assert child(page, ids["gy"], "members") == GUYUAN["members"]
        assert child(page, ids["gy"], "usage_rate") == GUYUAN["usage"]
        assert trail(page) == ([], names["fed"])  # the admin's top: nothing above it to go back to
        shot(page, "console-1-province")

        open_child(page, base, ids["yc"])
        assert (tile(page, "members"), tile(page, "cards"), tile(page, "usage")) == tuple(YINCHUAN.values())
        assert tile(page, "merchants") == "1"  # only the one in 640104
        assert child_ids(page) == [ids["xq"]] and child(page, ids["xq"], "members") == YINCHUAN["members"]
        assert trail(page) == ([names["fed"]], names["yc"])
        shot(page, "console-2-city")

        open_child(page, base, ids["xq"])
        assert tile(page, "members") == YINCHUAN["members"]
        assert child_ids(page) == [ids["yc_base"]] and child(page, ids["yc_base"], "members") == YINCHUAN["members"]
        assert trail(page) == ([names["fed"], names["yc"]], names["xq"])

        open_child(page, base, ids["yc_base"])
        assert (tile(page, "members"), tile(page, "cards"), tile(page, "usage")) == tuple(YINCHUAN.values())
        assert page.locator("#children-table").count() == 0  # nothing under a grassroots union
        assert trail(page) == ([names["fed"], names["yc"], names["xq"]], names["yc_base"])
        shot(page, "console-3-grassroots")

        page.click(f"#trail a:text-is('{names['yc']}')")
        page.wait_for_url(f"{base}/console/?union_id={ids['yc']}")
        assert tile(page, "members") == YINCHUAN["members"] and child_ids(page) == [ids["xq"]]
        page.click(f"#trail a:text-is('{names['fed']}')")
        page.wait_for_url(f"{base}/console/?union_id={ids['fed']}")
        assert tile(page, "members") == PROVINCE["members"] and child_ids(page) == [ids["yc"], ids["gy"]]

        assert page.goto(f"{base}/console/?lang=en").status == 200
        assert page.get_attribute("html", "lang") == "en"
        assert page.inner_text("h1").startswith("Union console")
        assert tile(page, "usage") == PROVINCE["usage"] and child_ids(page) == [ids["yc"], ids["gy"]]
        shot(page, "console-4-province-en")
    finally:
        context.close()


def test_the_overview_fits_a_phone(console_server, page):
    base = console_server["url"]
    sign_in(page, base, "e2e-console-province")
    assert page.goto(f"{base}/console/").status == 200
    assert no_sideways_scroll(page, PHONE_WIDTH)
    for name in ("members", "cards", "usage", "merchants", "offers"):
        assert page.locator(f"#tiles [data-tile={name}]").is_visible(), name
    assert tile(page, "usage") == PROVINCE["usage"]
    chart = page.locator("#usage-chart svg").first
    chart.scroll_into_view_if_needed()
    assert chart.is_visible() and chart.bounding_box()["width"] <= PHONE_WIDTH
    shot(page, "console-5-province-390")


def test_a_city_admin_sees_only_the_city_and_an_auditor_the_whole_platform(console_server, chromium):
    base, ids, names = console_server["url"], console_server["ids"], console_server["names"]
    context = chromium.new_context(viewport=WIDE, locale="zh-CN")
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        sign_in(page, base, "e2e-console-guyuan")
        assert page.goto(f"{base}/console/?union_id={ids['yc']}").status == 404
        assert names["yc"] not in page.content()
        assert page.goto(f"{base}/console/").status == 200
        assert names["gy"] in page.inner_text("h1")
        assert trail(page) == ([], names["gy"])
        assert (tile(page, "members"), tile(page, "cards"), tile(page, "usage")) == tuple(GUYUAN.values())
        assert child_ids(page) == [ids["yz"]]
        assert names["yc"] not in page.inner_text("#children") and names["yc"] not in page.inner_text("#trail")
        shot(page, "console-6-city-admin")

        context.clear_cookies()
        sign_in(page, base, "e2e-console-auditor")
        assert page.goto(f"{base}/console/").status == 200
        assert page.locator("#trail a").count() == 1  # the whole platform, the auditor's top
        assert child_ids(page) == [ids["fed"]] and tile(page, "members") == PROVINCE["members"]
        assert page.goto(f"{base}/console/?union_id={ids['yc']}").status == 200
        assert tile(page, "members") == YINCHUAN["members"]
    finally:
        context.close()


def test_the_next_level_downloads_as_xlsx_in_the_page_language(console_server, chromium):
    base, ids, names, app = console_server["url"], console_server["ids"], console_server["names"], console_server["app"]
    context = chromium.new_context(viewport=WIDE, locale="zh-CN", accept_downloads=True)
    try:
        page = context.new_page()
        page.set_default_timeout(15_000)
        sign_in(page, base, "e2e-console-province")
        page.goto(f"{base}/console/")
        with page.expect_download() as download:
            page.click("#children a[data-format=xlsx]")
        assert download.value.suggested_filename.startswith(f"children-{ids['fed']}-")
        chinese = rows_of(download.value.path().read_bytes())

        answer = page.request.get(f"{base}/console/children.xlsx?union_id={ids['fed']}&lang=en")
        assert answer.ok
        english = rows_of(answer.body())
    finally:
        context.close()

    header = list(english[0])
    assert header == list(TABLES["children"][1]) and header[1] == "Union ID" and "Members" in header
    by_id = {row[header.index("Union ID")]: row for row in chinese[1:]}
    assert set(by_id) == {ids["yc"], ids["gy"]}
    assert by_id[ids["yc"]][0] == names["yc"] and by_id[ids["yc"]][header.index("Members")] == int(YINCHUAN["members"])
    assert by_id[ids["gy"]][0] == names["gy"] and by_id[ids["gy"]][header.index("Members")] == int(GUYUAN["members"])
    level = english[1].index("City federation")  # the only column whose values are words of the page's language
    assert chinese[1][level] != "City federation"
    assert [row[:level] + row[level + 1:] for row in english[1:]] == [row[:level] + row[level + 1:] for row in chinese[1:]]

    # The Chinese page's download speaks Chinese: its headers are the Chinese page's words for the same columns.
    assert "工会" in chinese[0][0] and all(chinese_words(h) for h in chinese[0])
    with app.test_request_context("/console/"):
        assert list(chinese[0]) == [gettext(h) for h in TABLES["children"][1]]
