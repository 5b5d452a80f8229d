import pytest

from core import emvco

# The sample payload of the EMVCo MPM specification (v1.1, Annex B): a template in another language,
# lengths in characters, the CRC over the UTF-8 bytes.
EMVCO_SAMPLE = ("00020101021229300012D156000000000510A93FO3230Q31280012D15600000001030812345678520441115802CN"
                "5914BEST TRANSPORT6007BEIJING64200002ZH0104最佳运输0202北京540523.7253031565502016233030412340603***"
                "0708A60086670902ME91320016A0112233449988770708123456786304A13A")
# A static PromptPay payload for the mobile number 089-999-9999, as PromptPay generators print it.
PROMPTPAY_SAMPLE = "00020101021129370016A000000677010111011300668999999995802TH53037646304FE29"

STORE_ID = "sto_0123456789abcdefGHIJ"
PAY_URL = f"http://localhost/pay/{STORE_ID}"


def build(**over):
    args = {"store_public_id": STORE_ID, "merchant_name": "银川好味餐厅", "category": "dining",
            "region": "640104", "pay_url": PAY_URL} | over
    return emvco.merchant_presented_payload(**args)


def test_crc16_ccitt_false_check_value():
    assert emvco.crc16_ccitt(b"123456789") == 0x29B1
    assert emvco.crc16_ccitt(b"") == 0xFFFF


@pytest.mark.parametrize("payload", [EMVCO_SAMPLE, PROMPTPAY_SAMPLE], ids=["emvco-annex-b", "promptpay"])
def test_published_payloads_carry_the_crc_we_compute(payload):
    assert f"{emvco.crc16_ccitt(payload[:-4].encode('utf-8')):04X}" == payload[-4:]
    assert emvco.check_crc(payload)


def test_the_published_sample_reads_back():
    fields = emvco.parse_tlv(EMVCO_SAMPLE)
    assert list(fields)[0] == "00" and list(fields)[-1] == "63"
    assert fields["59"] == "BEST TRANSPORT" and fields["60"] == "BEIJING" and fields["53"] == "156"
    assert emvco.parse_tlv(fields["64"]) == {"00": "ZH", "01": "最佳运输", "02": "北京"}


def test_tlv_counts_characters_not_bytes():
    assert emvco.tlv("59", "ABC") == "5903ABC"
    assert emvco.tlv("01", "银川") == "0102银川"
    assert emvco.tlv("26", "x" * 99) == "2699" + "x" * 99


@pytest.mark.parametrize("tag, value", [("26", "x" * 100), ("59", ""), ("5", "x"), ("5a", "x"), ("100", "x")])
def test_tlv_refuses_what_does_not_fit(tag, value):
    with pytest.raises(ValueError):
        emvco.tlv(tag, value)


def test_round_trip_of_a_store_payload():
    payload = build()
    assert emvco.check_crc(payload)
    fields = emvco.parse_tlv(payload)
    assert list(fields) == ["00", "01", "26", "52", "53", "58", "59", "60", "62", "64", "63"]
    assert fields["00"] == "01" and fields["01"] == "11"
    assert emvco.parse_tlv(fields["26"]) == {"00": "CN.ORG.UNIONCARD", "01": PAY_URL, "02": STORE_ID}
    assert len(fields["26"]) <= 99
    assert fields["52"] == "5812" and fields["53"] == "156" and fields["58"] == "CN"
    assert fields["59"] == "UNIONCARD MERCHANT" and fields["60"] == "YINCHUAN"
    assert emvco.parse_tlv(fields["62"]) == {"07": STORE_ID}
    assert emvco.parse_tlv(fields["64"]) == {"00": "ZH", "01": "银川好味餐厅", "02": "银川"}
    assert payload.endswith("6304" + fields["63"]) and fields["63"] == fields["63"].upper()
    assert int(fields["63"], 16) == emvco.crc16_ccitt(payload[:-4].encode("utf-8"))


def test_tampering_breaks_the_crc():
    payload = build()
    assert emvco.check_crc(payload)
    assert not emvco.check_crc(payload.replace("5812", "5411"))
    assert not emvco.check_crc(payload.replace("YINCHUAN", "YINCHUAM"))
    assert not emvco.check_crc(payload[:-4] + f"{(int(payload[-4:], 16) + 1) % 0x10000:04X}")
    assert not emvco.check_crc(payload[:-1])
    assert not emvco.check_crc(payload + "00")
    assert not emvco.check_crc(payload[:-8])
    assert not emvco.check_crc("")


def test_a_url_that_would_overflow_the_account_template_is_left_out():
    long_url = "https://card.example.org/pay/" + STORE_ID
    account = emvco.parse_tlv(emvco.parse_tlv(build(pay_url=long_url))["26"])
    assert account == {"00": "CN.ORG.UNIONCARD", "02": STORE_ID}
    assert emvco.parse_tlv(emvco.parse_tlv(build(pay_url=None))["26"]) == account


def test_the_longest_url_that_fits_is_kept():
    room = 99 - len(emvco.tlv("00", emvco.GUID)) - len(emvco.tlv("02", STORE_ID)) - 4
    url = "http://h/" + "p" * (room - len("http://h/"))
    template = emvco.parse_tlv(build(pay_url=url))["26"]
    assert len(template) == 99 and emvco.parse_tlv(template)["01"] == url
    assert "01" not in emvco.parse_tlv(emvco.parse_tlv(build(pay_url=url + "p"))["26"])


@pytest.mark.parametrize("category, mcc", [("dining", "5812"), ("supermarket", "5411"), ("pharmacy", "5912"),
                                           ("medical", "8062"), ("culture_sport", "7941"), ("legal", "8111"),
                                           ("education", "8299"), ("travel", "4722"), ("other", "5999")])
def test_every_category_has_its_merchant_category_code(category, mcc):
    assert emvco.parse_tlv(build(category=category))["52"] == mcc


def test_the_merchant_category_enum_is_accepted_and_fully_mapped():
    from merchants.models import MerchantCategory

    assert {c.value for c in MerchantCategory} == set(emvco.MCC)
    assert emvco.parse_tlv(build(category=MerchantCategory.PHARMACY))["52"] == "5912"


def test_an_unknown_category_is_refused():
    with pytest.raises(ValueError):
        build(category="casino")


@pytest.mark.parametrize("region, ascii_city, local_city", [
    ("640100", "YINCHUAN", "银川"), ("640104", "YINCHUAN", "银川"), ("640200", "SHIZUISHAN", "石嘴山"),
    ("640300", "WUZHONG", "吴忠"), ("640402", "GUYUAN", "固原"), ("640500", "ZHONGWEI", "中卫"),
    ("640000", "NINGXIA", "宁夏"), ("649900", "NINGXIA", "宁夏"), ("110101", "CHINA", "中国"),
    (None, "CHINA", "中国"), ("6401", "CHINA", "中国"), ("64010x", "CHINA", "中国")])
def test_the_city_comes_from_the_region_code(region, ascii_city, local_city):
    fields = emvco.parse_tlv(build(region=region))
    assert fields["60"] == ascii_city and emvco.parse_tlv(fields["64"])["02"] == local_city


@pytest.mark.parametrize("name, expected", [
    ("Helan Mountain Noodles", "Helan Mountain Noodles"),
    ("The Very Long Name Of A Noodle House", "The Very Long Name Of A N"),
    ("Cafe 24 ", "Cafe 24"),
    ("银川好味餐厅", "UNIONCARD MERCHANT"),
    ("Café", "UNIONCARD MERCHANT"),
    ("Tab\there", "UNIONCARD MERCHANT"),
    ("   ", "UNIONCARD MERCHANT")])
def test_the_ascii_merchant_name(name, expected):
    assert emvco.parse_tlv(build(merchant_name=name))["59"] == expected


def test_the_local_name_is_cut_to_25_characters():
    name = "宁夏回族自治区银川市兴庆区解放街老字号手工拉面馆总店"
    assert len(name) > 25
    local = emvco.parse_tlv(emvco.parse_tlv(build(merchant_name=name))["64"])["01"]
    assert local == name[:25]


@pytest.mark.parametrize("store_id", ["", "sto_" + "x" * 22, "店铺"])
def test_a_store_id_that_cannot_be_a_terminal_label_is_refused(store_id):
    with pytest.raises(ValueError):
        build(store_public_id=store_id, pay_url=None)


@pytest.mark.parametrize("payload", ["0", "00", "0002", "000301", "00020", "0a0201", "00020101", "0000"])
def test_parse_refuses_malformed_input(payload):
    with pytest.raises(ValueError):
        emvco.parse_tlv(payload)
    assert not emvco.check_crc(payload)


def test_parse_refuses_a_repeated_tag():
    with pytest.raises(ValueError):
        emvco.parse_tlv("0002010002ab")
