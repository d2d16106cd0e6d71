"""Numbered pages for the console's long lists, with the total count: an operator sees how
many rows there are and can reach every one (first, previous, next, last)."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlencode

from sqlalchemy import Select, func, select
from sqlalchemy.orm import Session

PAGE_SIZE = 50


@dataclass(frozen=True)
class Page:
    rows: list[Any]
    number: int
    total: int
    params: dict[str, str] = field(default_factory=dict)  # the list's filters, kept by the links
    size: int = PAGE_SIZE

    @property
    def pages(self) -> int:
        return max(1, math.ceil(self.total / self.size))

    @property
    def first_row(self) -> int:
        return (self.number - 1) * self.size + 1 if self.rows else 0

    @property
    def last_row(self) -> int:
        return self.first_row + len(self.rows) - 1 if self.rows else 0

    def link(self, number: int) -> str:
        return "?" + urlencode({**self.params, "page": number})


def page_number(value: str) -> int:
    """`?page=` as typed: anything but a positive number is the first page."""
    return int(value) if value.isdigit() and 0 < len(value) < 7 else 1


def paginate(session: Session, query: Select[Any], number: int, *, params: dict[str, str],
             scalars: bool = False, size: int = PAGE_SIZE) -> Page:
    """One page of an ordered query (a page past the end is the last page)."""
    total = int(session.scalar(select(func.count()).select_from(
        query.order_by(None).subquery())) or 0)
    number = min(max(number, 1), max(1, math.ceil(total / size)))
    result = session.execute(query.limit(size).offset((number - 1) * size))
    rows = list(result.scalars()) if scalars else [tuple(r) for r in result]
    return Page(rows=rows, number=number, total=total, params=params, size=size)
