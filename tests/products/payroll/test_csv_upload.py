"""CSV uploads: UTF-8 and GBK, malformed files, and a 100,000-item file. Never a 500."""

from __future__ import annotations

import codecs
import csv
import io
import random
import time

from sqlalchemy import func, select

from gateway.identifiers import generate_bank_card, generate_resident_id
from gateway.money import format_fen
from products.payroll.models import PayrollBatch, PayrollItem
from tests.products.payroll.support import TODAY, batch_body, csv_text, items_for, people, run_payroll, upload
from tests.tools.api import problem


def _batches(app):
    with app.state.database.transaction() as session:
        return session.scalar(select(func.count()).select_from(PayrollBatch))


def test_gbk_and_utf8_files_give_the_same_batch(app, employer):
    pc = employer.client
    staff = people(4)
    results = []
    for encoding, charset in (("gbk", "GBK"), ("gbk", None), ("utf-8", None),
                              ("utf-8-sig", None), ("utf-8", "utf-8")):
        text = csv_text(employer.account_id, items_for(staff))
        r = upload(pc, text.encode(encoding), charset)
        assert r.status_code == 201, (encoding, charset, r.text)
        batch = r.json()
        assert batch["status"] == "validated", batch["validation"]
        assert batch["charset"] == ("gbk" if encoding == "gbk" else "utf-8")
        items = pc.get(f"/v1/payroll/batches/{batch['id']}/items").json()["data"]
        results.append([(i["employee_name"], i["memo"], i["amount"]["amount"]) for i in items])
    assert all(r == results[0] for r in results)
    assert results[0][0][0].startswith(staff[0].name[0]) and results[0][0][1] == "十一月工资"


def test_result_file_comes_back_in_the_uploaded_charset(app, employer):
    pc = employer.client
    text = csv_text(employer.account_id, items_for(people(2)))
    batch = upload(pc, text.encode("gbk")).json()
    pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    run_payroll(app)
    r = pc.get(f"/v1/payroll/batches/{batch['id']}/result.csv")
    assert r.headers["content-type"] == "text/csv; charset=gb18030"
    rows = list(csv.reader(io.StringIO(r.content.decode("gbk"))))
    assert [row[6] for row in rows[1:]] == ["succeeded", "succeeded"]
    assert rows[1][4] == "十一月工资"
    utf8 = pc.get(f"/v1/payroll/batches/{batch['id']}/result.csv?charset=utf-8")
    assert utf8.content.startswith(codecs.BOM_UTF8)
    assert list(csv.reader(io.StringIO(utf8.content.decode("utf-8-sig")))) == rows


def test_malformed_files_are_clear_problems_and_store_nothing(app, employer):
    pc = employer.client
    good = csv_text(employer.account_id, items_for(people(2)))
    header, first_item = good.split("\r\n")[:2]
    cases = [
        (b"", 422, "empty_file"),
        (b"\r\n\r\n", 422, "empty_file"),
        (b"payer_account_id,purpose,value_date,declared_count,declared_total,external_reference\n",
         422, "malformed_header"),
        (b"only,three,fields\n", 422, "malformed_header"),
        (f"{employer.account_id},wages,{TODAY},two,10.00,R1\n".encode(), 422, "invalid_header"),
        (f"{employer.account_id},wages,2026-02-30,1,10.00,R1\n".encode(), 422, "invalid_header"),
        (header.encode() + b"\r\n" + first_item.encode() + b"\r\n" + "王五".encode("gbk")
         + b",x\r\n", 422, "invalid_encoding"),
        ("\ufeff".encode("utf-16") + b"a,b\n", 422, "unsupported_charset"),
        (b"x" * 10000 + b"\n", 422, "line_too_long"),
        (bytes(range(256)) * 4, 422, None),
    ]
    for data, status, code in cases:
        body = problem(upload(pc, data), status, code)
        assert body["detail"]
    problem(upload(pc, good.encode(), "latin-1"), 422, "unsupported_charset")
    r = pc.request("POST", "/v1/payroll/batches/csv", content=good.encode(),
                   headers={"Content-Type": "application/json"})
    problem(r, 415, "unsupported_media_type")
    assert _batches(app) == 0


def test_bad_item_lines_reject_the_batch_with_their_line_numbers(app, employer):
    pc = employer.client
    text = csv_text(employer.account_id, items_for(people(3)))
    lines = text.split("\r\n")
    lines[2] = lines[2] + ",extra"
    lines[3] = '"unterminated,' + lines[3]
    r = upload(pc, "\r\n".join(lines).encode())
    assert r.status_code == 201, r.text
    batch = r.json()
    assert batch["status"] == "rejected"
    found = {(e["line"], e["code"]) for e in batch["validation"]["errors"]}
    assert (3, "malformed_line") in found and (4, "malformed_csv") in found


def test_quoted_fields_blank_lines_and_bank_date_format(app, employer):
    pc = employer.client
    staff = people(2)
    items = items_for(staff)
    text = csv_text(employer.account_id, items)
    lines = text.split("\r\n")
    fields = next(csv.reader([lines[0]]))
    fields[1] = "工资"
    fields[2] = TODAY.strftime("%Y%m%d")
    lines[0] = ",".join(fields)
    item = next(csv.reader([lines[1]]))
    lines[1] = ",".join(item[:4]) + ',"工资, 含补贴",' + item[5]
    assert len(item) == 6
    r = upload(pc, ("\r\n".join(lines[:2]) + "\r\n\r\n" + "\r\n".join(lines[2:])).encode())
    assert r.status_code == 201 and r.json()["status"] == "validated", r.text
    assert r.json()["purpose"] == "wages" and r.json()["value_date"] == TODAY.isoformat()
    first = pc.get(f"/v1/payroll/batches/{r.json()['id']}/items?limit=1").json()["data"][0]
    assert first["memo"] == "工资, 含补贴"


def _big_file(account_id: str, n: int) -> bytes:
    rng = random.Random(5)
    out = io.StringIO()
    total = 0
    body = []
    for i in range(n):
        fen = 3000_00 + (i % 997)
        total += fen
        card = generate_bank_card(rng)
        if card.endswith(("0002", "0003")):
            card = generate_bank_card(rng)
        body.append(f"员工{i % 97},{generate_resident_id(rng)},{card},{format_fen(fen)},工资,"
                    f"E{i:06d}\r\n")
    out.write(f"{account_id},wages,{TODAY},{n},{format_fen(total)},BIG-1\r\n")
    out.writelines(body)
    return out.getvalue().encode("gbk")


def test_a_100000_item_gbk_file_is_accepted_as_a_stream(app, employer):
    pc = employer.client
    data = _big_file(employer.account_id, 100_000)
    started = time.perf_counter()
    r = upload(pc, data)
    elapsed = time.perf_counter() - started
    assert r.status_code == 201, r.text[:500]
    batch = r.json()
    assert batch["status"] == "validated", batch["validation"]["errors"][:3]
    assert batch["item_count"] == 100_000 and batch["charset"] == "gbk"
    with app.state.database.transaction() as session:
        assert session.scalar(select(func.count()).select_from(PayrollItem)) == 100_000
    page = pc.get(f"/v1/payroll/batches/{batch['id']}/items?limit=100").json()
    assert len(page["data"]) == 100 and page["data"][-1]["line"] == 101
    print(f"100,000 items accepted in {elapsed:.1f} s")


def _named_items(names: list[str]) -> list[dict]:
    """Items for employees of these names, memo blank: the name alone is the non-ASCII text."""
    staff = people(len(names), seed=21)
    for person, name in zip(staff, names, strict=True):
        person.name = name
    return [dict(item, memo="") for item in items_for(staff)]


def test_gbk_names_that_are_also_valid_utf8_are_read_as_gbk(app, employer):
    # In GBK, 谢伟 (D0BB CEB0), 郑伟 and 肖平 are valid UTF-8 2-byte sequences (лΰ, ֣ΰ, Фƽ).
    pc = employer.client
    for names in (["谢伟"], ["郑伟", "肖平"], ["谢伟", "张三"]):
        for encoding, charset, expected in (("gbk", None, "gbk"), ("gbk", "gbk", "gbk"),
                                            ("utf-8", None, "utf-8"),
                                            ("utf-8-sig", None, "utf-8"),
                                            ("utf-8", "utf-8", "utf-8")):
            text = csv_text(employer.account_id, _named_items(names))
            r = upload(pc, text.encode(encoding), charset)
            assert r.status_code == 201, (names, charset, expected, r.text)
            batch = r.json()
            assert (batch["status"], batch["charset"]) == ("validated", expected), names
            items = pc.get(f"/v1/payroll/batches/{batch['id']}/items").json()["data"]
            assert [i["employee_name"][0] for i in items] == [n[0] for n in names]
            rows = list(csv.reader(io.StringIO(pc.get(
                f"/v1/payroll/batches/{batch['id']}/result.csv?charset=utf-8"
            ).content.decode("utf-8-sig"))))
            assert [row[0][0] for row in rows[1:]] == [n[0] for n in names]


def test_a_line_contradicting_the_decided_charset_is_refused_with_its_line(app, employer):
    # The first 64 KiB decide GBK (谢伟 reads as UTF-8, the GBK names after it do not); a
    # UTF-8 line far beyond is not GBK: the file is refused at that line, nothing stored.
    pc = employer.client
    staff = _named_items(["谢伟"] + [p.name for p in people(1199, seed=5)] + ["欧阳娜"])
    lines = csv_text(employer.account_id, staff).split("\r\n")
    data = b"".join(line.encode("utf-8" if n == len(staff) + 1 else "gbk") + b"\r\n"
                    for n, line in enumerate(lines[:-1], start=1))
    assert data.find("欧阳娜".encode()) > 64 * 1024
    body = problem(upload(pc, data), 422, "invalid_encoding")
    assert body["line"] == len(staff) + 1 and f"Line {len(staff) + 1}" in body["detail"]
    assert _batches(app) == 0


def test_a_rejected_batch_result_file_lists_each_finding(app, employer):
    pc = employer.client
    items = items_for(people(3))
    items[1]["id_number"] = "110101199003077770"  # bad check digit
    text = csv_text(employer.account_id, items, count=4)
    batch = upload(pc, text.encode("gbk")).json()
    assert batch["status"] == "rejected"
    assert pc.get(f"/v1/payroll/batches/{batch['id']}/items").json()["data"] == []
    r = pc.get(f"/v1/payroll/batches/{batch['id']}/result.csv")
    assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=gb18030"
    rows = list(csv.reader(io.StringIO(r.content.decode("gbk"))))
    assert rows[0][5] == text.split(",")[5].split("\r\n")[0]  # the header as uploaded
    found = pc.get(f"/v1/payroll/batches/{batch['id']}/findings").json()["data"]
    assert len(rows) == 1 + len(found) and len(found) == 2
    for row, f in zip(rows[1:], found, strict=True):
        assert row[:5] == ["", "", "", "", ""]  # no personal data is kept
        assert (row[5], row[6]) == (f["item_reference"] or "", "rejected")
        assert row[7] == f"{f['code']}: line {f['line']}, {f['field']}: {f['message']}"
    assert [(row[5], row[7].split(":")[0]) for row in rows[1:]] == [
        ("E00002", "invalid_id_number"), ("", "count_mismatch")]
    assert ": line 3, " in rows[1][7] and ": line 1, " in rows[2][7]


def test_a_gbk_result_file_is_gb18030_and_says_so_so_rare_names_survive(app, employer):
    """GBK has no 䶮 nor 𠮷 (生僻字 of real names); the file asked for as GBK is GB18030, its
    superset, labelled so: decodable whole, and byte for byte GBK wherever GBK has the text."""
    pc = employer.client
    staff = people(4)
    items = items_for(staff)
    items[0]["employee_name"], items[1]["employee_name"] = "䶮王", "𠮷田"
    items[2]["memo"] = "奖金😀"
    batch = upload(pc, csv_text(employer.account_id, items).encode("utf-8")).json()
    assert batch["status"] == "validated", batch
    for asked in ("?charset=gbk", "?charset=gb18030"):
        r = pc.get(f"/v1/payroll/batches/{batch['id']}/result.csv{asked}")
        assert r.status_code == 200 and r.headers["content-type"] == "text/csv; charset=gb18030"
        rows = list(csv.reader(io.StringIO(r.content.decode(r.charset_encoding))))
        assert [(row[0][0], row[4]) for row in rows[1:]] == [
            ("䶮", "十一月工资"), ("𠮷", "十一月工资"), (staff[2].name[0], "奖金😀"),
            (staff[3].name[0], "十一月工资")]
        # A line GBK can write is GBK's bytes: a GBK reader reads it the same.
        plain = r.content.split(b"\r\n")[4]
        assert plain.decode("gbk") == plain.decode("gb18030") and "十一月工资" in plain.decode("gbk")


def test_a_memo_a_spreadsheet_would_run_comes_back_as_text(app, employer):
    """CSV injection: the result file is opened in spreadsheet tools by the HR clerk, so a cell
    that would run as a formula is written as text; the amounts stay numbers."""
    pc = employer.client
    items = items_for(people(3))
    items[0]["memo"] = '=HYPERLINK("http://evil.example","工资")'
    items[1]["memo"] = "@SUM(A1:A9)"
    items[2]["memo"] = "-奖金"
    response = pc.post("/v1/payroll/batches", batch_body(employer.account_id, items))
    assert response.status_code == 201, response.text
    batch = response.json()
    pc.post(f"/v1/payroll/batches/{batch['id']}/confirm")
    run_payroll(app)
    r = pc.get(f"/v1/payroll/batches/{batch['id']}/result.csv?charset=utf-8")
    rows = list(csv.reader(io.StringIO(r.content.decode("utf-8-sig"))))
    assert [row[4] for row in rows[1:]] == ['\'=HYPERLINK("http://evil.example","工资")',
                                            "'@SUM(A1:A9)", "'-奖金"]
    assert [row[3] for row in rows[1:]] == [i["amount"]["amount"] for i in items]
    # the API shows the memo as it was sent
    listed = pc.get(f"/v1/payroll/batches/{batch['id']}/items").json()["data"]
    assert listed[0]["memo"] == items[0]["memo"]
