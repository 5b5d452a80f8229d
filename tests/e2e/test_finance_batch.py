"""Finance pays aid in Chromium: a maker uploads a batch of three members and sees its preview, an approver in
another browser approves it, the progress bar fills as the lines are paid, and a member finds the money on
their card with a notice that it expires soon."""

from __future__ import annotations

import datetime as dt

import pytest

from cards import service as cards
from core.auth import Actor, create_user
from core.db import db, utcnow
from core.models import Role
from payments.disbursement import service
from payments.disbursement.models import ProgramKind, PursePolicy
from tests import factories as f
from tests.e2e.conftest import PASSWORD, serve, shot, sign_in, fits_the_phone

AMOUNTS = (12_000, 8_000, 5_000)
BAD_ID = "640104198506151230"  # wrong check digit
WIDE = {"width": 1280, "height": 900}


@pytest.fixture(scope="module")
def finance_server(tmp_path_factory):
    """A live server with three members holding active cards, finance staff, and a funded restricted program."""
    def setup(app):
        session, cipher = db.session, app.extensions["cipher"]
        tree = f.org_tree(session)
        people = [f.member(session, cipher, tree["yc_base"], name) for name in ("马丽", "周强", "杨梅")]
        for person in people:
            card = cards.issue_card(session, cipher, f.PLATFORM, person.public_id, prefix=app.config["CARD_PREFIX"])
            cards.change_state(session, f.PLATFORM, card.public_id, "activate")
        create_user(session, username="e2e-fin-member", password=PASSWORD, role=Role.MEMBER, member_id=people[0].id,
                    display_name="马丽")
        maker = create_user(session, username="e2e-maker", password=PASSWORD, role=Role.FINANCE_MAKER,
                            display_name="制单 王")
        approver = create_user(session, username="e2e-approver", password=PASSWORD, role=Role.FINANCE_APPROVER,
                               display_name="复核 李")
        session.commit()
        program = service.create_program(
            session, Actor.of(maker), name="医疗互助", kind=ProgramKind.MEDICAL_AID, purse=PursePolicy.RESTRICTED,
            union_id=tree["yc"].public_id, allowed_categories=["pharmacy", "medical"],
            expires_at=utcnow() + dt.timedelta(days=20))
        funding = service.create_funding(session, Actor.of(maker), program.public_id, amount=1_000_000,
                                         currency="CNY", reference="ICBC-E2E-01")
        service.approve_funding(session, Actor.of(approver), funding.public_id)
        return {"program_id": program.public_id, "union": tree["yc_base"].name,
                "ids": [cipher.decrypt(p.id_number_enc, "member.id_number") for p in people]}

    with serve(tmp_path_factory, "e2e_finance", setup) as (url, app, facts):
        # One line per committed step with a pause between: the run takes a couple of seconds to watch.
        app.config.update(DISBURSEMENT_CHUNK=1, DISBURSEMENT_CHUNK_PAUSE=0.6)
        yield {"url": url, "app": app, **facts}


def test_a_batch_is_uploaded_approved_by_someone_else_paid_and_seen_on_the_card(finance_server, chromium, page):
    base, program_id = finance_server["url"], finance_server["program_id"]
    maker_ctx = chromium.new_context(viewport=WIDE, locale="zh-CN")
    approver_ctx = chromium.new_context(viewport=WIDE, locale="zh-CN")
    try:
        maker = maker_ctx.new_page()
        maker.set_default_timeout(15_000)
        sign_in(maker, base, "e2e-maker")
        maker.click("header a[href='/finance/programs/']")
        maker.wait_for_url(f"{base}/finance/programs/")
        assert maker.locator("#programs-chart svg rect.bar").count() == 4
        assert "¥10,000.00" in maker.inner_text("#programs")
        shot(maker, "finance-1-programs")

        maker.click(f"#programs a[href='/finance/programs/{program_id}']")
        maker.click("#new-batch")
        maker.wait_for_url(f"{base}/finance/disbursements/new?program_id={program_id}")
        assert maker.input_value("#csv-program") == program_id
        lines = [f"{id_number},{amount},冬季慰问" for id_number, amount in zip(finance_server["ids"], AMOUNTS)]
        lines.append(f"{BAD_ID},5000,号码有误")
        maker.set_input_files("#file", files=[{"name": "medical.csv", "mimeType": "text/csv",
                                                "buffer": ("id_number,amount,note\n" + "\n".join(lines)).encode()}])
        maker.click("#upload-button")
        maker.wait_for_url(f"{base}/finance/disbursements/dsb_*")
        batch_url = maker.url
        by_union = maker.inner_text("#by-union")
        assert finance_server["union"] in by_union and "¥250.00" in by_union
        assert maker.locator("#union-chart rect.bar").count() == 1
        assert maker.locator("#reasons tr[data-reason=invalid_id_number]").count() == 1
        assert maker.locator("#line-4.line-invalid").count() == 1 and BAD_ID not in maker.content()
        assert maker.locator("#approve").count() == 0 and maker.locator("#waiting").count() == 1
        assert maker.locator("#run").count() == 0
        shot(maker, "finance-2-batch-preview")

        approver = approver_ctx.new_page()
        approver.set_default_timeout(20_000)
        polls = []
        approver.on("response", lambda r: polls.append(r.url) if r.url.endswith("/progress") else None)
        sign_in(approver, base, "e2e-approver")
        approver.click("header a[href='/finance/programs/']")
        approver.click(f"#programs a[href='/finance/programs/{program_id}']")
        approver.click(f"a[href='{batch_url.removeprefix(base)}']")
        approver.wait_for_url(batch_url)
        approver.click("#approve")
        approver.wait_for_url(batch_url)
        assert approver.locator("#run progress#bar").count() == 1
        shot(approver, "finance-3-paying")
        approver.wait_for_function("document.getElementById('run').dataset.status === 'completed'")
        assert approver.inner_text("#percent") == "100"
        assert approver.evaluate("document.getElementById('bar').value === document.getElementById('bar').max")
        assert approver.inner_text("#processed") == "3" and approver.inner_text("#done") == "3"
        assert polls, "the progress bar never asked for progress"
        shot(approver, "finance-4-paid")

        with approver.expect_download() as download:
            approver.click("#result")
        with open(download.value.path(), encoding="utf-8-sig") as result:
            rows = result.read().splitlines()
        outcome = {int(row.split(",")[0]): row.split(",")[3] for row in rows[1:]}
        assert outcome == {1: "done", 2: "done", 3: "done", 4: "invalid"}

        approver.set_viewport_size({"width": 390, "height": 844})
        approver.reload()
        assert approver.inner_text("#batch-status") == "已完成"
        assert fits_the_phone(approver)
        shot(approver, "finance-5-batch-390")
        approver.click("header a.lang")
        assert approver.inner_text("h1").startswith("Disbursement batch")
        assert approver.inner_text("#batch-status") == "Completed" and approver.inner_text("#percent") == "100"
        assert fits_the_phone(approver)
        shot(approver, "finance-5-batch-390-en")
    finally:
        maker_ctx.close()
        approver_ctx.close()

    sign_in(page, base, "e2e-fin-member")
    page.click("ul.tiles a[href='/card/']")
    purses = page.inner_text("#purses")
    assert "医疗互助" in purses and "¥120.00" in purses
    assert page.inner_text("#total") == "¥120.00"
    notice = page.inner_text("#expiring")
    assert "¥120.00" in notice and "医疗互助" in notice
    assert fits_the_phone(page)
    shot(page, "finance-6-member-card")

    page.click("#transactions")
    line = page.locator("#statement li.statement-line").first
    assert "补助到账" in line.inner_text() and "医疗互助" in line.inner_text() and "+¥120.00" in line.inner_text()
    assert fits_the_phone(page)
    shot(page, "finance-7-member-transactions")
    page.click("header a.lang")
    assert page.inner_text("h1") == "Transactions" and "Aid received" in line.inner_text()
    page.click("a[href='/card/']")
    assert "expires soon" in page.inner_text("#purses") and "¥120.00" in page.inner_text("#expiring")
    assert fits_the_phone(page)
    shot(page, "finance-8-member-card-en")
