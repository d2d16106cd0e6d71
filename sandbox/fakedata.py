"""Realistic, deterministic fake data for seeding a sandbox tenant.

Names, ID numbers, card numbers, phone numbers and enterprises look like the real thing to a
developer who knows them, and every identifier passes the validators of `gateway.identifiers`,
so sandbox data behaves as production data would. The same seed always gives the same
sequence, and one `FakeData` never hands out the same person's identifiers or the same
enterprise twice (seeders store them under unique constraints).

Nothing here reads the clock or a global random state: a tenant's data must not change
between a first seeding and a reset.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from typing import TypedDict

from gateway.identifiers import generate_bank_card, generate_resident_id, generate_uscc
from products.accounts.magic import MAGIC_ACCOUNT_SUFFIXES

__all__ = ["Enterprise", "FakeData", "Person"]

# The most common surnames, roughly in order of frequency, and a few compound ones.
_SURNAMES = (
    "王李张刘陈杨黄赵吴周徐孙马朱胡郭何高林罗郑梁谢宋唐许韩冯邓曹彭曾肖田董袁潘于蒋蔡余杜叶程"
    "苏魏吕丁任沈姚卢姜崔钟谭陆汪范金石廖贾夏韦付方白邹孟熊秦邱江尹薛闫段雷侯龙史陶黎贺顾毛郝"
    "龚邵万钱严覃武戴莫孔向汤"
)
_COMPOUND_SURNAMES = ("欧阳", "司马", "诸葛", "上官", "皇甫", "慕容")
# Whole given names, one or two characters, as they are actually given.
_GIVEN_NAMES = (
    "伟",
    "芳",
    "娜",
    "敏",
    "静",
    "磊",
    "军",
    "洋",
    "勇",
    "杰",
    "涛",
    "超",
    "明",
    "华",
    "平",
    "刚",
    "丹",
    "鹏",
    "秀英",
    "桂英",
    "秀兰",
    "建国",
    "志强",
    "文博",
    "宇轩",
    "浩然",
    "子涵",
    "欣怡",
    "梓萱",
    "思远",
    "晨曦",
    "雨桐",
    "佳怡",
    "俊杰",
    "嘉豪",
    "一鸣",
    "诗涵",
    "梦琪",
    "海燕",
    "红梅",
    "春华",
    "晓东",
    "振华",
    "立新",
    "建军",
    "玉兰",
    "淑珍",
    "宏伟",
    "新民",
    "永刚",
    "国庆",
    "丽华",
)

# (city, the region code its market regulator registers companies under)
_CITIES = (
    ("北京", "110105"),
    ("上海", "310115"),
    ("深圳", "440300"),
    ("广州", "440106"),
    ("杭州", "330106"),
    ("苏州", "320506"),
    ("成都", "510107"),
    ("武汉", "420106"),
    ("济南", "370102"),
    ("厦门", "350203"),
    ("重庆", "500112"),
    ("西安", "610113"),
    ("南京", "320102"),
    ("宁波", "330203"),
    ("东莞", "441900"),
    ("佛山", "440604"),
    ("合肥", "340104"),
    ("长沙", "430104"),
    ("郑州", "410105"),
    ("青岛", "370202"),
)
_BRANDS = (
    "恒达",
    "华信",
    "鑫源",
    "瑞丰",
    "博远",
    "中恒",
    "天宇",
    "宏图",
    "金盛",
    "嘉禾",
    "永泰",
    "汇通",
    "新源",
    "安捷",
    "卓越",
    "锦程",
    "联创",
    "润泽",
    "海纳",
    "腾飞",
    "远航",
    "晟泰",
    "众诚",
    "翔宇",
)
_INDUSTRIES = (
    "精密机械",
    "电子科技",
    "新材料",
    "食品",
    "物流",
    "建设工程",
    "供应链管理",
    "餐饮管理",
    "物业服务",
    "汽车零部件",
    "纺织",
    "化工",
    "医药",
    "信息技术",
    "商贸",
    "包装材料",
    "农业发展",
    "环保科技",
    "建筑劳务",
    "机电设备",
)
# Weighted: most companies are limited liability companies.
_SUFFIXES = ("有限公司",) * 6 + ("股份有限公司", "有限责任公司")

# Mainland mobile number segments (three-digit prefixes of the big three carriers).
_MOBILE_PREFIXES = (
    "130",
    "131",
    "132",
    "133",
    "134",
    "135",
    "136",
    "137",
    "138",
    "139",
    "150",
    "151",
    "152",
    "153",
    "155",
    "156",
    "157",
    "158",
    "159",
    "166",
    "177",
    "180",
    "181",
    "182",
    "183",
    "184",
    "185",
    "186",
    "187",
    "188",
    "189",
    "198",
    "199",
)
# UnionPay debit BINs of large banks, with their card lengths.
_CARD_BINS = (("622202", 19), ("622848", 19), ("621700", 19), ("621661", 19), ("622588", 16))

# Enough attempts that a collision never exhausts them; finite so that a bug cannot hang.
_ATTEMPTS = 1000


class Person(TypedDict):
    name: str
    id_number: str
    card_number: str
    phone: str


class Enterprise(TypedDict):
    name: str
    uscc: str


class FakeData:
    """A deterministic source of fake people and enterprises for one seed."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = random.Random(seed)
        self._issued: set[str] = set()

    def _unique(self, make: Callable[[], str]) -> str:
        for _ in range(_ATTEMPTS):
            value = make()
            if value not in self._issued:
                self._issued.add(value)
                return value
        raise RuntimeError("fake data ran out of distinct values")  # pragma: no cover

    def name(self) -> str:
        """A Chinese person's name: a surname (rarely a compound one) and a given name."""
        rng = self.rng
        surname = rng.choice(_COMPOUND_SURNAMES) if rng.random() < 0.03 else rng.choice(_SURNAMES)
        return surname + rng.choice(_GIVEN_NAMES)

    def phone(self) -> str:
        """A distinct 11-digit mainland mobile number."""
        return self._unique(
            lambda: (
                self.rng.choice(_MOBILE_PREFIXES) + "".join(self.rng.choice("0123456789") for _ in range(8))
            )
        )

    def id_number(self) -> str:
        """A distinct valid resident ID number (born 1960-2002)."""
        return self._unique(lambda: generate_resident_id(self.rng))

    def card_number(self) -> str:
        """A distinct valid UnionPay debit card number, never ending in a sandbox magic suffix
        (those make an account closed or frozen; a seeded diner must be able to pay)."""

        def make() -> str:
            while True:
                bin_, length = self.rng.choice(_CARD_BINS)
                number = generate_bank_card(self.rng, bin_, length)
                if number[-4:] not in MAGIC_ACCOUNT_SUFFIXES:
                    return number

        return self._unique(make)

    def uscc(self, region: str | None = None) -> str:
        """A distinct valid unified social credit code of an enterprise."""
        return self._unique(lambda: generate_uscc(self.rng, region=region))

    def person(self) -> Person:
        """A person: name, resident ID number, bank card number and mobile phone."""
        return Person(
            name=self.name(), id_number=self.id_number(), card_number=self.card_number(), phone=self.phone()
        )

    def enterprise(self) -> Enterprise:
        """An enterprise such as 苏州恒达精密机械有限公司 with a code registered in its city."""
        rng = self.rng
        region = ""

        def make() -> str:
            nonlocal region
            city, region = rng.choice(_CITIES)
            return city + rng.choice(_BRANDS) + rng.choice(_INDUSTRIES) + rng.choice(_SUFFIXES)

        name = self._unique(make)
        return Enterprise(name=name, uscc=self.uscc(region))
