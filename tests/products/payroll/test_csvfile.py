"""The streaming decoder: any chunking of a UTF-8 or GBK file gives the same lines."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from products.payroll.csvfile import CsvFileError, LineDecoder, charset_from_content_type, split_fields

LINES = ["acct_1,wages,2026-11-10,2,3.00,R-1", "张三,110101199003077777,6222,1.00,十一月工资,E1",
         "李四,\"1,2\",6222,2.00,,E2", "王五,1,2,3.00,\"备注, 含逗号\",E3"]


def decode(data: bytes, cuts: list[int], charset: str | None = None) -> tuple[list[str], str]:
    decoder = LineDecoder(charset)
    out: list[tuple[int, str]] = []
    start = 0
    for cut in sorted(set(cuts)):
        out += decoder.feed(data[start:cut])
        start = cut
    out += decoder.feed(data[start:], final=True)
    assert [n for n, _ in out] == list(range(1, len(out) + 1))
    return [line for _, line in out], decoder.charset


@settings(max_examples=60, deadline=None)
@given(encoding=st.sampled_from(["utf-8", "utf-8-sig", "gbk"]), crlf=st.booleans(),
       trailing=st.booleans(), data=st.data())
def test_any_chunking_gives_the_same_lines(encoding, crlf, trailing, data):
    text = ("\r\n" if crlf else "\n").join(LINES) + (("\r\n" if crlf else "\n") if trailing else "")
    raw = text.encode(encoding)
    cuts = data.draw(st.lists(st.integers(0, len(raw)), max_size=12))
    lines, charset = decode(raw, cuts)
    assert lines == LINES
    assert charset == ("gbk" if encoding == "gbk" else "utf-8")


def test_gbk_after_a_long_ascii_prefix_is_detected():
    raw = ("a,b\n" * 5000 + "张三,x\n").encode("gbk")
    lines, charset = decode(raw, list(range(0, len(raw), 1000)))
    assert charset == "gbk" and lines[-1] == "张三,x"


def test_declared_charset_wins():
    raw = "张三\n".encode("gbk")
    assert decode(raw, [], "gb18030")[0] == ["张三"]
    with pytest.raises(CsvFileError) as exc:
        decode(raw, [], "utf-8")
    assert exc.value.code == "invalid_encoding" and exc.value.line == 1


def test_gbk_that_starts_like_utf8_is_still_gbk():
    # 员 is D4 B1 in GBK, which is also a valid UTF-8 sequence; the line as a whole is not.
    raw = "payer,wages\n员工0,x\n员工1,y\n".encode("gbk")
    for cuts in ([], [13], [14], list(range(len(raw)))):
        lines, charset = decode(raw, cuts)
        assert charset == "gbk" and lines[1:] == ["员工0,x", "员工1,y"]


def test_utf8_then_gbk_is_refused_with_the_line():
    raw = "张三\n李四\n".encode() + "王五\n".encode("gbk")
    with pytest.raises(CsvFileError) as exc:
        decode(raw, [len(raw) - 3])
    assert exc.value.code == "invalid_encoding" and exc.value.line == 3


def test_utf16_and_unknown_charsets_are_refused():
    with pytest.raises(CsvFileError):
        decode("a\n".encode("utf-16"), [])
    with pytest.raises(CsvFileError):
        charset_from_content_type("text/csv; charset=latin-1")
    assert charset_from_content_type("text/csv; charset=GBK") == "gb18030"
    assert charset_from_content_type("text/csv") is None


def test_overlong_line_and_bad_quotes():
    with pytest.raises(CsvFileError) as exc:
        decode(b"x" * 5000, [100])
    assert exc.value.code == "line_too_long"
    with pytest.raises(CsvFileError) as exc:
        split_fields('a,"b', 7)
    assert exc.value.code == "malformed_csv" and exc.value.line == 7
    assert split_fields(' a , "b,c",d', 1) == ["a", "b,c", "d"]
