"""The hosted checkout at /checkout/{token}: server-rendered, mobile-first, Chinese with an
English toggle, plain forms (works without JavaScript), keyboard-operable with labelled fields.

Embedding: the page's own Content-Security-Policy lists the portal's registered origins in
`frame-ancestors` (no X-Frame-Options), so only the portal's pages can frame it. When the order
is settled the result page, if framed, posts the outcome to its parent with `postMessage`,
once per registered origin and always with that exact target origin, so the browser delivers
it only to a registered parent (never `*`). The "return" link takes the payer (the top window)
to the portal's `return_url` with the signed result in `egov_result`.

The checkout token in the URL is the capability: it is random, and every form posts to the
same token, so a forged cross-site form cannot name an order it does not know.
"""

from __future__ import annotations

import json
import math
import secrets
import time
from collections.abc import Iterator
from contextlib import contextmanager
from functools import lru_cache
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import jinja2
from fastapi import Depends, Form, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from limits import RateLimitItem, parse_many
from slowapi.util import get_remote_address
from sqlalchemy.orm import Session

from gateway.clock import SHANGHAI, to_rfc3339
from gateway.db import get_session, read_only, request_session
from gateway.errors import PROBLEM_JSON, Problem, TooManyRequests
from gateway.money import format_fen
from gateway.negotiation import VARY, accept_of, choose
from gateway.routing import Router
from gateway.tenancy import Tenant, clock_for
from products.egov import receipts, service
from products.egov.errors import CheckoutNotFound, PayerLoginUnavailable, ReturnUrlNotRegistered
from products.egov.models import EgovPortal, PaymentOrder
from products.egov.receipt_pdf import qr_png
from products.egov.signing import sign_result

router = Router(prefix="/checkout", include_in_schema=False)

_env = jinja2.Environment(loader=jinja2.FileSystemLoader(Path(__file__).parent / "templates"),
                          autoescape=jinja2.select_autoescape(["html"]), auto_reload=False)

STRINGS: dict[str, dict[str, str]] = {
    "zh": {
        "html_lang": "zh-CN", "title": "统一缴费", "other_lang": "English", "other_lang_code": "en",
        "footer": "全链银行 · 政务缴费服务", "order": "缴费信息", "amount": "金额", "item": "缴款项目",
        "payee": "收款单位", "payer": "缴款人", "payment_code": "缴款码", "description": "说明",
        "expires": "有效期至", "pay_bank": "银行账户支付", "account_number": "银行卡号/账号",
        "account_hint": "请输入本人银行卡号，仅用于本次缴费。", "password": "网银密码",
        "sandbox_login": "沙箱环境：任意通过校验位的卡号，密码 123456。以 0002 结尾的账号已销户，以 0003 "
                         "结尾的已冻结；金额 4040.01–4040.05 分别模拟余额不足、已销户、已冻结、户名不符和"
                         "处理失败。",
        "pay_button": "确认支付", "pay_qr": "扫码支付", "qr_alt": "缴费二维码：请使用手机银行扫码支付",
        "qr_hint": "请使用手机银行扫描二维码完成支付。", "qr_simulate": "模拟扫码完成支付（沙箱）",
        "cancel": "取消缴费", "receipt_number": "凭证号", "paid_at": "缴款时间", "return": "返回办事页面",
        "paid": "缴费成功", "cancelled": "缴费已取消", "expired": "缴费单已过期",
        "failed": "缴费失败次数过多，本缴费单已关闭", "closed_hint": "如需缴费，请返回办事页面重新发起。",
        "paid_hint": "电子缴款凭证已生成，可在办事页面查看。", "not_found": "缴费单不存在",
        "not_found_hint": "链接无效或已失效，请返回办事页面重新发起。",
        "verify_title": "缴款凭证核验", "verify_ok": "凭证真实有效", "evidence": "存证编号",
        "error_generic": "支付未成功，请重试。", "unavailable": "暂不支持在线支付",
        "attempts_left": "还可尝试 {n} 次。", "too_many": "操作过于频繁",
        "too_many_hint": "当前网络提交的缴费请求过多，请约 {n} 秒后再试。",
    },
    "en": {
        "html_lang": "en", "title": "Government payment", "other_lang": "中文", "other_lang_code": "zh-CN",
        "footer": "Quanlian Bank · government payments", "order": "Payment details", "amount": "Amount",
        "item": "Item", "payee": "Payee", "payer": "Payer", "payment_code": "Payment code",
        "description": "Description", "expires": "Pay before (Beijing time)", "pay_bank": "Pay from a bank account",
        "account_number": "Card or account number",
        "account_hint": "Your own bank card; used for this payment only.",
        "password": "Online banking password",
        "sandbox_login": "Sandbox: any card number with a valid check digit, password 123456. Numbers "
                         "ending 0002 are closed, 0003 frozen; amounts 4040.01 to 4040.05 are "
                         "refused as insufficient funds, account closed, account frozen, name "
                         "mismatch and processing failed.",
        "pay_button": "Pay", "pay_qr": "Pay by QR code",
        "qr_alt": "Payment QR code: scan it with your mobile banking app",
        "qr_hint": "Scan the code with your mobile banking app to pay.",
        "qr_simulate": "Simulate a completed scan (sandbox)", "cancel": "Cancel payment",
        "receipt_number": "Receipt no.", "paid_at": "Paid at", "return": "Back to the service",
        "paid": "Payment successful", "cancelled": "Payment cancelled",
        "expired": "This payment order has expired",
        "failed": "Too many failed attempts: this payment order is closed",
        "closed_hint": "To pay, go back to the service and start again.",
        "paid_hint": "Your electronic receipt is ready in the service.",
        "not_found": "No such payment order",
        "not_found_hint": "The link is not valid any more; go back to the service and start again.",
        "verify_title": "Receipt verification", "verify_ok": "This receipt is genuine",
        "evidence": "Evidence entry", "error_generic": "The payment did not go through; try again.",
        "unavailable": "Online payment is not available", "attempts_left": "{n} attempt(s) left.",
        "too_many": "Too many payment attempts",
        "too_many_hint": "Too many payments were submitted from your network; try again in about "
                         "{n} seconds.",
    },
}

ERRORS: dict[str, dict[str, str]] = {
    "invalid_account_number": {"zh": "卡号有误（校验位不符），请检查。",
                               "en": "The card number is not valid; check it."},
    "login_failed": {"zh": "卡号或密码错误。", "en": "Wrong card number or password."},
    "insufficient_funds": {"zh": "账户余额不足。", "en": "Insufficient funds."},
    "account_closed": {"zh": "该账户已销户。", "en": "This account is closed."},
    "account_frozen": {"zh": "该账户已冻结。", "en": "This account is frozen."},
    "name_mismatch": {"zh": "户名不符。", "en": "The account name does not match."},
    "processing_failed": {"zh": "银行处理失败，请稍后重试。",
                          "en": "The bank could not process the payment."},
    "debit_restricted": {"zh": "该账户不能用于缴费。", "en": "This account cannot be used to pay."},
    "invalid_method": {"zh": "请选择支付方式。", "en": "Choose how to pay."},
}


def _lang(value: str | None) -> str:
    return "en" if value == "en" else "zh"


def _frame_ancestors(portal: EgovPortal | None) -> str:
    origins = list(portal.origins) if portal is not None else []
    return " ".join(origins) if origins else "'none'"


def _render(template: str, *, status: int = 200, portal: EgovPortal | None = None,
            **context: Any) -> HTMLResponse:
    nonce = secrets.token_urlsafe(16)
    body = _env.get_template(template).render(nonce=nonce, **context)
    csp = (f"default-src 'none'; style-src 'nonce-{nonce}'; script-src 'nonce-{nonce}'; "
           "img-src 'self'; form-action 'self'; base-uri 'none'; "
           f"frame-ancestors {_frame_ancestors(portal)}")
    return HTMLResponse(body, status_code=status, headers={
        "Content-Security-Policy": csp, "Cache-Control": "no-store",
        "Content-Language": "en" if context.get("lang") == "en" else "zh-CN"})


def _local(value: Any) -> str:
    return value.astimezone(SHANGHAI).strftime("%Y-%m-%d %H:%M")


def _other_lang_url(base: str, lang: str) -> str:
    return f"{base}?{urlencode({'lang': 'zh' if lang == 'en' else 'en'})}"


def _issuer(request: Request) -> str:
    return str(request.app.state.settings.issuer).rstrip("/")


def _not_found(lang: str) -> HTMLResponse:
    t = STRINGS[lang]
    return _render("message.html", status=404, t=t, lang=lang, headline=t["not_found"],
                   message=t["not_found_hint"], other_lang_url=None)


def _return_link(order: PaymentOrder, portal: EgovPortal | None, token: str) -> str | None:
    """The link back to return_url with the signed result, only while its origin is still one of
    the portal's: an origin the portal removed is no longer vouched for (it may have changed
    hands), so the payer and the result are not sent there; the page shows the outcome alone."""
    if portal is None:
        return None
    try:
        service.check_return_url(portal, order.return_url)
    except ReturnUrlNotRegistered:
        return None
    return service.with_result(order.return_url, token)


def _result_page(request: Request, session: Session, order: PaymentOrder, portal: EgovPortal | None,
                 lang: str) -> HTMLResponse:
    t = STRINGS[lang]
    token = sign_result(order, request.app.state.keys.active_signing_key, issuer=_issuer(request),
                        audience=order.created_by)
    return_href = _return_link(order, portal, token)
    targets = []
    first = service.origin_of(order.return_url)
    registered = list(portal.origins) if portal is not None else []
    if first in registered:
        targets.append(first)
    targets += [o for o in registered if o not in targets]
    message = {"type": "quanlian.egov.checkout", "order_id": order.id,
               "portal_reference": order.portal_reference, "status": order.status, "result": token}
    # JSON inside <script type="application/json">: escape "<" so no "</script>" can end it.
    message_json = json.dumps({"targets": targets, "message": message}).replace("<", "\\u003c")
    hints = {"paid": t["paid_hint"]}
    base = f"/checkout/{order.checkout_token}"
    return _render("result.html", portal=portal, t=t, lang=lang, order=order,
                   amount=format_fen(order.amount_fen), headline=t.get(order.status, order.status),
                   message=hints.get(order.status, t["closed_hint"]),
                   paid_local=_local(order.paid_at) if order.paid_at else None,
                   return_href=return_href, post_targets=bool(targets), message_json=message_json,
                   other_lang_url=_other_lang_url(base, lang))


@contextmanager
def _reading(request: Request) -> Iterator[Session]:
    """A read-only session: rendering a page never takes SQLite's write lock (a deferred BEGIN),
    so page views do not queue behind payments. On PostgreSQL its statements run in autocommit:
    a page view is one statement, which sees one snapshot by itself, and a transaction around it
    cost two round trips more (BEGIN, ROLLBACK)."""
    database = request.app.state.database
    with database.engine.connect() as conn:
        if not database.is_sqlite:
            conn = conn.execution_options(isolation_level="AUTOCOMMIT")
        session = Session(bind=read_only(conn))
        try:
            yield session
        finally:
            session.close()
            conn.rollback()


@router.get("/{token}")
def checkout_page(token: str, request: Request, lang: str | None = None,
                  error: str | None = None) -> Response:
    lang = _lang(lang)
    with _reading(request) as reader:
        try:
            order, tenant, portal = service.checkout_by_token(reader, token)
        except Problem:
            return _not_found(lang)
        now = clock_for(reader, tenant.id).now()
        if not (order.status == "open" and order.expires_at <= now):
            return _page(request, reader, order, tenant, portal, lang, error)
    # The order's expiry has passed: record it (a write, in the request's transaction).
    session = request_session(request)
    order, tenant, portal = service.checkout_by_token(session, token, lock=True)
    service.expire_if_due(session, order, clock_for(session, tenant.id).now(), _issuer(request))
    return _page(request, session, order, tenant, portal, lang, error)


def _page(request: Request, session: Session, order: PaymentOrder, tenant: Tenant,
          portal: EgovPortal | None, lang: str, error: str | None) -> HTMLResponse:
    if order.status != "open":
        return _result_page(request, session, order, portal, lang)
    t = STRINGS[lang]
    message = None
    if error:
        message = ERRORS.get(error, {}).get(lang, t["error_generic"])
        left = service.MAX_FAILED_ATTEMPTS - order.failed_attempts
        if order.failed_attempts and left > 0:
            message += " " + t["attempts_left"].format(n=left)
    base = f"/checkout/{order.checkout_token}"
    return _render("checkout.html", portal=portal, t=t, lang=lang, order=order,
                   amount=format_fen(order.amount_fen), error=message, base=base,
                   sandbox=tenant.environment == "sandbox",
                   expires_iso=to_rfc3339(order.expires_at), expires_local=_local(order.expires_at),
                   other_lang_url=_other_lang_url(base, lang))


def _back(token: str, lang: str, error: str | None = None) -> RedirectResponse:
    query = {"lang": lang} if lang == "en" else {}
    if error:
        query["error"] = error
    suffix = f"?{urlencode(query)}" if query else ""
    return RedirectResponse(f"/checkout/{token}{suffix}", status_code=303)


@lru_cache(maxsize=8)
def _checkout_limits(spec: str) -> tuple[RateLimitItem, ...]:
    return tuple(parse_many(spec))


def _checkout_wait(request: Request) -> int | None:
    """Count a payment submitted from this address against QUANLIAN_CHECKOUT_RATE_LIMIT (in the
    platform limiter's storage, so it holds across processes with Redis); the seconds to wait
    when the address used up a window, else None. Its own bucket and a more generous limit than
    sign-up: the payers of a whole office or campus may share one address, and guessing a
    password is bounded by each order's own lockout (service.MAX_FAILED_ATTEMPTS)."""
    strategy = request.app.state.rate_limiter.strategy
    identity = ("egov_checkout", get_remote_address(request))
    for item in _checkout_limits(request.app.state.settings.checkout_rate_limit):
        if not strategy.hit(item, *identity):
            reset = strategy.get_window_stats(item, *identity).reset_time
            return max(1, math.ceil(reset - time.time()))
    return None


def _too_many(request: Request, token: str, lang: str, wait: int) -> Response:
    """A payer's browser gets the checkout's own page (framable by the portal, as the checkout
    is); any other client the platform's 429 problem."""
    headers = {"Retry-After": str(wait), **VARY}
    if choose(accept_of(request.headers), (PROBLEM_JSON, "text/html")) != "text/html":
        raise TooManyRequests(f"Too many checkout payments from this address; retry after {wait} s.",
                              headers=headers)
    with _reading(request) as reader:
        try:
            _, _, portal = service.checkout_by_token(reader, token)
        except Problem:
            portal = None
    t = STRINGS[lang]
    page = _render("message.html", status=429, t=t, lang=lang, portal=portal, headline=t["too_many"],
                   message=t["too_many_hint"].format(n=wait), other_lang_url=None)
    page.headers.update(headers)
    return page


@router.post("/{token}/pay")
def checkout_pay(token: str, request: Request, method: str = Form("bank_account", max_length=16),
                 account_number: str = Form("", max_length=40), password: str = Form("", max_length=40),
                 lang: str = Form("zh", max_length=5),
                 session: Session = Depends(get_session)) -> Response:
    lang = _lang(lang)
    wait = _checkout_wait(request)
    if wait is not None:
        return _too_many(request, token, lang, wait)
    try:
        outcome = service.pay(session, token, method=method, account_number=account_number,
                              password=password, issuer=_issuer(request))
    except CheckoutNotFound:
        return _not_found(lang)
    except PayerLoginUnavailable:
        t = STRINGS[lang]
        return _render("message.html", status=503, t=t, lang=lang, headline=t["unavailable"],
                       message=None, other_lang_url=None)
    if outcome.paid or outcome.order.status != "open":
        return _back(token, lang)
    return _back(token, lang, outcome.failure or "error")


@router.post("/{token}/cancel")
def checkout_cancel(token: str, request: Request, lang: str = Form("zh", max_length=5),
                    session: Session = Depends(get_session)) -> Response:
    lang = _lang(lang)
    try:
        order = service.order_by_token(session, token, lock=True)
    except Problem:
        return _not_found(lang)
    if order.status == "open":
        service.cancel_order(session, order, actor="payer", issuer=_issuer(request))
    return _back(token, lang)


@router.get("/{token}/qr.png")
def checkout_qr(token: str, request: Request) -> Response:
    with _reading(request) as reader:
        try:
            order = service.order_by_token(reader, token)
        except Problem:
            return Response(status_code=404)
        url = service.checkout_url(_issuer(request), order)
    return Response(qr_png(url, box_size=8), media_type="image/png",
                    headers={"Cache-Control": "private, max-age=600"})


@router.get("/receipts/{code}")
def receipt_verification_page(code: str, request: Request, lang: str | None = None) -> Response:
    lang = _lang(lang)
    t = STRINGS[lang]
    with _reading(request) as reader:
        try:
            order = service.order_by_verification(reader, code)
        except Problem:
            return _render("message.html", status=404, t=t, lang=lang, headline=t["not_found"],
                           message=None, other_lang_url=None)
        data = receipts.receipt_data(reader, order, issuer=_issuer(request),
                                     log=getattr(request.app.state, "evidence_log", None))
        paid_local = _local(order.paid_at) if order.paid_at else ""
    base = f"/checkout/receipts/{code}"
    return _render("verify.html", t=t, lang=lang, receipt=data, paid_local=paid_local,
                   other_lang_url=_other_lang_url(base, lang))
