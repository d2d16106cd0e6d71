"""The payroll CSV layout banks use: one header line, then one line per item.

    payer_account_id,purpose,value_date,declared_count,declared_total,external_reference[,wage_month]
    employee_name,id_number,account_number,amount,memo,item_reference
    ...

Files arrive in UTF-8 (with or without BOM) or GBK (read as GB18030, its superset). The text is
decoded incrementally from the byte stream: the charset comes from a BOM, else from the
Content-Type `charset` parameter, else from a bounded window of the file (`DECIDE_BYTES` from
the first line holding non-ASCII bytes, or the whole file if smaller; the ASCII before it is the
same in both), see `LineDecoder._guess`. Lines are handed out as they complete, so a large file
is never held as text or as parsed rows in memory.

The result file is the same layout with two more columns on each item line: status and reason,
in UTF-8 or, for a GBK batch, in GB18030 labelled so (`result_charset`).
"""

from __future__ import annotations

import codecs
import csv
import re
from collections.abc import Iterator
from dataclasses import dataclass

ITEM_COLUMNS = ("employee_name", "id_number", "account_number", "amount", "memo", "item_reference")
HEADER_COLUMNS = ("payer_account_id", "purpose", "value_date", "declared_count", "declared_total",
                  "external_reference", "wage_month")
HEADER_REQUIRED = 6
RESULT_COLUMNS = ("status", "reason")
MAX_LINE_CHARS = 4096
# How much of a file (from its first non-ASCII line) is read before its charset is decided:
# enough names to tell GBK from UTF-8, small enough to hold while streaming.
DECIDE_BYTES = 64 * 1024
# Characters UTF-8 writes in 3 or 4 bytes: every Chinese character. GBK's 2-byte pairs that
# happen to be valid UTF-8 (谢伟 is D0BB CEB0) only ever read as 2-byte sequences (U+0080-07FF).
_WIDE = re.compile("[^\x00-\u07ff]")

_UTF8 = "utf-8"
_GBK = "gb18030"  # a superset of GBK and GB2312: every GBK file decodes the same
_CHARSET_ALIASES = {
    "utf-8": _UTF8, "utf8": _UTF8,
    "gbk": _GBK, "gb2312": _GBK, "gb18030": _GBK, "cp936": _GBK,
}


class CsvFileError(ValueError):
    """The file cannot be read as the payroll layout (the whole file is refused)."""

    def __init__(self, message: str, *, code: str, line: int | None = None) -> None:
        super().__init__(message)
        self.code = code
        self.line = line


def charset_from_content_type(content_type: str | None) -> str | None:
    """The decoder named by a `charset=` parameter, None when absent; unknown charsets refused."""
    if not content_type:
        return None
    for part in content_type.split(";")[1:]:
        key, _, value = part.strip().partition("=")
        if key.strip().lower() == "charset":
            name = value.strip().strip('"').lower()
            if name not in _CHARSET_ALIASES:
                raise CsvFileError(f"Charset {name!r} is not supported: send UTF-8 or GBK.",
                                   code="unsupported_charset")
            return _CHARSET_ALIASES[name]
    return None


def public_charset(decoder_name: str) -> str:
    return "gbk" if decoder_name == _GBK else "utf-8"


class LineDecoder:
    """Bytes in (any chunking), numbered text lines out; UTF-8 or GBK as described above.

    Until the charset is known (no BOM, no declared charset, only ASCII so far) ASCII lines
    are handed on as they complete; from the first line holding non-ASCII bytes, up to
    `DECIDE_BYTES` of whole lines are gathered and `_guess` decides on them. A later line
    that fails the chosen charset refuses the file with its line number.
    """

    def __init__(self, charset: str | None = None) -> None:
        self.declared = charset
        self.encoding: str | None = charset
        self._decoder: codecs.IncrementalDecoder | None = None
        self._started = False
        self._pending = ""
        self._raw = b""  # undecided: the bytes of an incomplete line
        self._line_no = 0
        self._head = b""

    def feed(self, data: bytes, final: bool = False) -> list[tuple[int, str]]:
        """Decode a chunk; return the lines it completed as (line number, text)."""
        if not self._started:
            self._head += data
            if len(self._head) < 3 and not final:
                return []
            data, self._head = self._head, b""
            data = self._start(data)
        if self.encoding is None:
            self._undecided(data, final)
        else:
            self._pending += self._decode(data, final)
        return self._flush(final)

    def _start(self, data: bytes) -> bytes:
        self._started = True
        if data.startswith(codecs.BOM_UTF8):
            if self.declared not in (None, _UTF8):
                raise CsvFileError("The file starts with a UTF-8 byte order mark but was declared "
                                   "as another charset.", code="invalid_encoding", line=1)
            self.encoding = _UTF8
            data = data[len(codecs.BOM_UTF8):]
        elif data.startswith((codecs.BOM_UTF16_LE, codecs.BOM_UTF16_BE)):
            raise CsvFileError("UTF-16 files are not supported: save the file as UTF-8 or GBK.",
                               code="unsupported_charset", line=1)
        if self.encoding is not None:
            self._decoder = codecs.getincrementaldecoder(self.encoding)()
        return data

    def _undecided(self, data: bytes, final: bool) -> None:
        self._raw += data
        cut = len(self._raw) if final else self._raw.rfind(b"\n") + 1
        if cut == 0:
            if len(self._raw) > MAX_LINE_CHARS * 4:
                line = self._line_no + self._pending.count("\n") + 1
                raise CsvFileError(f"Line {line} is longer than {MAX_LINE_CHARS} characters.",
                                   code="line_too_long", line=line)
            return
        if self._raw[:cut].isascii():
            # The same text in either charset: handed on, the decision still open.
            self._pending += self._raw[:cut].decode("ascii")
            self._raw = self._raw[cut:]
            return
        if len(self._raw) < DECIDE_BYTES and not final:
            return
        sample, rest = self._raw[:cut], self._raw[cut:]
        self._raw = b""
        self.encoding, text = self._guess(sample)
        self._decoder = codecs.getincrementaldecoder(self.encoding)()
        self._pending += text
        self._pending += self._decode(rest, final)

    def _guess(self, sample: bytes) -> tuple[str, str]:
        """The charset of whole lines `sample`, and their text.

        Both charsets often accept the same short bytes, so validity alone does not decide.
        Chinese text in UTF-8 is 3 bytes a character: UTF-8 when the part of the sample that is
        valid UTF-8 holds such characters (and then a byte that is not refuses the file at its
        line, rather than guessing again). Otherwise GBK, whose pairs may read as UTF-8 2-byte
        sequences; UTF-8 only if GBK cannot read the sample (Latin accents without Chinese).
        """
        try:
            text, bad = sample.decode(_UTF8), None
        except UnicodeDecodeError as exc:
            text, bad = sample[:exc.start].decode(_UTF8), exc.start
        if _WIDE.search(text):
            if bad is not None:
                raise self._bad(sample, bad, _UTF8)
            return _UTF8, text
        try:
            return _GBK, sample.decode(_GBK)
        except UnicodeDecodeError as exc:
            if bad is None:
                return _UTF8, text
            raise self._bad(sample, exc.start, _GBK) from None

    def _bad(self, data: bytes, position: int, encoding: str) -> CsvFileError:
        line = self._line_no + self._pending.count("\n") + data[:position].count(b"\n") + 1
        return CsvFileError(f"Line {line} is not valid {public_charset(encoding).upper()} text; "
                            "send the whole file in UTF-8 or in GBK.", code="invalid_encoding",
                            line=line)

    def _decode(self, data: bytes, final: bool) -> str:
        assert self._decoder is not None and self.encoding is not None
        try:
            return self._decoder.decode(data, final)
        except UnicodeDecodeError as exc:
            raise self._bad(bytes(exc.object), exc.start, self.encoding) from None

    def _flush(self, final: bool) -> list[tuple[int, str]]:
        pending = self._pending
        if "\n" not in pending and not final:
            if len(pending) > MAX_LINE_CHARS:
                raise CsvFileError(f"Line {self._line_no + 1} is longer than {MAX_LINE_CHARS} "
                                   "characters.", code="line_too_long", line=self._line_no + 1)
            return []
        parts = pending.split("\n")
        last = parts.pop()
        self._pending = "" if final else last
        if final and last:
            parts.append(last)  # a last line without a line break
        out = []
        for part in parts:
            self._line_no += 1
            if len(part) > MAX_LINE_CHARS:
                raise CsvFileError(f"Line {self._line_no} is longer than {MAX_LINE_CHARS} "
                                   "characters.", code="line_too_long", line=self._line_no)
            out.append((self._line_no, part[:-1] if part.endswith("\r") else part))
        return out

    @property
    def charset(self) -> str:
        return public_charset(self.encoding or _UTF8)


def split_fields(line: str, line_no: int) -> list[str]:
    """One CSV record on one line (no line breaks inside fields), fields trimmed."""
    if '"' not in line:
        return [f.strip() for f in line.split(",")]
    try:
        rows = list(csv.reader([line], strict=True, skipinitialspace=True))
    except csv.Error as exc:
        raise CsvFileError(f"Line {line_no} is not valid CSV: {exc}.", code="malformed_csv",
                           line=line_no) from None
    return [f.strip() for f in rows[0]] if rows else []


@dataclass
class ItemLine:
    line: int
    employee_name: str
    id_number: str
    account_number: str
    amount: str
    memo: str
    item_reference: str


def parse_header(fields: list[str], line_no: int) -> dict[str, str]:
    """The header record as a dict (values still strings); structural errors refused."""
    if fields and fields[0].lstrip("\ufeff").lower() == HEADER_COLUMNS[0]:
        raise CsvFileError("Line 1 must hold the batch header values, not column titles: "
                           "payer_account_id,purpose,value_date,declared_count,declared_total,"
                           "external_reference[,wage_month].", code="malformed_header", line=line_no)
    if len(fields) not in (HEADER_REQUIRED, len(HEADER_COLUMNS)):
        raise CsvFileError(
            f"Line {line_no} (the batch header) has {len(fields)} fields; expected "
            f"{HEADER_REQUIRED} or {len(HEADER_COLUMNS)}: " + ",".join(HEADER_COLUMNS) + ".",
            code="malformed_header", line=line_no)
    return dict(zip(HEADER_COLUMNS, fields, strict=False))


def parse_item(fields: list[str], line_no: int) -> ItemLine:
    if len(fields) != len(ITEM_COLUMNS):
        raise CsvFileError(
            f"Line {line_no} has {len(fields)} fields; an item line has {len(ITEM_COLUMNS)}: "
            + ",".join(ITEM_COLUMNS) + ".", code="malformed_csv", line=line_no)
    return ItemLine(line_no, *fields)


def result_charset(requested: str) -> str:
    """The charset a result file asked for as `requested` (utf-8, gbk or gb18030) is written in.

    GBK has no form for many rare characters of names (生僻字 such as 䶮 or 𠮷) that a GBK
    upload may hold (read as GB18030) and a UTF-8 one surely may, so a file written as GBK would
    have to refuse, or lose, exactly those. GB18030 is the superset of GBK that holds every
    character, in the same bytes as GBK for every character GBK has: a GBK reader reads it the
    same unless a name needs more, and the file is labelled `charset=gb18030`, as it is.
    """
    return "utf-8" if requested == "utf-8" else "gb18030"


def encode_lines(lines: Iterator[str], charset: str) -> Iterator[bytes]:
    """Encode result lines in blocks in `result_charset(charset)`; UTF-8 output starts with a
    BOM for spreadsheet tools."""
    encoding = _UTF8 if result_charset(charset) == "utf-8" else _GBK
    if encoding == _UTF8:
        yield codecs.BOM_UTF8
    block: list[str] = []
    size = 0
    for line in lines:
        block.append(line)
        size += len(line)
        if size >= 65536:
            yield "".join(block).encode(encoding)
            block, size = [], 0
    if block:
        yield "".join(block).encode(encoding)
