"""Fixtures of the payroll tests (the helpers live in support.py)."""

from tests.products.payroll.support import clock, employer

__all__ = ["clock", "employer"]
