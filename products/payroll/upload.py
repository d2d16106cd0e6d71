"""Reading an uploaded CSV batch or worker file from a byte stream, chunk by chunk.

The route hands over the body in pieces as it arrives; each piece is decoded, split into
lines and fed to the `BatchBuilder`, which stores items a chunk at a time. Only the current
piece, a partial line and one chunk of parsed rows are in memory.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from pydantic import ValidationError
from sqlalchemy.orm import Session

from gateway.errors import validation_message
from gateway.tenancy import Principal
from products.payroll.csvfile import (
    HEADER_COLUMNS,
    ITEM_COLUMNS,
    CsvFileError,
    LineDecoder,
    parse_header,
    split_fields,
)
from products.payroll.errors import InvalidBatchFile, InvalidWorkerFile
from products.payroll.models import PayrollBatch
from products.payroll.schemas import BatchHeaderIn
from products.payroll.service import BatchBuilder
from products.payroll.validation import normalize_count, normalize_date, normalize_purpose

PIECE = 256 * 1024


def file_problem(exc: CsvFileError, cls: type[InvalidBatchFile] | type[InvalidWorkerFile]
                 = InvalidBatchFile) -> InvalidBatchFile | InvalidWorkerFile:
    errors = [{"field": f"line {exc.line}" if exc.line else "file", "message": str(exc),
               "code": exc.code}]
    return cls(str(exc), code=exc.code, errors=errors, extra={"line": exc.line})


def pieces(data: bytes) -> Iterator[bytes]:
    view = memoryview(data)
    for start in range(0, len(view), PIECE):
        yield bytes(view[start:start + PIECE])


class CsvBatchUpload:
    """Feeds the lines of an uploaded batch file to a BatchBuilder as they complete."""

    def __init__(self, session: Session, principal: Principal, charset: str | None) -> None:
        self.session = session
        self.principal = principal
        self.decoder = LineDecoder(charset)
        self.builder: BatchBuilder | None = None

    def feed(self, data: bytes, final: bool = False) -> None:
        try:
            lines = self.decoder.feed(data, final)
        except CsvFileError as exc:
            raise file_problem(exc) from None
        for line_no, text in lines:
            if not text.strip():
                continue
            if self.builder is None:
                self._start(line_no, text)
            else:
                self._item(line_no, text)

    def _start(self, line_no: int, text: str) -> None:
        try:
            raw = parse_header(split_fields(text, line_no), line_no)
        except CsvFileError as exc:
            raise file_problem(exc) from None
        values: dict[str, Any] = {
            "payer_account_id": raw["payer_account_id"],
            "purpose": normalize_purpose(raw["purpose"]),
            "value_date": normalize_date(raw["value_date"]),
            "declared_count": normalize_count(raw["declared_count"]),
            "declared_total": {"amount": raw["declared_total"], "currency": "CNY"},
            "external_reference": raw["external_reference"],
            "wage_month": raw.get("wage_month") or None,
        }
        try:
            header = BatchHeaderIn.model_validate(values)
        except ValidationError as exc:
            errors = [{"field": "header." + ".".join(str(p) for p in e["loc"]),
                       "message": validation_message(e), "code": e["type"], "line": line_no}
                      for e in exc.errors()]
            raise InvalidBatchFile(
                f"Line {line_no}, the batch header, is not valid: "
                + "; ".join(f"{e['field']}: {e['message']}" for e in errors) + ".",
                code="invalid_header", errors=errors, extra={"line": line_no}) from None
        self.builder = BatchBuilder(self.session, principal=self.principal, header=header,
                                    source="csv", charset=self.decoder.charset,
                                    header_line=line_no)

    def _item(self, line_no: int, text: str) -> None:
        builder = self.builder
        assert builder is not None
        try:
            fields = split_fields(text, line_no)
        except CsvFileError as exc:
            builder.add_malformed(line_no, "malformed_csv", str(exc))
            return
        if len(fields) != len(ITEM_COLUMNS):
            builder.add_malformed(line_no, "malformed_line",
                                  f"Line {line_no} has {len(fields)} fields; an item line has "
                                  f"{len(ITEM_COLUMNS)}: " + ",".join(ITEM_COLUMNS) + ".")
            return
        name, id_number, account, amount, memo, ref = fields
        builder.add(line=line_no, employee_name=name, id_number=id_number,
                    account_number=account, amount=amount, memo=memo, item_reference=ref)

    def finish(self) -> PayrollBatch:
        self.feed(b"", final=True)
        if self.builder is None:
            raise InvalidBatchFile(
                "The file is empty: line 1 must be the batch header ("
                + ",".join(HEADER_COLUMNS) + "), then one line per item.", code="empty_file")
        self.builder.batch.charset = self.decoder.charset
        return self.builder.finish()


def worker_records(data: bytes, charset: str | None) -> Iterator[tuple[int, list[str]]]:
    """The records of a worker file (small: registered workers of one project)."""
    decoder = LineDecoder(charset)
    try:
        lines = []
        for piece in pieces(data):
            lines.extend(decoder.feed(piece))
        lines.extend(decoder.feed(b"", final=True))
        for line_no, text in lines:
            if text.strip():
                yield line_no, split_fields(text, line_no)
    except CsvFileError as exc:
        raise file_problem(exc, InvalidWorkerFile) from None
