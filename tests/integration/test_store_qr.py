"""Store QR codes read back from the images: the pay-page URL and the EMVCo merchant-presented payload."""

import io
import re
import xml.etree.ElementTree as ET

import pytest
import zxingcpp
from PIL import Image

from core import emvco
from core.models import Role
from tests import factories as f

SVG_NS = "{http://www.w3.org/2000/svg}"


def decode(png: bytes) -> str:
    """Read the one QR code in a PNG image."""
    # Only QR codes are looked for: a linear-barcode detector can see a false code in a QR code's modules.
    found = zxingcpp.read_barcodes(Image.open(io.BytesIO(png)), formats=zxingcpp.BarcodeFormat.QRCode)
    assert len({code.text for code in found}) == 1, [(code.format, code.text) for code in found]
    return found[0].text


def csrf(resp) -> str:
    return re.search(r'name="csrf-token" content="([^"]+)"', resp.get_data(as_text=True)).group(1)


@pytest.fixture
def shop(session, cipher):
    return f.merchant(session, cipher, "银川好味餐厅", category="supermarket", region="640402")


@pytest.fixture
def owner(session, shop):
    return f.bearer(session, f.user(session, Role.MERCHANT_OWNER, merchant_id=shop.id))


@pytest.mark.parametrize("query", ["", "?variant=url"])
def test_the_url_variant_decodes_to_the_pay_page_url(client, shop, owner, query):
    store_id = shop.stores[0].public_id
    resp = client.get(f"/api/v1/stores/{store_id}/qr.png{query}", headers=owner)
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    assert decode(resp.data) == f"http://localhost/pay/{store_id}"


def test_the_emvco_variant_decodes_to_a_payload_that_names_the_store(client, shop, owner):
    store_id = shop.stores[0].public_id
    resp = client.get(f"/api/v1/stores/{store_id}/qr.png?variant=emvco", headers=owner)
    assert resp.status_code == 200 and resp.mimetype == "image/png"
    payload = decode(resp.data)
    assert emvco.check_crc(payload)
    fields = emvco.parse_tlv(payload)
    assert fields["00"] == "01" and fields["01"] == "11"
    account = emvco.parse_tlv(fields["26"])
    assert account == {"00": "CN.ORG.UNIONCARD", "01": f"http://localhost/pay/{store_id}", "02": store_id}
    assert emvco.parse_tlv(fields["62"]) == {"07": store_id}
    assert fields["52"] == "5411" and fields["53"] == "156" and fields["58"] == "CN"
    assert fields["59"] == "UNIONCARD MERCHANT" and fields["60"] == "GUYUAN"
    assert emvco.parse_tlv(fields["64"]) == {"00": "ZH", "01": "银川好味餐厅", "02": "固原"}


def test_the_json_payload_agrees_with_the_image(client, shop, owner):
    store_id = shop.stores[0].public_id
    resp = client.get(f"/api/v1/stores/{store_id}/emvco", headers=owner)
    assert resp.status_code == 200, resp.get_json()
    body = resp.get_json()
    assert set(body) == {"store_id", "payload", "crc"}
    assert body["store_id"] == store_id and body["payload"].endswith("6304" + body["crc"])
    assert len(body["crc"]) == 4 and body["crc"] == body["crc"].upper() and emvco.check_crc(body["payload"])
    image = client.get(f"/api/v1/stores/{store_id}/qr.png?variant=emvco", headers=owner)
    assert decode(image.data) == body["payload"]


def test_a_store_of_its_own_category_gets_its_own_code(client, session, shop, owner):
    from merchants.models import MerchantCategory

    store = shop.stores[0]
    store.category = MerchantCategory.PHARMACY
    session.commit()
    payload = client.get(f"/api/v1/stores/{store.public_id}/emvco", headers=owner).get_json()["payload"]
    assert emvco.parse_tlv(payload)["52"] == "5912"


@pytest.mark.parametrize("query", ["", "?variant=emvco"])
def test_the_svg_forms_are_well_formed_xml_with_a_path(client, shop, owner, query):
    resp = client.get(f"/api/v1/stores/{shop.stores[0].public_id}/qr.svg{query}", headers=owner)
    assert resp.status_code == 200 and resp.mimetype == "image/svg+xml"
    root = ET.fromstring(resp.data)
    assert root.tag == f"{SVG_NS}svg"
    paths = root.findall(f".//{SVG_NS}path")
    assert paths and all(p.get("d") for p in paths)


def test_the_variants_are_different_codes(client, shop, owner):
    url = f"/api/v1/stores/{shop.stores[0].public_id}/qr.svg"
    assert client.get(url, headers=owner).data != client.get(url + "?variant=emvco", headers=owner).data


@pytest.mark.parametrize("value", ["bank", "EMVCO", "", "url,emvco"])
def test_an_unknown_variant_is_a_validation_error(client, shop, owner, value):
    resp = client.get(f"/api/v1/stores/{shop.stores[0].public_id}/qr.png?variant={value}", headers=owner)
    assert resp.status_code == 422 and resp.mimetype == "application/json"
    body = resp.get_json()
    assert body["error"] == "validation_error" and "variant" in body["errors"]


def test_a_suspended_merchants_store_is_refused_in_every_form(client, session, shop, owner):
    reviewer = f.bearer(session, f.user(session, Role.MERCHANT_REVIEWER))
    store_id = shop.stores[0].public_id
    urls = [f"/api/v1/stores/{store_id}/qr.png?variant=emvco", f"/api/v1/stores/{store_id}/qr.svg?variant=emvco",
            f"/api/v1/stores/{store_id}/qr.png", f"/api/v1/stores/{store_id}/emvco"]
    assert all(client.get(url, headers=owner).status_code == 200 for url in urls)
    suspended = client.post(f"/api/v1/merchants/{shop.public_id}/suspend", headers=reviewer,
                            json={"reason": "投诉核查"})
    assert suspended.get_json()["status"] == "suspended"
    for url in urls:
        refused = client.get(url, headers=owner)
        assert refused.status_code == 409 and refused.get_json()["error"] == "store_not_accepting", url
    client.post(f"/api/v1/merchants/{shop.public_id}/reinstate", headers=reviewer, json={"reason": "核查完毕"})
    assert client.get(urls[-1], headers=owner).status_code == 200


def test_a_closed_store_is_refused(client, shop, owner):
    store_id = shop.stores[0].public_id
    closed = client.patch(f"/api/v1/stores/{store_id}", headers=owner, json={"status": "closed"})
    assert closed.status_code == 200
    refused = client.get(f"/api/v1/stores/{store_id}/emvco", headers=owner)
    assert refused.status_code == 409 and refused.get_json()["error"] == "store_not_accepting"


@pytest.mark.parametrize("role", [Role.MERCHANT_OWNER, Role.MERCHANT_MANAGER, Role.MERCHANT_CASHIER],
                         ids=lambda r: r.value)
def test_another_merchants_staff_get_404(client, session, cipher, shop, role):
    other = f.merchant(session, cipher, "别家")
    intruder = f.bearer(session, f.user(session, role, merchant_id=other.id))
    store_id = shop.stores[0].public_id
    for url in (f"/api/v1/stores/{store_id}/emvco", f"/api/v1/stores/{store_id}/qr.png?variant=emvco"):
        resp = client.get(url, headers=intruder)
        assert resp.status_code == 404 and resp.get_json()["error"] == "not_found", url


def test_an_unknown_store_is_404(client, owner):
    resp = client.get("/api/v1/stores/sto_nosuchstore/emvco", headers=owner)
    assert resp.status_code == 404 and resp.get_json()["error"] == "not_found"


@pytest.mark.parametrize("role, status", [(Role.APPLICANT, 403), (Role.AUDITOR, 403), (None, 401)],
                         ids=["applicant", "auditor", "anonymous"])
def test_who_may_not_read_the_payload(client, session, shop, role, status):
    headers = f.bearer(session, f.user(session, role)) if role else {}
    resp = client.get(f"/api/v1/stores/{shop.stores[0].public_id}/emvco", headers=headers)
    assert resp.status_code == status


def test_the_poster_carries_both_codes(client, session, shop):
    f.user(session, Role.MERCHANT_OWNER, merchant_id=shop.id, username="poster-owner")
    client.post("/login", data={"username": "poster-owner", "password": f.PASSWORD,
                                "csrf_token": csrf(client.get("/login"))})
    page = client.get(f"/merchant/stores/{shop.stores[0].public_id}/poster?lang=en")
    assert page.status_code == 200
    html = page.get_data(as_text=True)
    assert html.count("<svg") == 2 and "For bank apps" in html and "@media print" in html
