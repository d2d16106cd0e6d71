"""Sandbox fake data: every identifier passes its validator, and a seed is a fixed sequence."""

from __future__ import annotations

import re
from datetime import date

from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.identifiers import validate_bank_card, validate_resident_id, validate_uscc
from sandbox.fakedata import FakeData

# Far enough ahead that every generated birth date is in the past.
TODAY = date(2026, 11, 2)
MOBILE = re.compile(r"1(3[0-9]|5[0-35-9]|66|77|8[0-9]|9[89])[0-9]{8}")
HAN = re.compile(r"[\u4e00-\u9fff]+")


def test_people_are_valid() -> None:
    fake = FakeData(1)
    for _ in range(500):
        person = fake.person()
        assert set(person) == {"name", "id_number", "card_number", "phone"}
        assert HAN.fullmatch(person["name"]) and 2 <= len(person["name"]) <= 4
        assert validate_resident_id(person["id_number"], today=TODAY) == person["id_number"]
        assert validate_bank_card(person["card_number"]) == person["card_number"]
        assert MOBILE.fullmatch(person["phone"])


def test_enterprises_are_valid_and_registered_in_their_city() -> None:
    fake = FakeData(2)
    cities = {"北京": "110105", "上海": "310115", "深圳": "440300", "苏州": "320506"}
    for _ in range(500):
        enterprise = fake.enterprise()
        assert set(enterprise) == {"name", "uscc"}
        name, uscc = enterprise["name"], enterprise["uscc"]
        assert validate_uscc(uscc) == uscc and uscc.startswith("91")
        assert HAN.fullmatch(name) and name.endswith("公司")
        for city, region in cities.items():
            if name.startswith(city):
                assert uscc[2:8] == region


def test_the_same_seed_gives_the_same_data() -> None:
    def run(seed: int) -> list[object]:
        fake = FakeData(seed)
        return [fake.person() if i % 3 else fake.enterprise() for i in range(60)]

    assert run(2024) == run(2024)
    assert run(2024) != run(2025)


def test_one_source_never_repeats_an_identifier_or_an_enterprise() -> None:
    fake = FakeData(3)
    people = [fake.person() for _ in range(2000)]
    enterprises = [fake.enterprise() for _ in range(1000)]
    for key in ("id_number", "card_number", "phone"):
        assert len({p[key] for p in people}) == len(people)
    for key in ("name", "uscc"):
        assert len({e[key] for e in enterprises}) == len(enterprises)


@settings(max_examples=50, deadline=None)
@given(seed=st.integers(min_value=0, max_value=2**31 - 1))
def test_any_seed_gives_valid_data(seed: int) -> None:
    fake = FakeData(seed)
    person, enterprise = fake.person(), fake.enterprise()
    validate_resident_id(person["id_number"], today=TODAY)
    validate_bank_card(person["card_number"])
    validate_uscc(enterprise["uscc"])


def test_card_numbers_never_end_in_a_magic_suffix() -> None:
    """A seeded person's card must behave as an ordinary account: a number ending in 0002/0003
    would make it closed/frozen and fail the seed's own top-ups (1 in 5,000 numbers would)."""
    from products.accounts.magic import MAGIC_ACCOUNT_SUFFIXES

    fake = FakeData(20261123)
    endings = {fake.card_number()[-4:] for _ in range(30_000)}
    assert not endings & set(MAGIC_ACCOUNT_SUFFIXES)
