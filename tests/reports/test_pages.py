"""The finance dashboard and the report pages: who sees them, what they show, and their downloads."""

import csv
import functools
import html
import io
import re

import pytest
from openpyxl import load_workbook
from sqlalchemy import func, select

from core.models import Role
from payments import ledger
from payments.disbursement.models import Program
from payments.ledger.types import TrialBalance
from payments.reports import service
from tests import factories as f
from tests.reports.conftest import EMPTY_CITY, PHARMACY_CITY, PROVINCE, balance_of


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


def fen(shown: str) -> int:
    """An amount as the pages show it ("¥11,970.00", "-¥100.00") in fen."""
    match = re.fullmatch(r"(-?)¥(\d{1,3}(?:,\d{3})*)\.(\d{2})", shown.strip())
    assert match, f"not an amount: {shown!r}"
    value = int(match.group(2).replace(",", "")) * 100 + int(match.group(3))
    return -value if match.group(1) else value


PROGRAM_FIGURES = ("funded", "disbursed", "spent", "subsidised", "expired", "returned", "balance")
CHART_SERIES = ("funded", "disbursed", "spent", "expired", "returned")


def program_rows(page: str) -> dict[str, dict]:
    """The programs table of a page: each program's name and figures (in fen), by program id."""
    out = {}
    for program_id, cells in re.findall(r'<tr data-program="(prg_[^"]+)">(.*?)</tr>', page, re.DOTALL):
        name = re.search(r'<td data-label="[^"]*">(.*?)</td>', cells, re.DOTALL).group(1).strip()
        out[program_id] = {"name": name, **{n: fen(figure(cells, n)) for n in PROGRAM_FIGURES}}
    return out


PAGES = ["/finance/dashboard", "/finance/reports/programs", "/finance/reports/merchants",
         "/finance/reports/trial-balance"]
DOWNLOADS = ["/finance/reports/programs.csv", "/finance/reports/programs.xlsx", "/finance/reports/merchants.csv",
             "/finance/reports/merchants.xlsx", "/finance/reports/trial-balance.csv",
             "/finance/reports/trial-balance.xlsx"]


def test_the_dashboard_shows_where_the_money_is(client, scenario):
    """The tiles and the days add up the whole database: the story moves them by its own amounts."""
    before = scenario["before"]
    sign_in(client, scenario["users"]["approver"])
    resp = client.get("/finance/dashboard")
    assert resp.status_code == 200
    page = text_of(resp)
    tiles = dict(re.findall(r'data-tile="([a-z-]+)"><p class="muted">[^<]*</p><p class="figure">([^<]*)</p>', page))
    assert set(tiles) == {"bank", "clearing", "in-transit", "payables", "exceptions"}
    was = before["tiles"]
    assert {"bank": fen(tiles["bank"]) - was.bank, "clearing": fen(tiles["clearing"]) - was.clearing,
            "in-transit": fen(tiles["in-transit"]) - was.in_transit, "payables": fen(tiles["payables"]) - was.payables,
            "exceptions": int(tiles["exceptions"]) - was.open_exceptions} == {
        "bank": 1_197_000, "clearing": 0, "in-transit": 10_000, "payables": 6_900, "exceptions": 1}
    assert 'class="card tile-alert" data-tile="exceptions"' in page
    aid = row(page, "data-program", scenario["aid"].public_id)
    assert [figure(aid, n) for n in PROGRAM_FIGURES] == [
        "¥10,000.00", "¥600.00", "¥150.00", "¥10.00", "¥360.00", "¥1,000.00", "¥9,850.00"]
    assert fen(figure(row(page, "data-program", "total"), "funded")) - before["programs"].funded == 1_200_000
    # The programs' bar chart: five bars for each of the (at most eight) programs with the most money funded,
    # as the table under it has them; the story's programs among the table's rows.
    table = program_rows(page)
    assert [p for p in table if p in scenario["program_ids"]] == scenario["program_ids"]
    assert table[scenario["aid"].public_id]["name"] == "医药救助"
    chart = re.search(r'<figure class="chart" id="programs-chart">(.*?)</figure>', page, re.DOTALL).group(1)
    groups = [(label, [int(v) for v in re.findall(r'<rect class="bar (?:funded|disbursed|spent|expired|returned)"'
                                                  r'[^>]*data-value="(-?\d+)"', bars)])
              for label, bars in re.findall(r'<g class="chart-group">\s*<text class="chart-label"[^>]*>([^<]*)</text>'
                                            r'(.*?)</g>', chart, re.DOTALL)]
    biggest = sorted(table.items(), key=lambda item: (-item[1]["funded"], -item[1]["disbursed"], item[0]))[:8]
    assert groups == [(r["name"], [r[n] for n in CHART_SERIES]) for _id, r in biggest]
    # The line chart of the last 30 days, and its table: today's payments and settlement.
    line = re.search(r'<figure class="chart line-chart" id="daily-chart">(.*?)</figure>', page, re.DOTALL).group(1)
    assert line.count('class="dot payments"') == 30 and line.count('class="dot settlements"') == 30
    today = scenario["today"]
    cells = re.findall(r'class="num">([^<]*)</td>', row(page, "data-day", today.isoformat()))
    was = before["days"][today]
    assert [int(cells[0]) - was.payments] + [fen(c) - getattr(was, n) for c, n in zip(
        cells[1:], ("charged", "refunded", "settled", "fees"), strict=True)] == [3, 43_000, 14_000, 1_000, 0]
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
    # All programs together this month: the story's money on top of what the database held before.
    month, was = row(page, "data-month", today.strftime("%Y-%m")), scenario["before"]["month"]
    assert [fen(figure(month, n)) - getattr(was, n) for n in ("funded", "disbursed", "spent", "returned")] == [
        1_200_000, 80_000, 15_000, 100_000]
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
    pharmacy_id, shop_id = scenario["pharmacy"].public_id, scenario["shop"].public_id
    page = text_of(client.get(f"/finance/reports/merchants?region={PROVINCE}"))
    assert re.findall(r'<tr data-merchant="([^"]+)">', page) == [pharmacy_id, shop_id]
    pharmacy = row(page, "data-merchant", pharmacy_id)
    assert [figure(pharmacy, n) for n in ("receivable", "payable", "in_transit", "paid", "sales", "settled")] == [
        "¥119.00", "¥19.00", "¥100.00", "¥30.00", "¥380.00", "¥140.00"]
    assert figure(row(page, "data-merchant", "total"), "receivable") == "¥169.00"
    dining = text_of(client.get(f"/finance/reports/merchants?category=dining&region={PROVINCE}"))
    assert shop_id in dining and pharmacy_id not in dining
    assert figure(row(dining, "data-merchant", "total"), "receivable") == "¥50.00"
    city = text_of(client.get(f"/finance/reports/merchants?region={PHARMACY_CITY}&cursor="))
    assert pharmacy_id in city and shop_id not in city
    assert figure(row(city, "data-merchant", "total"), "receivable") == "¥119.00"
    bad = client.get("/finance/reports/merchants?region=999999&category=casino")
    assert bad.status_code == 422
    text = text_of(bad)
    assert "Choose a category from the list." in text and "6-digit administrative division code" in text


def test_the_trial_balance_page(client, scenario):
    """The books as a whole balance; the story moved the payouts and payables groups by its own amounts."""
    sign_in(client, scenario["users"]["auditor"])
    page = text_of(client.get("/finance/reports/trial-balance"))
    assert 'id="balanced">Balanced<' in page
    groups = set(re.findall(r'<tr[^>]*data-group="([a-z]+)" data-currency="CNY">', page))
    assert {"card", "program", "disbursement", "merchant", "union", "payout", "total"} <= groups
    total = row(page, "data-group", "total")
    assert figure(total, "balance") == "¥0.00" and figure(total, "debits") == figure(total, "credits")
    was = scenario["before"]["trial_balance"]
    # Owed: credit balances grow.
    assert fen(figure(row(page, "data-group", "payout"), "balance")) - balance_of(was, "payout") == -10_000
    assert fen(figure(row(page, "data-group", "merchant"), "balance")) - balance_of(was, "merchant") == -6_900
    assert "Aid program budgets" in page and "Merchant payables" in page


def test_xlsx_downloads_read_back(client, session, scenario):
    programs = session.scalar(select(func.count()).select_from(Program))  # the story's three, and any others
    sign_in(client, scenario["users"]["auditor"])
    resp = client.get("/finance/reports/programs.xlsx")
    assert resp.status_code == 200 and resp.mimetype.endswith("spreadsheetml.sheet")
    assert re.match(r'attachment; filename="programs-\d{8}\.xlsx"', resp.headers["Content-Disposition"])
    sheet = load_workbook(io.BytesIO(resp.data)).active
    rows = list(sheet.values)
    assert rows[0] == ("Program", "Program ID", "Funded (fen)", "Disbursed (fen)", "Spent (fen)",
                       "Union subsidy (fen)", "Expired (fen)", "Returned (fen)", "Clawed back (fen)",
                       "Budget balance now (fen)", "Currency")
    assert [r[1] for r in rows[1:] if r[1] in scenario["program_ids"]] == scenario["program_ids"]
    by_id = {r[1]: r for r in rows[1:]}
    assert by_id[scenario["aid"].public_id] == ("医药救助", scenario["aid"].public_id, 1_000_000, 60_000, 15_000, 1_000,
                                                36_000, 100_000, 40_000, 985_000, "CNY")
    assert by_id[scenario["idle"].public_id][2:] == (0, 0, 0, 0, 0, 0, 0, 0, "CNY")
    assert len(rows) == 1 + programs
    today = scenario["today"]
    monthly = load_workbook(io.BytesIO(client.get(
        f"/finance/reports/programs.xlsx?by=month&from={today.replace(day=1)}&to={today}").data)).active
    month_rows = list(monthly.values)
    assert month_rows[0][:3] == ("Program", "Program ID", "Month") and len(month_rows) == 1 + programs
    aid_months = [r for r in month_rows[1:] if r[1] == scenario["aid"].public_id]
    assert [r[2:5] for r in aid_months] == [(today.strftime("%Y-%m"), 1_000_000, 60_000)]

    merchants = list(load_workbook(io.BytesIO(client.get(f"/finance/reports/merchants.xlsx?region={PROVINCE}").data))
                     .active.values)
    head = merchants[0]
    pharmacy = dict(zip(head, next(r for r in merchants[1:] if r[1] == scenario["pharmacy"].public_id)))
    assert (pharmacy["Receivable (fen)"], pharmacy["Paid out (fen)"], pharmacy["Fees (fen)"],
            pharmacy["Category"]) == (11_900, 3_000, 100, "pharmacy")
    assert [r[1] for r in merchants[1:]] == [scenario["pharmacy"].public_id, scenario["shop"].public_id]

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
    merchants = list(csv.reader(io.StringIO(client.get(f"/finance/reports/merchants.csv?lang=zh&region={PROVINCE}")
                                            .data.decode("utf-8-sig"))))
    assert merchants[0][0] == "商户" and merchants[1][:3] == ["仁心药房", scenario["pharmacy"].public_id, "药店"]
    assert client.get("/finance/reports/merchants.csv?from=2026-13-01").status_code == 422
    assert client.get("/finance/reports/programs.csv?to=1999-01-01").status_code == 422


def rows_of(resp) -> list:
    return list(load_workbook(io.BytesIO(resp.data)).active.values)


@pytest.mark.parametrize("role", [Role.FINANCE_MAKER, Role.FINANCE_APPROVER, Role.AUDITOR])
def test_the_pages_render_when_nothing_is_chosen(client, session, role):
    """Every page and download answers whatever the database holds; filters that select nothing show so."""
    sign_in(client, f.user(session, role))
    for url in PAGES + DOWNLOADS:
        resp = client.get(url)
        assert resp.status_code == 200, url
    assert text_of(client.get("/finance/dashboard")).count("<tr data-day=") == 30
    nowhere = text_of(client.get(f"/finance/reports/merchants?region={EMPTY_CITY}"))
    assert "No merchants match." in nowhere and "data-merchant=" not in nowhere
    for fmt in ("csv", "xlsx"):
        resp = client.get(f"/finance/reports/merchants.{fmt}?region={EMPTY_CITY}")
        assert resp.status_code == 200
        lines = list(csv.reader(io.StringIO(resp.data.decode("utf-8-sig")))) if fmt == "csv" else rows_of(resp)
        assert len(lines) == 1 and lines[0][1] == "Merchant ID"
    # A period before anything happened: no program moved money in it.
    past = text_of(client.get("/finance/reports/programs?from=2000-01-01&to=2000-01-31"))
    assert "data-month=\"2000-01\"" in past or "No aid programs yet." in past
    for cells in re.findall(r'<tr[^>]*data-(?:program|month)="[^"]+">(.*?)</tr>', past, re.DOTALL):
        assert all(fen(figure(cells, n)) == 0 for n in CHART_SERIES)


def test_the_pages_say_when_there_is_nothing_to_show(client, session, monkeypatch):
    """No program selected and no account posted to: the pages say so, the downloads hold their headers only."""
    monkeypatch.setattr(service, "program_figures", functools.partial(service.program_figures, program_ids=[]))
    monkeypatch.setattr(service, "program_months", functools.partial(service.program_months, program_ids=[]))
    monkeypatch.setattr(ledger, "trial_balance", lambda session: TrialBalance([], {}))
    sign_in(client, f.user(session, Role.AUDITOR))
    dashboard = text_of(client.get("/finance/dashboard"))
    assert "No aid programs yet." in dashboard and "programs-chart" not in dashboard
    assert dashboard.count("<tr data-day=") == 30
    for url in ("/finance/reports/programs", "/finance/reports/programs?from=2000-01-01&to=2000-01-31"):
        page = text_of(client.get(url))
        assert "No aid programs yet." in page and "data-program=" not in page and "data-month=" not in page
    assert len(rows_of(client.get("/finance/reports/programs.xlsx"))) == 1
    trial_balance = text_of(client.get("/finance/reports/trial-balance"))
    assert "Nothing has been posted yet." in trial_balance and "data-group=" not in trial_balance
    assert rows_of(client.get("/finance/reports/trial-balance.xlsx"))[1:] == []


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
