"""Content negotiation by Accept (RFC 9110 §12.5.1): q-values, wildcards, case, 406."""

from __future__ import annotations

import pytest
from starlette.datastructures import Headers

from gateway.negotiation import NotAcceptable, accept_of, choose, negotiate

RECEIPT = ("application/json", "application/pdf")  # the default first
STATEMENT = ("text/csv", "application/json")


@pytest.mark.parametrize(("accept", "offered", "chosen"), [
    (None, RECEIPT, "application/json"),
    ("", RECEIPT, "application/json"),
    ("*/*", RECEIPT, "application/json"),
    ("*/*", STATEMENT, "text/csv"),
    ("application/*", RECEIPT, "application/json"),
    ("application/pdf", RECEIPT, "application/pdf"),
    ("APPLICATION/PDF", RECEIPT, "application/pdf"),            # media types ignore case
    ("Application/Pdf; Q=1", RECEIPT, "application/pdf"),
    ("application/pdf;q=0, application/json", RECEIPT, "application/json"),  # q=0: not that
    ("application/pdf;q=0.5, application/json;q=0.9", RECEIPT, "application/json"),
    ("application/json;q=0.5, application/pdf", RECEIPT, "application/pdf"),
    ("*/*;q=0.1, application/pdf", RECEIPT, "application/pdf"),
    ("application/pdf;q=0, */*", RECEIPT, "application/json"),
    ("*/*, application/json;q=0", RECEIPT, "application/pdf"),  # the most specific range rules
    ("text/*;q=0.3, application/json;q=0.2", STATEMENT, "text/csv"),
    # equal q: the more specific range, then the one listed first
    ("application/*, application/pdf", RECEIPT, "application/pdf"),
    ("application/json, text/csv", STATEMENT, "application/json"),
    ("text/csv, application/json", STATEMENT, "text/csv"),
    ("text/csv; charset=utf-8", STATEMENT, "text/csv"),
    ("text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8", RECEIPT,
     "application/json"),                                        # a browser
    ("application/pdf;q=2, application/json", RECEIPT, "application/json"),  # a bad q: left out
    ("application/pdf;q=0.0001", RECEIPT, None),
    ("image/png", RECEIPT, None),
    ("application/pdf;q=0, application/json;q=0", RECEIPT, None),
    ("*/*;q=0", RECEIPT, None),
    ("garbage, */json", RECEIPT, None),
])
def test_choose(accept, offered, chosen):
    assert choose(accept, offered) == chosen


def test_nothing_acceptable_is_a_406_problem_naming_what_is_offered():
    assert negotiate("application/pdf", RECEIPT) == "application/pdf"
    with pytest.raises(NotAcceptable) as caught:
        negotiate("image/png, application/pdf;q=0", RECEIPT)
    problem = caught.value
    assert (problem.status, problem.code) == (406, "not_acceptable")
    assert problem.headers == {"Vary": "Accept"}
    assert problem.body()["available"] == list(RECEIPT)


def test_several_accept_header_lines_are_one_list():
    headers = Headers(raw=[(b"accept", b"application/json;q=0.1"), (b"accept", b"application/pdf")])
    assert choose(accept_of(headers), RECEIPT) == "application/pdf"
    assert accept_of(Headers()) is None
