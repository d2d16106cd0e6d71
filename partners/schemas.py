"""Request and response bodies of the partner API (applications, profile)."""

from __future__ import annotations

from datetime import datetime
from typing import Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator

from gateway import patterns
from gateway.identifiers import USCC

PartnerType = Literal["core_enterprise", "park_operator", "canteen_platform",
                      "government_portal", "software_vendor", "scf_platform"]
Product = Literal["accounts", "chain_credit", "payroll", "collection", "egov"]
PARTNER_TYPES: tuple[str, ...] = PartnerType.__args__  # type: ignore[attr-defined]
PRODUCTS: tuple[str, ...] = Product.__args__  # type: ignore[attr-defined]

EMAIL_PATTERN = patterns.EMAIL
# Mainland mobile (11 digits starting 1) or a landline with area code, optional +86.
PHONE_PATTERN = patterns.PHONE


class Contact(BaseModel):
    model_config = ConfigDict(extra="forbid")
    name: str = Field(min_length=1, max_length=60, examples=["张伟"])
    email: str = Field(max_length=254, pattern=EMAIL_PATTERN, examples=["zhang.wei@acme.example"])
    phone: str = Field(pattern=PHONE_PATTERN, examples=["13812345678"])
    role: Literal["business", "technical", "security"] = "business"


class ApplicationIn(BaseModel):
    """A partner's application. Sandbox credentials are issued at once; production needs
    approval by two different bank operators."""

    model_config = ConfigDict(extra="forbid")
    legal_name: str = Field(min_length=2, max_length=200, examples=["江苏链通供应链管理有限公司"])
    uscc: USCC = Field(description="Unified social credit code (GB 32100-2015), 18 characters")
    partner_type: PartnerType
    contacts: list[Contact] = Field(min_length=1, max_length=5)
    requested_products: list[Product] = Field(min_length=1, max_length=5)
    website: str | None = Field(None, max_length=300, pattern=patterns.WEB_ADDRESS)
    description: str | None = Field(None, max_length=2000)

    @field_validator("legal_name")
    @classmethod
    def _strip(cls, value: str) -> str:
        value = value.strip()
        if len(value) < 2:
            raise ValueError("the legal name is too short")
        return value

    @field_validator("requested_products")
    @classmethod
    def _unique(cls, value: list[str]) -> list[str]:
        return sorted(set(value))


class ContactOut(BaseModel):
    name: str = Field(description="Masked")
    email: str = Field(description="Masked")
    phone: str = Field(description="Masked")
    role: str


class SandboxCredentials(BaseModel):
    environment: Literal["sandbox"] = "sandbox"
    tenant_id: str
    client_id: str
    client_secret: str = Field(description="Shown once; store it now")
    scopes: list[str]
    token_endpoint: str


class ApplicationOut(BaseModel):
    id: str
    partner_id: str
    status: str
    legal_name: str
    uscc: str
    partner_type: str
    requested_products: list[str]
    contacts: list[ContactOut]
    submitted_at: datetime
    sandbox: SandboxCredentials


class Limits(BaseModel):
    rate_plan: str
    requests_per_second: int
    requests_per_day: int


class EnvironmentOut(BaseModel):
    environment: Literal["sandbox", "production"]
    status: Literal["available", "pending_approval", "suspended", "unavailable"]
    tenant_id: str | None


class PartnerProfile(BaseModel):
    id: str
    name: str
    uscc: str | None
    partner_type: str
    status: str
    products: list[str] = Field(description="Products requested in the application")
    environments: list[EnvironmentOut]
    limits: Limits = Field(description="Limits of the calling client")
    client_id: str
    created_at: datetime
