"""The finance dashboard and the report pages: who sees them, what they show, and their downloads."""

import csv
import html
import io
import re

import pytest
from openpyxl import load_workbook

from core.models import Role
from tests import factories as f


def csrf(resp) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', resp.get_data(as_text=True)).group(1)


def sign_in(client, user, *, lang="en"):
    """Sign in through the login page; read the pages in `lang` from then on (None: the default, Chinese)."""
    resp = client.post("/login", data={"username": user.username, "password": f.PASSWORD,
                                       "csrf_token": csrf(client.get("/login"))})
    assert resp.status_code == 302, resp.get_data(as_text=True)
    if lang:
        client.get(f"/?lang={lang}")


def text_of(resp) -> str:
    return html.unescape(resp.get_data(as_text=True))


def row(page: str, attribute: str, key: str) -> str:
    match = re.search(rf'<tr[^>]*{attribute}="{re.escape(key)}"[^>]*>(.*?)</tr>', page, re.DOTALL)
    assert match, f"no row {attribute}={key}"
    return match.group(1)


def figure(cells: str, name: str) -> str:
    return re.search(rf'data-figure="{name}">([^<]*)<', cells).group(1)


PAGES = ["/finance/dashboard", "/finance/reports/programs", "/finance/reports/merchants",
         "/finance/reports/trial-balance"]
DOWNLOADS = ["/finance/reports/programs.csv", "/finance/reports/programs.xlsx", "/finance/reports/merchants.csv",
             "/finance/reports/merchants.xlsx", "/finance/reports/trial-balance.csv",
             "/finance/reports/trial-balance.xlsx"]


def test_the_dashboard_shows_where_the_money_is(client, scenario):
    sign_in(client, scenario["users"]["approver"])
    resp = client.get("/finance/dashboard")
    assert resp.status_code == 200
    page = text_of(resp)
    tiles = dict(re.findall(r'data-tile="([a-z-]+)"><p class="muted">[^<]*</p><p class="figure">([^<]*)</p>', page))
    assert tiles == {"bank": "¥11,970.00", "clearing": "¥0.00", "in-transit": "¥100.00", "payables": "¥69.00",
                     "exceptions": "1"}
    assert 'class="card tile-alert" data-tile="exceptions"' in page
    aid = row(page, "data-program", scenario["aid"].public_id)
    assert [figure(aid, n) for n in ("funded", "disbursed", "spent", "subsidised", "expired", "returned", "balance")] == [
        "¥10,000.00", "¥600.00", "¥150.00", "¥10.00", "¥360.00", "¥1,000.00", "¥9,850.00"]
    assert figure(row(page, "data-program", "total"), "funded") == "¥12,000.00"
    # The programs' bar chart: five bars per program, and the table under it.
    chart = re.search(r'<figure class="chart" id="programs-chart">(.*?)</figure>', page, re.DOTALL).group(1)
    values = [int(v) for v in re.findall(r'<rect class="bar (?:funded|disbursed|spent|expired|returned)"[^>]*'
                                         r'data-value="(-?\d+)"', chart)]
    assert values[:5] == [1_000_000, 60_000, 15_000, 36_000, 100_000] and len(values) == 15
    # The line chart of the last 30 days, and its table: today's payments and settlement.
    line = re.search(r'<figure class="chart line-chart" id="daily-chart">(.*?)</figure>', page, re.DOTALL).group(1)
    assert line.count('class="dot payments"') == 30 and line.count('class="dot settlements"') == 30
    today = row(page, "data-day", scenario["today"].isoformat())
    assert "¥430.00" in today and "¥140.00" in today and "¥10.00" in today
    assert page.count("<tr data-day=") == 30


def test_the_programs_report_and_its_months(client, scenario):
    sign_in(client, scenario["users"]["auditor"])
    page = text_of(client.get("/finance/reports/programs"))
    assert figure(row(page, "data-program", scenario["aid"].public_id), "spent") == "¥150.00"
    assert "Choose the first and last day of a period" in page
    today = scenario["today"]
    resp = client.get(f"/finance/reports/programs?from={today.replace(day=1)}&to={today}")
    assert resp.status_code == 200
    page = text_of(resp)
    month = row(page, "data-month", today.strftime("%Y-%m"))
    assert [figure(month, n) for n in ("funded", "disbursed", "returned")] == ["¥12,000.00", "¥800.00", "¥1,000.00"]
    links = re.findall(r'href="(/finance/reports/programs\.(?:csv|xlsx)[^"]*)"', page)
    assert len(links) == 4 and all(f"from={today.replace(day=1)}" in link for link in links)
    assert sum("by=month" in link for link in links) == 2
    odd = client.get(f"/finance/reports/programs?from={today}&fmt=pdf&endpoint=x&_external=1&_scheme=ftp")
    assert odd.status_code == 200
    assert all("fmt=pdf" not in link and "_scheme" not in link
               for link in re.findall(r'href="(/finance/reports/programs\.[^"]*)"', text_of(odd)))
    past = text_of(client.get("/finance/reports/programs?from=2020-01-01&to=2020-01-31"))
    assert figure(row(past, "data-program", scenario["aid"].public_id), "funded") == "¥0.00"
    assert figure(row(past, "data-program", scenario["aid"].public_id), "balance") == "¥9,850.00"
    bad = client.get("/finance/reports/programs?from=2026-02-30")
    assert bad.status_code == 422 and "Enter the dates as YYYY-MM-DD." in text_of(bad)
    too_long = client.get("/finance/reports/programs?from=2020-01-01&to=2026-01-01")
    assert too_long.status_code == 422 and "Figures by month cover at most 36 months." in text_of(too_long)
    backwards = client.get("/finance/reports/programs?from=2026-02-01&to=2026-01-01")
    assert backwards.status_code == 422 and "comes before its start" in text_of(backwards)


def test_the_merchants_report_filters_and_pages(client, scenario):
    sign_in(client, scenario["users"]["maker"])
    page = text_of(client.get("/finance/reports/merchants"))
    pharmacy = row(page, "data-merchant", scenario["pharmacy"].public_id)
    assert [figure(pharmacy, n) for n in ("receivable", "payable", "in_transit", "paid", "sales", "settled")] == [
        "¥119.00", "¥19.00", "¥100.00", "¥30.00", "¥380.00", "¥140.00"]
    assert figure(row(page, "data-merchant", "total"), "receivable") == "¥169.00"
    dining = text_of(client.get("/finance/reports/merchants?category=dining"))
    assert scenario["shop"].public_id in dining and scenario["pharmacy"].public_id not in dining
    assert figure(row(dining, "data-merchant", "total"), "receivable") == "¥50.00"
    first = text_of(client.get("/finance/reports/merchants?region=640000&cursor="))
    assert scenario["shop"].public_id in first
    bad = client.get("/finance/reports/merchants?region=999999&category=casino")
    assert bad.status_code == 422
    text = text_of(bad)
    assert "Choose a category from the list." in text and "6-digit administrative division code" in text


def test_the_trial_balance_page(client, scenario):
    sign_in(client, scenario["users"]["auditor"])
    page = text_of(client.get("/finance/reports/trial-balance"))
    assert 'id="balanced">Balanced<' in page
    groups = set(re.findall(r'<tr[^>]*data-group="([a-z]+)" data-currency="CNY">', page))
    assert {"card", "program", "disbursement", "merchant", "union", "payout", "total"} <= groups
    total = row(page, "data-group", "total")
    assert figure(total, "balance") == "¥0.00" and figure(total, "debits") == figure(total, "credits")
    assert figure(row(page, "data-group", "payout"), "balance") == "-¥100.00"  # owed: a credit balance
    assert "Aid program budgets" in page and "Merchant payables" in page


def test_xlsx_downloads_read_back(client, scenario):
    sign_in(client, scenario["users"]["auditor"])
    resp = client.get("/finance/reports/programs.xlsx")
    assert resp.status_code == 200 and resp.mimetype.endswith("spreadsheetml.sheet")
    assert re.match(r'attachment; filename="programs-\d{8}\.xlsx"', resp.headers["Content-Disposition"])
    sheet = load_workbook(io.BytesIO(resp.data)).active
    rows = list(sheet.values)
    assert rows[0] == ("Program", "Program ID", "Funded (fen)", "Disbursed (fen)", "Spent (fen)",
                       "Union subsidy (fen)", "Expired (fen)", "Returned (fen)", "Clawed back (fen)",
                       "Budget balance now (fen)", "Currency")
    assert rows[1] == ("医药救助", scenario["aid"].public_id, 1_000_000, 60_000, 15_000, 1_000, 36_000, 100_000, 40_000,
                       985_000, "CNY")
    assert len(rows) == 4
    today = scenario["today"]
    monthly = load_workbook(io.BytesIO(client.get(
        f"/finance/reports/programs.xlsx?by=month&from={today.replace(day=1)}&to={today}").data)).active
    month_rows = list(monthly.values)
    assert month_rows[0][:3] == ("Program", "Program ID", "Month") and len(month_rows) == 4
    assert month_rows[1][2:4] == (today.strftime("%Y-%m"), 1_000_000)

    merchants = list(load_workbook(io.BytesIO(client.get("/finance/reports/merchants.xlsx").data)).active.values)
    head = merchants[0]
    pharmacy = dict(zip(head, next(r for r in merchants[1:] if r[1] == scenario["pharmacy"].public_id)))
    assert (pharmacy["Receivable (fen)"], pharmacy["Paid out (fen)"], pharmacy["Fees (fen)"],
            pharmacy["Category"]) == (11_900, 3_000, 100, "pharmacy")
    assert len(merchants) == 3

    tb = list(load_workbook(io.BytesIO(client.get("/finance/reports/trial-balance.xlsx").data)).active.values)
    assert tb[0][:3] == ("Account type", "Account code prefix", "Currency")
    assert tb[-1][0] == "Total" and tb[-1][4] == tb[-1][5] and tb[-1][6] == 0


def test_downloads_follow_the_page_language(client, scenario):
    sign_in(client, scenario["users"]["auditor"], lang=None)
    body = client.get("/finance/reports/programs.csv").data.decode("utf-8-sig")
    head = next(csv.reader(io.StringIO(body)))
    assert head[0] == "帮扶项目"  # Chinese by default
    english = client.get("/finance/reports/programs.csv?lang=en").data.decode("utf-8-sig")
    assert next(csv.reader(io.StringIO(english)))[0] == "Program"
    merchants = list(csv.reader(io.StringIO(client.get("/finance/reports/merchants.csv?lang=zh")
                                            .data.decode("utf-8-sig"))))
    assert merchants[0][0] == "商户" and merchants[1][:3] == ["仁心药房", scenario["pharmacy"].public_id, "药店"]
    assert client.get("/finance/reports/merchants.csv?from=2026-13-01").status_code == 422
    assert client.get("/finance/reports/programs.csv?to=1999-01-01").status_code == 422


@pytest.mark.parametrize("role", [Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR])
def test_the_pages_render_on_an_empty_database(client, session, role):
    sign_in(client, f.user(session, role))
    for url in PAGES:
        resp = client.get(url)
        assert resp.status_code == 200, url
    dashboard = text_of(client.get("/finance/dashboard"))
    assert "No aid programs yet." in dashboard and dashboard.count("<tr data-day=") == 30
    assert "No merchants match." in text_of(client.get("/finance/reports/merchants"))
    assert "Nothing has been posted yet." in text_of(client.get("/finance/reports/trial-balance"))
    for url in DOWNLOADS:
        resp = client.get(url)
        assert resp.status_code == 200, url
    assert len(list(load_workbook(io.BytesIO(client.get("/finance/reports/programs.xlsx").data)).active.values)) == 1


@pytest.mark.parametrize("role", [Role.MEMBER, Role.UNION_ADMIN, Role.MERCHANT_OWNER, Role.MERCHANT_REVIEWER,
                                  Role.APPLICANT])
def test_others_may_not_see_the_pages(client, session, cipher, role):
    kwargs = {}
    if role == Role.MEMBER:
        kwargs["member"] = f.member(session, cipher, f.union(session))
    if role == Role.MERCHANT_OWNER:
        kwargs["merchant_id"] = f.merchant(session, cipher).id
    sign_in(client, f.user(session, role, **kwargs))
    for url in PAGES + DOWNLOADS:
        assert client.get(url).status_code == 403, url


def test_anonymous_visitors_are_sent_to_sign_in(client):
    for url in PAGES + DOWNLOADS:
        resp = client.get(url)
        assert resp.status_code == 302 and "/login" in resp.headers["Location"], url
