import io
import re

import pytest

from core.models import Role
from members import service
from tests import factories as f


def csrf_from(resp) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', resp.get_data(as_text=True)).group(1)


def sign_in(client, username, password=f.PASSWORD, next_url=None):
    page = client.get("/login")
    url = "/login" + (f"?next={next_url}" if next_url else "")
    return client.post(url, data={"username": username, "password": password, "csrf_token": csrf_from(page)})


@pytest.fixture
def tree(session):
    return f.org_tree(session)


def test_pages_are_chinese_by_default_and_switch_to_english(client):
    zh = client.get("/login").get_data(as_text=True)
    assert 'lang="zh-CN"' in zh and "登录" in zh and "一网一卡一平台" in zh
    en = client.get("/login?lang=en")
    assert "Sign in" in en.get_data(as_text=True) and "登录" not in en.get_data(as_text=True)
    assert "lang=en" in en.headers["Set-Cookie"]
    assert "Sign in" in client.get("/").get_data(as_text=True)  # the choice sticks


def test_login_needs_the_csrf_token(client, session):
    f.user(session, Role.UNION_ADMIN, username="pat")
    resp = client.post("/login", data={"username": "pat", "password": f.PASSWORD})
    assert resp.status_code == 400 and resp.mimetype == "text/html"
    assert client.get("/console/members/").status_code == 302  # still signed out


def test_sign_in_sign_out(client, session):
    f.user(session, Role.UNION_ADMIN, username="quinn")
    resp = sign_in(client, "quinn")
    assert resp.status_code == 302 and resp.headers["Location"] == "/"
    home = client.get("/").get_data(as_text=True)
    assert "欢迎" in home and "工会管理员" in home
    # Signing out is a POST with the token: a link elsewhere cannot sign you out.
    assert client.get("/logout").status_code == 405
    token = csrf_from(client.get("/"))
    assert client.post("/logout", data={"csrf_token": token}).status_code == 302
    assert client.get("/console/members/").status_code == 302


def test_wrong_password_and_lockout_on_the_page(client, session):
    f.user(session, Role.UNION_ADMIN, username="ruth")
    wrong = sign_in(client, "ruth", "wrong-password-x")
    assert wrong.status_code == 200 and "用户名或密码错误" in wrong.get_data(as_text=True)
    for _ in range(4):
        last = sign_in(client, "ruth", "wrong-password-x")
    assert last.status_code == 429 and "失败次数过多" in last.get_data(as_text=True)
    assert sign_in(client, "ruth").status_code == 429


def test_next_only_redirects_within_the_site(client, session):
    f.user(session, Role.UNION_ADMIN, username="sam")
    assert sign_in(client, "sam", next_url="https://evil.example/").headers["Location"] == "/"
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/"))})
    assert sign_in(client, "sam", next_url="/console/members/").headers["Location"] == "/console/members/"


def test_member_search_shows_masked_numbers_in_scope_only(client, session, cipher, tree):
    mine = f.member(session, cipher, tree["yc_base"], "赵在册")
    theirs = f.member(session, cipher, tree["gy_base"], "钱外地")
    plain = service.reveal_id_number(cipher, mine)
    f.user(session, Role.UNION_ADMIN, username="tina", union=tree["yc"])
    sign_in(client, "tina")
    page = client.get("/console/members/").get_data(as_text=True)
    assert "赵在册" in page and "钱外地" not in page
    assert mine.id_number_masked in page and plain not in page
    assert client.get(f"/console/members/{theirs.public_id}").status_code == 404
    detail = client.get(f"/console/members/{mine.public_id}").get_data(as_text=True)
    assert mine.phone_masked in detail and plain not in detail
    found = client.post("/console/members/lookup", data={"id_number": plain, "csrf_token": csrf_from(client.get("/"))})
    assert found.headers["Location"].endswith(f"/console/members/{mine.public_id}")


def test_console_refuses_other_roles_and_sends_strangers_to_login(client, session, cipher, tree):
    assert client.get("/console/members/").headers["Location"].startswith("/login?next=")
    m = f.member(session, cipher, tree["yc_base"])
    f.user(session, Role.MEMBER, username="uma", member=m)
    sign_in(client, "uma")
    resp = client.get("/console/members/")
    assert resp.status_code == 403 and "无权访问" in resp.get_data(as_text=True)


def test_import_page_uploads_and_shows_progress_and_rejected_lines(client, session, tree):
    f.user(session, Role.UNION_ADMIN, username="vera", union=tree["yc"])
    sign_in(client, "vera")
    form = client.get("/console/members/import")
    assert form.status_code == 200 and 'type="file"' in form.get_data(as_text=True)
    assert tree["yc_base"].public_id in form.get_data(as_text=True)  # ids to fill the union_id column
    assert tree["gy_base"].public_id not in form.get_data(as_text=True)
    csv_text = (f"name,id_number,phone,union_id\n甲,{f.unique_id_number()},13900000001,{tree['yc_base'].public_id}\n"
                f"乙,110105194912310021,13900000002,{tree['yc_base'].public_id}\n")
    resp = client.post("/console/members/import", content_type="multipart/form-data",
                       data={"file": (io.BytesIO(csv_text.encode()), "m.csv"), "csrf_token": csrf_from(form)})
    assert resp.status_code == 302
    status_page = client.get(resp.headers["Location"]).get_data(as_text=True)
    assert "<progress" in status_page and "身份证号无效" in status_page and "已完成" in status_page
    progress = client.get(resp.headers["Location"] + "/progress").get_json()
    assert progress == {"status": "completed", "total": 2, "processed": 2, "created": 1, "unchanged": 0,
                        "rejected": 1}
    bad = client.post("/console/members/import", content_type="multipart/form-data",
                      data={"file": (io.BytesIO(b"a,b\n1,2\n"), "bad.csv"), "csrf_token": csrf_from(form)})
    assert bad.status_code == 422 and "missing" in bad.get_data(as_text=True)


def test_translations_are_complete_and_compiled():
    from pathlib import Path

    from babel.messages.mofile import read_mo
    from babel.messages.pofile import read_po

    folder = Path(__file__).resolve().parents[2] / "core" / "translations"
    po = read_po(open(folder / "zh/LC_MESSAGES/messages.po", "rb"))
    mo = read_mo(open(folder / "zh/LC_MESSAGES/messages.mo", "rb"))
    pot = read_po(open(folder / "messages.pot", "rb"))
    assert [m.id for m in po if m.id and not m.string] == []
    assert [m.id for m in po if m.id and m.fuzzy] == []  # fuzzy guesses are not translations
    assert {m.id: m.string for m in po if m.id} == {m.id: m.string for m in mo if m.id}
    assert {m.id for m in pot if m.id} <= {m.id for m in po if m.id}


def test_every_string_in_the_source_has_a_chinese_translation():
    from pathlib import Path

    from babel.messages.extract import extract_from_dir
    from babel.messages.pofile import read_po

    root = Path(__file__).resolve().parents[2]
    translated = {m.id for m in read_po(open(root / "core/translations/zh/LC_MESSAGES/messages.po", "rb")) if m.id}
    method_map = [("**/.venv/**", "ignore"), ("**/tests/**", "ignore"), ("**/bench/**", "ignore"),
                  ("**/migrations/**", "ignore"), ("**.py", "python"), ("**/templates/**.html", "jinja2")]
    keywords = {"_": None, "gettext": None, "N_": None}
    found = set()
    for top in ("core", "members", "cards", "merchants", "benefits", "payments"):
        for _file, _line, message, _comments, _ctx in extract_from_dir(root / top, method_map, keywords=keywords):
            found.add(message if isinstance(message, str) else message[0])
    assert sorted(found - translated) == []  # run `make translations` and translate the new strings


def test_signing_in_and_out_of_the_pages_is_audited(client, session):
    from sqlalchemy import select

    from core.models import AuditEvent

    u = f.user(session, Role.AUDITOR, username="wendy")
    sign_in(client, "wendy", "wrong-password-x")
    sign_in(client, "wendy")
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/"))})
    client.post("/logout", data={"csrf_token": csrf_from(client.get("/"))})  # already out: nothing to record
    events = session.scalars(select(AuditEvent).where(AuditEvent.object_id == u.public_id)
                             .order_by(AuditEvent.id)).all()
    assert [(e.action, e.actor_id) for e in events] == [("auth.session.signed_in", u.id),
                                                        ("auth.session.signed_out", u.id)]
