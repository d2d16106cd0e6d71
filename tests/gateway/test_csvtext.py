"""CSV for spreadsheet tools: a cell that would run as a formula is written as text."""

from __future__ import annotations

import pytest

from gateway.csvtext import csv_record, spreadsheet_safe


@pytest.mark.parametrize(("value", "written"), [
    ("=1+1", "'=1+1"), ("+86 21 5555", "'+86 21 5555"), ("-奖金", "'-奖金"), ("@SUM(A1)", "'@SUM(A1)"),
    ("\t=1", "'\t=1"), ("\r=1", "'\r=1"),
    ("-12.00", "-12.00"), ("+3", "+3"), ("12.34", "12.34"), ("房租 =", "房租 ="), ("", ""),
    (None, ""), (7, "7"),
])
def test_formula_cells_become_text_and_numbers_stay_numbers(value, written):
    assert spreadsheet_safe(value) == written


def test_a_record_is_quoted_where_needed_with_crlf():
    assert csv_record(["a,b", '=HYPERLINK("x")', None, "-1.50"]) == (
        '"a,b","\'=HYPERLINK(""x"")",,-1.50\r\n')
