"""Electronic receipts (JSON and PDF, with their evidence), the public verification page, and
the portal's daily reconciliation."""

from __future__ import annotations

import base64
import io
import json
from datetime import datetime

import pypdfium2 as pdfium
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from PIL import Image

from gateway.clock import SHANGHAI
from gateway.evidence import merkle
from gateway.evidence.note import parse_checkpoint, verify_note
from products.egov.receipt_pdf import amount_in_words
from tests.products.egov.helpers import advance, create_order, pay, setup_portal
from tests.tools.api import new_partner_client, problem


def _paid_order(app, http, partner, amount="1409.50"):
    setup_portal(app, partner)
    order = create_order(partner, amount={"amount": amount, "currency": "CNY"})
    pay(http, order)
    return order


def test_receipt_json_carries_a_verifiable_evidence_entry(app, http, partner):
    order = _paid_order(app, http, partner)
    response = partner.get(f"/v1/egov/payment-orders/{order['id']}/receipt")
    assert response.status_code == 200, response.text
    receipt = response.json()
    assert receipt["amount"] == {"amount": "1409.50", "currency": "CNY"}
    assert receipt["amount_in_words"] == "壹仟肆佰零玖元伍角整"
    assert receipt["payer"]["name"] == "张*" and "张三" not in response.text
    evidence = receipt["evidence"]
    # The verifier key comes from the log's public endpoint, not from the receipt.
    key = http.get("/v1/evidence/public-key").text.strip()
    checkpoint = parse_checkpoint(verify_note(evidence["checkpoint"], key))
    leaf = base64.b64decode(evidence["leaf_hash"])
    proof = [base64.b64decode(h) for h in evidence["inclusion_proof"]]
    assert merkle.verify_inclusion(leaf, evidence["index"], checkpoint.size, proof, checkpoint.root)
    entry = partner.get(f"/v1/evidence/entries/{evidence['entry_id']}").json()
    fields = json.loads(base64.b64decode(entry["canonical"]))
    assert fields["type"] == "egov_payment.succeeded" and fields["resource_id"] == order["id"]
    assert fields["state_sha256"] == evidence["state_sha256"]
    assert merkle.leaf_hash(base64.b64decode(entry["canonical"])) == leaf

    page = http.get(receipt["verification_url"].replace("http://testserver", ""))
    assert page.status_code == 200
    assert receipt["receipt_number"] in page.text and "凭证真实有效" in page.text
    assert "张三" not in page.text and evidence["entry_id"] in page.text
    assert http.get("/checkout/receipts/forged-code").status_code == 404


def test_receipt_and_statement_negotiate_by_accept_and_vary_on_it(app, http, partner):
    """RFC 9110: q=0 refuses a type, the higher q wins, media types ignore case, nothing
    acceptable is a 406; JSON stays the default; each answer says `Vary: Accept` so that a
    shared cache never hands the PDF to a JSON client."""
    order = _paid_order(app, http, partner)
    url = f"/v1/egov/payment-orders/{order['id']}/receipt"

    def kind(path: str, accept: str | None) -> str:
        response = partner.get(path, headers={"Accept": accept} if accept is not None else {})
        assert response.status_code == 200, response.text
        assert response.headers["vary"] == "Accept"
        return response.headers["content-type"].split(";")[0]

    assert kind(url, None) == kind(url, "*/*") == "application/json"
    assert kind(url, "application/pdf;q=0, application/json") == "application/json"
    assert kind(url, "application/pdf;q=0.5, application/json;q=0.9") == "application/json"
    assert kind(url, "APPLICATION/PDF") == "application/pdf"
    assert kind(url, "application/json;q=0.1, */*") == "application/pdf"
    refused = problem(partner.get(url, headers={"Accept": "text/html"}), 406, "not_acceptable")
    assert refused["available"] == ["application/json", "application/pdf"]
    assert kind(url + "?format=pdf", "application/json") == "application/pdf"

    advance(app, partner.tenant_id, 86400 + 60)
    day = datetime.fromisoformat(order["created_at"].replace("Z", "+00:00")).astimezone(SHANGHAI).date()
    statement = f"/v1/egov/reconciliation/{day}"
    assert kind(statement, None) == kind(statement, "*/*") == "application/json"
    assert kind(statement, "TEXT/CSV") == "text/csv"
    assert kind(statement, "text/csv;q=0, application/json") == "application/json"
    assert kind(statement, "application/json;q=0.3, text/csv;q=0.4") == "text/csv"
    problem(partner.get(statement, headers={"Accept": "application/pdf"}), 406, "not_acceptable")


def test_no_receipt_before_payment(app, http, partner):
    setup_portal(app, partner)
    order = create_order(partner)
    problem(partner.get(f"/v1/egov/payment-orders/{order['id']}/receipt"), 409, "receipt_not_available")
    other = new_partner_client(app, http)
    paid = _paid_order(app, http, other)
    problem(partner.get(f"/v1/egov/payment-orders/{paid['id']}/receipt"), 404)


def _dark_pixels(image: Image.Image, box: tuple[int, int, int, int]) -> int:
    gray = image.convert("L").crop(box)
    return sum(1 for value in gray.tobytes() if value < 128)


def test_receipt_pdf_renders_chinese_text(app, http, partner, tmp_path):
    order = _paid_order(app, http, partner)
    response = partner.get(f"/v1/egov/payment-orders/{order['id']}/receipt",
                           headers={"Accept": "application/pdf"})
    assert response.status_code == 200 and response.headers["content-type"] == "application/pdf"
    # The font travels inside the PDF: it renders on a machine with no CJK font installed.
    assert response.content.startswith(b"%PDF") and b"FontFile2" in response.content
    pdf = pdfium.PdfDocument(response.content)
    try:
        page = pdf[0]
        width, height = page.get_size()  # points
        scale = 2
        image = page.render(scale=scale).to_pil()
        page.close()
    finally:
        pdf.close()
    image.save(tmp_path / "receipt.png")
    def box(left: float, top: float, right: float, bottom: float) -> tuple[int, int, int, int]:
        """A region in points measured from the page's top-left corner, in image pixels."""
        return (int(left * scale), int(top * scale), int(right * scale), int(bottom * scale))

    # The title 电子缴款凭证 (20 pt) has its baseline 72 pt below the top edge, at x = 56.
    assert _dark_pixels(image, box(56, 54, 186, 76)) > 400, "the Chinese title did not render"
    # The 缴款项目 row (second row, 11 pt): label and Chinese value.
    assert _dark_pixels(image, box(56, 136, 400, 152)) > 300, "the item row did not render"
    # A band below the content stays blank (the check measures ink, not noise).
    assert _dark_pixels(image, box(56, height - 80, 300, height - 40)) == 0
    assert width < height
    qr = Image.open(io.BytesIO(http.get(f"/checkout/{order['checkout_url'].rsplit('/', 1)[1]}/qr.png")
                               .content))
    assert qr.size[0] > 100


def _pdf_text(content: bytes) -> list[str]:
    """The PDF's text as a reader copying it out gets it, line by line."""
    pdf = pdfium.PdfDocument(content)
    try:
        text = "\n".join(page.get_textpage().get_text_range() for page in pdf)
    finally:
        pdf.close()
    return [line.strip() for line in text.replace("\r\n", "\n").split("\n")]


def test_receipt_pdf_carries_what_offline_verification_needs(app, http, partner):
    """A holder of the PDF alone (and the log's public key, obtained independently) checks that
    the payment is in the log: leaf hash, index and inclusion proof against the signed
    checkpoint, every value copied out of the PDF's text whole."""
    order = _paid_order(app, http, partner)
    for _ in range(5):  # a few more entries: a proof of several hashes
        pay(http, create_order(partner))
    response = partner.get(f"/v1/egov/payment-orders/{order['id']}/receipt",
                           headers={"Accept": "application/pdf"})
    assert response.status_code == 200, response.text
    lines = _pdf_text(response.content)

    def field(name: str) -> str:
        return next(line[len(name):].strip() for line in lines if line.startswith(name))

    leaf, index, size = field("leaf hash"), int(field("log index")), int(field("tree size"))
    start = next(i for i, line in enumerate(lines) if line.startswith("inclusion proof"))
    proof_count = int(lines[start].split("(")[1].split()[0])
    proof = [base64.b64decode(line) for line in lines[start + 1:start + 1 + proof_count]]
    assert proof_count >= 2
    head = next(i for i, line in enumerate(lines) if line.startswith("签名日志头"))
    note = lines[head + 1:head + 5]
    assert note[3].startswith("— ")  # the signature line, whole
    checkpoint_text = "\n".join(note[:3]) + "\n\n" + note[3] + "\n"

    key = http.get("/v1/evidence/public-key").text.strip()
    checkpoint = parse_checkpoint(verify_note(checkpoint_text, key))
    assert checkpoint.size == size
    assert merkle.verify_inclusion(base64.b64decode(leaf), index, size, proof, checkpoint.root)
    # The payment's own entry (the checkpoint may have grown since: the proof is against it).
    evidence = partner.get(f"/v1/egov/payment-orders/{order['id']}/receipt").json()["evidence"]
    assert (leaf, index) == (evidence["leaf_hash"], evidence["index"])


def test_a_long_item_name_wraps_clear_of_the_qr_code(app, http, partner):
    setup_portal(app, partner)
    name = ("机动车驾驶证补领换领及相关行政事业性收费项目" * 6)[:120]
    order = create_order(partner, item_name=name)
    pay(http, order)
    response = partner.get(f"/v1/egov/payment-orders/{order['id']}/receipt",
                           headers={"Accept": "application/pdf"})
    assert response.status_code == 200
    pdf = pdfium.PdfDocument(response.content)
    try:
        page = pdf[0]
        width, height = page.get_size()
        text = page.get_textpage()
        boxes = [text.get_charbox(i) for i in range(text.count_chars())]
        chars = text.get_text_range()
        page.close()
    finally:
        pdf.close()
    # The whole name is on the page (across lines), and the page's content still ends above
    # its bottom margin.
    assert name in "".join(chars.split())
    assert min(box[1] for box in boxes) > 40
    # Where receipt_pdf draws the QR code (96 pt square, 56 pt from the right edge, its top 106 pt
    # below the page's top) and its caption under it.
    qr = (width - 56 - 96, height - 72 - 142 - 8, width - 56, height - 72 - 34)
    for left, bottom, right, top in boxes:
        if right <= left:
            continue  # a line break or space: no ink
        assert left >= 0 and right <= width - 56 + 0.5 and bottom >= 0 and top <= height, (left, right)
        overlaps = left < qr[2] and right > qr[0] and bottom < qr[3] and top > qr[1]
        inside = left >= qr[0] - 0.5 and right <= qr[2] + 0.5  # the caption is centred under the code
        assert not overlaps or (inside and top < height - 72 - 130), (left, bottom, right, top)


@given(st.integers(min_value=0, max_value=999_999_999_999_999))
@settings(max_examples=200, deadline=None)
def test_amount_in_words_is_well_formed(fen):
    words = amount_in_words(fen)
    assert words.endswith(("整", "分"))
    assert "零零" not in words
    assert not words.startswith("零") or words == "零元整"
    assert set(words) <= set("零壹贰叁肆伍陆柒捌玖拾佰仟万亿元角分整")


@pytest.mark.parametrize(("fen", "words"), [
    (0, "零元整"), (5, "伍分"), (50, "伍角整"), (1000, "壹拾元整"), (140950, "壹仟肆佰零玖元伍角整"),
    (600714, "陆仟零柒元壹角肆分"), (10700053, "壹拾万柒仟元伍角叁分"),
    (100000000, "壹佰万元整"), (10000000100, "壹亿零壹元整"),
    (100010000000, "壹拾亿零壹拾万元整"), (2500, "贰拾伍元整"), (100005, "壹仟元零伍分"),
])
def test_amount_in_words_examples(fen, words):
    assert amount_in_words(fen) == words


# --- reconciliation -----------------------------------------------------------------------

def test_daily_reconciliation_of_the_portal(app, http, partner):
    setup_portal(app, partner)
    first = create_order(partner, amount={"amount": "25.00", "currency": "CNY"})
    second = create_order(partner, amount={"amount": "100.00", "currency": "CNY"})
    dropped = create_order(partner)
    pay(http, first)
    pay(http, second, method="qr")
    partner.post(f"/v1/egov/payment-orders/{dropped['id']}/cancel", {})
    created = first["created_at"]
    from datetime import datetime

    from gateway.clock import SHANGHAI

    day = datetime.fromisoformat(created.replace("Z", "+00:00")).astimezone(SHANGHAI).date()
    problem(partner.get(f"/v1/egov/reconciliation/{day}"), 409, "statement_not_ready")
    advance(app, partner.tenant_id, 86400 + 60)
    statement = partner.get(f"/v1/egov/reconciliation/{day}")
    assert statement.status_code == 200, statement.text
    body = statement.json()
    assert body["ledger_agrees"] is True
    assert body["net_clearing_effect"] == {"amount": "125.00", "currency": "CNY"}
    assert body["closing_balance"]["amount"] == "125.00"
    statuses = {line["reference"]: line["status"] for line in body["lines"]}
    assert statuses == {first["portal_reference"]: "paid", second["portal_reference"]: "paid",
                        dropped["portal_reference"]: "cancelled"}
    csv_text = partner.get(f"/v1/egov/reconciliation/{day}?format=csv").text
    assert csv_text.startswith("row_type,kind,id,reference") and first["portal_reference"] in csv_text

    records = ("kind,reference,amount,status\r\n"
               f"payment_order,{first['portal_reference']},25.00,paid\r\n"
               f"payment_order,{second['portal_reference']},99.00,paid\r\n"
               "payment_order,WB-UNKNOWN,1.00,paid\r\n")
    diff = partner.post(f"/v1/egov/reconciliation/{day}/differences", content=records.encode(),
                        headers={"Content-Type": "text/csv"})
    assert diff.status_code == 200, diff.text
    differences = diff.json()["differences"]
    assert differences["agrees"] is False and differences["matched"] == 1
    assert [m["reference"] for m in differences["amount_mismatches"]] == [second["portal_reference"]]
    assert [m["reference"] for m in differences["missing_at_bank"]] == ["WB-UNKNOWN"]
    assert [m["reference"] for m in differences["missing_at_platform"]] == [dropped["portal_reference"]]
    bad = partner.post(f"/v1/egov/reconciliation/{day}/differences", content=b"nonsense",
                       headers={"Content-Type": "text/csv"})
    problem(bad, 422, "invalid_records")
    deep = b'{"records": ' + b"[" * 5000 + b"]" * 5000 + b"}"  # once a 500, found by fuzzing
    bad = partner.post(f"/v1/egov/reconciliation/{day}/differences", content=deep,
                       headers={"Content-Type": "application/json"})
    assert "nested too deeply" in problem(bad, 422, "invalid_records")["detail"]
