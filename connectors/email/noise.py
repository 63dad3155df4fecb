"""Loop and noise protection: is this mail from a machine, and is it a bounce?

Mail that a machine sent gets no acknowledgement and opens no conversation
(`meta.auto` true, with `meta.auto_reasons`); we must never answer a robot
that answers us. Signals (RFC 3834, RFC 2369, RFC 3464, and what Exchange
and list software really send):

- `Auto-Submitted` other than `no`;
- `Precedence: bulk | list | junk | auto_reply`;
- `X-Auto-Response-Suppress` (Exchange sets it on its automatic mail);
- `List-Id`, `List-Unsubscribe`, `List-Post` and the other list headers;
- a `Return-Path` that is empty or `<>` (the null sender of bounces);
- a delivery-status report (`multipart/report; report-type=delivery-status`),
  parsed into `meta.bounce`: the Message-ID it bounces and, per recipient,
  action, status and diagnostic, so the router can record the delivery
  failure against the message that failed.

Out-of-office replies (`Auto-Submitted: auto-replied`, `X-Autoreply`,
`X-Autorespond`, or a vacation subject) are flagged `meta.is_auto_reply`:
they stay in the transcript but reset no SLA and trigger no acknowledgement.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from email.message import Message
from typing import Any

from connectors.email.threads import parse_msgids

_LIST_HEADERS = ("list-id", "list-unsubscribe", "list-post", "list-help", "list-owner")
_BULK = {"bulk", "list", "junk", "auto_reply"}
_OOO_SUBJECT = re.compile(
    r"^\s*(out of (the )?office|automatic reply|auto(matic)?[- ]?reply|autoreply|auto:|"
    r"abwesenheit|fuera de (la )?oficina|respuesta autom[aá]tica|r[ée]ponse automatique|"
    r"absence|vacation|on vacation|away from)",
    re.I,
)


@dataclass(slots=True)
class Noise:
    auto: bool = False
    reasons: list[str] = field(default_factory=list)
    auto_submitted: str | None = None
    is_auto_reply: bool = False
    is_bounce: bool = False
    bounce: dict[str, Any] | None = None


def classify(msg: Message, header: Any, subject: str | None) -> Noise:
    """Look at the headers and structure of a parsed message.

    `header(name)` returns a header's decoded value or None (never raises).
    """
    noise = Noise()
    auto_submitted = header("auto-submitted")
    if auto_submitted is not None:
        noise.auto_submitted = auto_submitted.strip()
        if noise.auto_submitted.lower().split(";")[0].strip() != "no":
            noise.reasons.append(f"auto-submitted: {noise.auto_submitted}")
            if noise.auto_submitted.lower().startswith("auto-replied"):
                noise.is_auto_reply = True
    precedence = (header("precedence") or "").strip().lower()
    if precedence in _BULK:
        noise.reasons.append(f"precedence: {precedence}")
        if precedence == "auto_reply":
            noise.is_auto_reply = True
    if header("x-auto-response-suppress") is not None:
        noise.reasons.append("x-auto-response-suppress")
    for name in _LIST_HEADERS:
        if header(name) is not None:
            noise.reasons.append(f"mailing list ({name})")
            break
    return_path = header("return-path")
    if return_path is not None and return_path.strip() in ("", "<>"):
        noise.reasons.append("null return path")
    if header("x-autoreply") is not None or header("x-autorespond") is not None:
        noise.is_auto_reply = True
        noise.reasons.append("x-autoreply")
    if noise.reasons and subject and _OOO_SUBJECT.match(subject):
        # A vacation subject counts only when another signal agrees: a customer
        # may well write "Out of office hours?".
        noise.is_auto_reply = True
    bounce = _delivery_report(msg)
    if bounce is not None:
        noise.is_bounce = True
        noise.bounce = bounce
        noise.reasons.append("delivery-status report")
    noise.auto = bool(noise.reasons)
    return noise


def _delivery_report(msg: Message) -> dict[str, Any] | None:
    if msg.get_content_type() != "multipart/report":
        return None
    if str(msg.get_param("report-type") or "").lower() != "delivery-status":
        return None
    original: str | None = None
    recipients: list[dict[str, str | None]] = []
    for part in msg.walk():
        ctype = part.get_content_type()
        if ctype == "message/delivery-status":
            recipients.extend(_recipients(part))
        elif ctype in ("message/rfc822", "text/rfc822-headers", "message/rfc822-headers"):
            original = original or _original_id(part)
    return {"original_message_id": original, "recipients": recipients}


def _recipients(part: Message) -> list[dict[str, str | None]]:
    payload = part.get_payload()
    blocks: list[Message] = (
        [b for b in payload if isinstance(b, Message)] if isinstance(payload, list) else []
    )
    found = []
    for block in blocks[1:] if len(blocks) > 1 else blocks:  # the first block is per-message
        final = _str(block.get("final-recipient")) or _str(block.get("original-recipient"))
        if final is None:
            continue
        address = final.split(";", 1)[-1].strip()
        found.append(
            {
                "address": address,
                "action": (_str(block.get("action")) or "").lower() or None,
                "status": _str(block.get("status")),
                "diagnostic": _str(block.get("diagnostic-code")),
            }
        )
    return found


def _original_id(part: Message) -> str | None:
    if part.get_content_type() == "message/rfc822":
        payload = part.get_payload()
        inner = payload[0] if isinstance(payload, list) and payload else None
        if isinstance(inner, Message):
            ids = parse_msgids(_str(inner.get("message-id")))
            return ids[0] if ids else None
        return None
    raw = part.get_payload(decode=True)
    if not isinstance(raw, bytes):
        return None
    match = re.search(rb"^message-id:\s*(<[^>\r\n]+>)", raw, re.I | re.M)
    return match.group(1).decode("ascii", "replace") if match else None


def _str(value: object) -> str | None:
    if value is None:
        return None
    try:
        return str(value).strip()
    except Exception:  # a header that cannot even be printed
        return None
