"""The electronic receipt (电子缴款凭证) of a paid order: JSON and PDF.

The PDF embeds (a subset of) WenQuanYi Micro Hei, shipped with the package under
`fonts/` (Apache-2.0), so that the receipt renders the same everywhere, with no font
installed on the reader's machine and none downloaded. A QR code leads to the public
verification page; the evidence block carries what verifying the payment offline needs: the
log entry of the payment event (leaf hash, index), the inclusion proof and the signed
checkpoint, each value whole on one line in monospace so that it copies out exactly.
"""

from __future__ import annotations

import io
from pathlib import Path
from typing import Any

import qrcode
from reportlab.lib.pagesizes import A4
from reportlab.lib.utils import ImageReader
from reportlab.pdfbase import pdfmetrics
from reportlab.pdfbase.ttfonts import TTFont
from reportlab.pdfgen import canvas

from gateway.clock import SHANGHAI

CJK_FONT = "WenQuanYiMicroHei"
_FONT_FILE = Path(__file__).resolve().parent / "fonts" / "wqy-microhei.ttc"
_DIGITS = "零壹贰叁肆伍陆柒捌玖"
_UNITS = ("", "拾", "佰", "仟")
_SECTIONS = ("", "万", "亿", "万亿")
_font_ready = False


def _section_words(value: int) -> str:
    """0 < value < 10000 in capital numerals, zeros inside collapsed to one 零."""
    out = []
    zero = False
    for position in range(3, -1, -1):
        digit = (value // 10 ** position) % 10
        if digit == 0:
            zero = bool(out)
            continue
        if zero:
            out.append("零")
            zero = False
        out.append(_DIGITS[digit] + _UNITS[position])
    return "".join(out)


def amount_in_words(fen: int) -> str:
    """Integer fen as written on Chinese financial documents: 1409.50 -> 壹仟肆佰零玖元伍角整."""
    if fen < 0:
        raise ValueError("amount must not be negative")
    yuan, rest = divmod(fen, 100)
    jiao, fen_digit = divmod(rest, 10)
    if yuan == 0 and rest == 0:
        return "零元整"
    words = ""
    if yuan:
        sections = []
        while yuan:
            yuan, section = divmod(yuan, 10000)
            sections.append(section)
        parts: list[str] = []
        pending_zero = False
        for index in range(len(sections) - 1, -1, -1):
            section = sections[index]
            if section == 0:
                pending_zero = bool(parts)
                continue
            if parts and (pending_zero or section < 1000):
                parts.append("零")
            pending_zero = False
            parts.append(_section_words(section) + _SECTIONS[index])
        words = "".join(parts) + "元"
    if jiao == 0 and fen_digit == 0:
        return words + "整"
    if jiao:
        words += _DIGITS[jiao] + "角"
    elif words:
        words += "零"
    if fen_digit:
        words += _DIGITS[fen_digit] + "分"
    else:
        words += "整"
    return words


def qr_png(data: str, box_size: int = 6) -> bytes:
    """A PNG QR code of `data` (error correction M)."""
    code = qrcode.QRCode(error_correction=qrcode.constants.ERROR_CORRECT_M, box_size=box_size,
                         border=2)
    code.add_data(data)
    code.make(fit=True)
    image = code.make_image(fill_color="black", back_color="white")
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()


def _ensure_font() -> None:
    global _font_ready
    if not _font_ready:
        pdfmetrics.registerFont(TTFont(CJK_FONT, str(_FONT_FILE), subfontIndex=0))
        _font_ready = True


def _local(rfc3339: str) -> str:
    from datetime import datetime

    value = datetime.fromisoformat(rfc3339.replace("Z", "+00:00")).astimezone(SHANGHAI)
    return value.strftime("%Y-%m-%d %H:%M:%S") + " (北京时间)"


MONO = "Courier"
MONO_SIZE = 7.5
_MARGIN = 56


def evidence_lines(evidence: dict[str, Any]) -> tuple[list[str], list[str]]:
    """The evidence block as text lines: the fields with the inclusion proof (an RFC 9162 audit
    path, leaf to root, one hash a line), and the signed checkpoint's own lines (the C2SP note;
    a blank line comes before its signature lines)."""
    fields = [
        f"entry      {evidence.get('entry_id') or '-'}",
        f"event      {evidence.get('event_id') or '-'}",
        f"log index  {evidence.get('index')}",
        f"tree size  {evidence.get('tree_size')}",
        f"leaf hash  {evidence.get('leaf_hash') or '-'}",
        f"state      sha256:{evidence.get('state_sha256') or '-'}",
        f"key        {evidence.get('verifier_key') or '-'}",
        f"inclusion proof ({len(evidence.get('inclusion_proof') or [])} hashes, leaf to root):",
    ] + [f"  {digest}" for digest in evidence.get("inclusion_proof") or []]
    checkpoint = [line for line in (evidence.get("checkpoint") or "-").splitlines() if line]
    return fields, checkpoint


def _evidence_block(pdf: canvas.Canvas, evidence: dict[str, Any], *, left: float, top: float,
                    width: float) -> float:
    """Draw what offline verification needs, every value whole on one line in monospace (a
    signature or hash broken across lines cannot be copied out); returns the y below it.

    The font shrinks until the longest line fits the width; a block longer than the page goes
    on to the next page."""
    fields, checkpoint = evidence_lines(evidence)
    longest = max(len(line) for line in fields + checkpoint)
    size = min(MONO_SIZE, width / (pdfmetrics.stringWidth("0", MONO, 1) * longest))
    _, height = A4
    y = top

    def text(line: str, font: str, font_size: float, step: float) -> None:
        nonlocal y
        if y < _MARGIN:
            pdf.showPage()
            y = height - _MARGIN
        pdf.setFont(font, font_size)
        pdf.drawString(left, y, line)
        y -= step

    text("存证 Evidence", CJK_FONT, 12, 18)
    for line in fields:
        text(line, MONO, size, size + 2.5)
    y -= 4
    text("签名日志头 Signed checkpoint (a blank line precedes the signature line):", CJK_FONT, 9, 11)
    for line in checkpoint:
        text(line, MONO, size, size + 2.5)
    return y - 6


def _fit(text: str, font: str, size: float, max_width: float) -> list[str]:
    """Break text into lines no wider than max_width points, measured in the font (Chinese has
    no spaces to break at, so any character may start a line)."""
    lines: list[str] = []
    line = ""
    for char in text:
        if line and pdfmetrics.stringWidth(line + char, font, size) > max_width:
            lines.append(line)
            line = ""
        line += char
    return lines + [line]


def receipt_pdf(receipt: dict[str, Any]) -> bytes:
    """Render the receipt JSON (as `ReceiptOut`) to a one-page A4 PDF."""
    _ensure_font()
    out = io.BytesIO()
    pdf = canvas.Canvas(out, pagesize=A4, pageCompression=1)
    pdf.setTitle(f"电子缴款凭证 {receipt['receipt_number']}")
    pdf.setAuthor("Quanlian")
    width, height = A4
    left = 56
    y = height - 72
    pdf.setFont(CJK_FONT, 20)
    pdf.drawString(left, y, "电子缴款凭证")
    pdf.setFont("Helvetica", 10)
    pdf.drawString(left, y - 16, "Electronic payment receipt")
    pdf.setFont(CJK_FONT, 10)
    pdf.drawRightString(width - left, y, f"凭证号 No. {receipt['receipt_number']}")

    qr = ImageReader(io.BytesIO(qr_png(receipt["verification_url"], box_size=4)))
    pdf.drawImage(qr, width - left - 96, y - 130, 96, 96)
    qr_bottom = y - 150  # below the caption; rows above it stop short of the code
    pdf.setFont(CJK_FONT, 8)
    pdf.drawCentredString(width - left - 48, y - 142, "扫码核验 Scan to verify")

    payer = receipt["payer"]
    rows = [
        ("缴款码", receipt["payment_code"]),
        ("缴款项目", f"{receipt['item_name']} ({receipt['item_code']})"),
        ("缴款人", payer["name"]),
        ("证件号码", payer["id_number"]),
        ("收款单位", receipt["payee_name"]),
        ("金额（小写）", f"¥{receipt['amount']['amount']}"),
        ("金额（大写）", receipt["amount_in_words"]),
        ("支付方式", {"bank_account": "银行账户", "qr": "扫码支付"}.get(receipt["payment_method"],
                                                                   receipt["payment_method"])),
        ("付款账户", receipt.get("payer_account") or "-"),
        ("缴款时间", _local(receipt["paid_at"])),
        ("订单号", receipt["order_id"]),
        ("门户业务号", receipt["portal_reference"]),
        ("银行流水号", receipt.get("journal_entry_id") or "-"),
    ]
    y -= 52
    for label, value in rows:
        # A row that starts beside the QR code keeps all its lines clear of it.
        right = width - left - 110 if y > qr_bottom else width - left
        pdf.setFont(CJK_FONT, 11)
        pdf.drawString(left, y, label)
        lines = _fit(str(value), CJK_FONT, 11, right - (left + 96))
        for n, line in enumerate(lines):
            pdf.drawString(left + 96, y - 14 * n, line)
        y -= 14 * (len(lines) - 1)
        pdf.setLineWidth(0.3)
        pdf.line(left, y - 6, right, y - 6)
        y -= 24

    y = _evidence_block(pdf, receipt["evidence"], left=left, top=y - 12, width=width - 2 * left)
    if y < _MARGIN + 12:
        pdf.showPage()
        y = height - _MARGIN
    pdf.setFont(CJK_FONT, 9)
    pdf.drawString(left, y, "本凭证由银行开放平台签发；扫描二维码或访问核验地址可核对凭证真伪，"
                            "存证可凭上列包含证明与签名日志头离线验证。")
    y -= 12
    pdf.setFont("Helvetica", 8)
    pdf.drawString(left, y, receipt["verification_url"])
    pdf.showPage()
    pdf.save()
    return out.getvalue()
