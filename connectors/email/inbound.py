"""MIME → envelope: one raw RFC 5322 message in, one `Envelope` out (or `MalformedMessage`).

Parsing uses the standard library `email` package with `policy.default`.
Nothing in the message is trusted: every header is read through a guard,
charsets that are unknown or lie are decoded with a fallback (noted in
`meta.charset_problems`), and the limits in `EmailLimits` bound the work:
`limits.check` refuses, before parsing, what the parsers would choke on
(sizes, header fields, parameters, addresses, encoded words, boundary lines,
nesting: `MalformedMessage`, which the intake dead-letters with the raw
message's blob reference); MIME depth and part count within those are cut
(the parts are listed in `meta.skipped_parts` with the reason), and so is
HTML nested too deep to sanitize (kept as an attachment). The callers run
`normalize` under a CPU budget (`cpu_seconds`, `router.budget`).
Attachments and inline images go to the blob store; oversized ones are
listed in `meta.skipped_parts`, never dropped silently.

Only `MalformedMessage` (a `ConnectorError`) and the blob store's own
`BlobError` leave `normalize`; any other failure inside is a bug, reported
as `MalformedMessage("internal error: ...")` so the intake keeps running.
"""

from __future__ import annotations

import codecs
import hashlib
import mimetypes
import re
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email import policy
from email.header import decode_header, make_header
from email.message import Message
from email.parser import BytesParser
from email.utils import getaddresses, parsedate_to_datetime
from typing import Any

from pydantic import ValidationError

from connectors.email.config import EmailLimits
from connectors.email.errors import MalformedMessage
from connectors.email.limits import check, html_depth
from connectors.email.noise import Noise, classify
from connectors.email.text import html_to_text, sanitize_html, strip_quoted
from connectors.email.threads import (
    our_envelope_id,
    parse_msgids,
    plus_token,
    reply_context,
    subject_token,
    thread_from_headers,
)
from router.blobs import DEFAULT_MAX_ATTACHMENT, BlobStore
from router.budget import cpu_seconds_for
from router.envelope import (
    MAX_ADDRESS,
    MAX_NAME,
    MAX_REASON,
    MAX_REASONS,
    MAX_RECIPIENTS,
    Attachment,
    Automated,
    Bounce,
    BounceRecipient,
    Envelope,
    Sender,
    envelope_id,
    now_utc,
)
from router.errors import OmniError

MAX_REFERENCES = 100
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True, kw_only=True, slots=True)
class Options:
    """How to normalize (from the channel's `email:` block)."""

    limits: EmailLimits = field(default_factory=EmailLimits)
    max_attachment_bytes: int = DEFAULT_MAX_ATTACHMENT
    strip_quoted_history: bool = True
    own_address: str | None = None  # our address, to find `own+token@` plus-addresses


def native_id(raw: bytes, message_id: str | None) -> str:
    """The message's own id: its Message-ID, or a hash of its bytes when it has none."""
    return message_id or f"sha256:{hashlib.sha256(raw).hexdigest()}"


def normalize(
    raw: bytes,
    channel: str,
    blobs: BlobStore,
    options: Options | None = None,
    *,
    received_at: datetime | None = None,
) -> Envelope:
    """Turn one raw message into an inbound `message` envelope."""
    opts = options or Options()
    try:
        return _normalize(raw, channel, blobs, opts, received_at or now_utc())
    except OmniError:
        raise
    except RecursionError as exc:
        raise MalformedMessage("MIME structure nested too deeply to parse") from exc
    except MemoryError as exc:
        raise MalformedMessage("message too large to parse in memory") from exc
    except ValidationError as exc:  # e.g. a sender address over the envelope's bound
        where = "; ".join(f"{'.'.join(str(p) for p in e['loc'])}: {e['msg']}" for e in exc.errors())
        raise MalformedMessage(f"does not fit an envelope: {where}") from exc
    except Exception as exc:  # a bug, or a parser corner we have not met: never crash intake
        raise MalformedMessage(f"internal error: {type(exc).__name__}: {exc}") from exc


def cpu_seconds(size: int, limits: EmailLimits) -> float:
    """The CPU budget for normalizing a message of `size` bytes, from `limits`."""
    return cpu_seconds_for(size, base=limits.cpu_seconds, per_mib=limits.cpu_seconds_per_mib)


def normalize_cli(raw: bytes, channel: str, blobs: BlobStore, settings: Any) -> Envelope:
    """The `ConnectorSpec.normalize` entry point (`omnirouter normalize --type email`); the
    channel's settings change nothing in how a message reads."""
    return normalize(raw, channel, blobs)


# --- headers ----------------------------------------------------------------------------


class _Headers:
    """Header access that never raises: policy.default first, raw decoding as a fallback."""

    def __init__(self, msg: Message, max_len: int) -> None:
        self.msg = msg
        self.max_len = max_len
        self.defects = 0

    def __call__(self, name: str) -> str | None:
        try:
            value = self.msg.get(name)
            if value is None:
                return None
            text: str | None = str(value)
        except Exception:
            self.defects += 1
            text = self._raw(name)
        if text is None:
            return None
        return _CONTROL.sub(" ", text)[: self.max_len].strip()

    def _raw(self, name: str) -> str | None:
        for key, value in self.msg.raw_items():
            if key.lower() == name.lower():
                try:
                    return str(make_header(decode_header(str(value))))
                except Exception:
                    return str(value)
        return None

    def addresses(self, name: str) -> list[tuple[str, str]]:
        value = self(name)
        if not value:
            return []
        try:
            pairs = getaddresses([value])
        except Exception:
            self.defects += 1
            return []
        return [(n.strip(), a.strip()) for n, a in pairs if "@" in a and " " not in a.strip()]

    def every_address(self, name: str, limit: int = 20) -> list[str]:
        """The addresses in every copy of a header that may repeat (Delivered-To)."""
        try:
            values = [str(v) for v in (self.msg.get_all(name) or [])[:limit]]
            pairs = getaddresses([_CONTROL.sub(" ", v)[: self.max_len] for v in values])
        except Exception:
            self.defects += 1
            return []
        return [a.strip() for _, a in pairs if "@" in a and " " not in a.strip()]


# --- the walk over MIME parts -----------------------------------------------------------


@dataclass(slots=True)
class _Body:
    texts: list[str] = field(default_factory=list)
    htmls: list[str] = field(default_factory=list)
    attachments: list[Attachment] = field(default_factory=list)
    skipped: list[dict[str, Any]] = field(default_factory=list)
    charset_problems: list[str] = field(default_factory=list)
    truncated: bool = False
    html_depth: int = 0  # elements left open by the HTML parts so far (they are joined)


def _walk(msg: Message, blobs: BlobStore, opts: Options) -> _Body:
    body = _Body()
    limits = opts.limits
    seen = 0
    stack: list[tuple[Message, int]] = [(msg, 0)]
    while stack:
        part, depth = stack.pop()
        seen += 1
        if seen > limits.max_parts:
            rest = 1 + len(stack)
            body.skipped.append(
                {
                    "name": None,
                    "content_type": None,
                    "reason": f"more than limits.max_parts ({limits.max_parts}) MIME parts:"
                    f" {rest} more not looked at",
                }
            )
            break
        ctype = _content_type(part)
        if depth > limits.max_depth:
            body.skipped.append(
                {
                    "name": _filename(part),
                    "content_type": ctype,
                    "reason": f"nested deeper than limits.max_depth ({limits.max_depth})",
                }
            )
            continue
        if part.is_multipart() and not ctype.startswith("message/"):
            children = part.get_payload()
            if isinstance(children, list):
                stack.extend((c, depth + 1) for c in reversed(children) if isinstance(c, Message))
            continue
        _leaf(part, ctype, body, blobs, opts, index=seen)
    return body


def _content_type(part: Message) -> str:
    try:
        return part.get_content_type()
    except Exception:
        return "application/octet-stream"


def _filename(part: Message) -> str | None:
    try:
        name = part.get_filename()
    except Exception:
        return None
    if not name:
        return None
    name = _CONTROL.sub("", str(name)).replace("\\", "/").rsplit("/", 1)[-1].strip()
    return name[:255] or None


def _disposition(part: Message) -> str | None:
    try:
        return part.get_content_disposition()
    except Exception:
        return None


def _leaf(
    part: Message, ctype: str, body: _Body, blobs: BlobStore, opts: Options, *, index: int
) -> None:
    name = _filename(part)
    disposition = _disposition(part)
    is_text_body = (
        (ctype in ("text/plain", "text/html") or ctype.startswith("multipart/"))
        and disposition != "attachment"
        and name is None
    )
    data = _payload_bytes(part, ctype)
    if data is None:
        body.skipped.append(
            {"name": name, "content_type": ctype, "reason": "part cannot be decoded"}
        )
        return
    if is_text_body:
        text = _decode_text(part, data, body).replace("\r\n", "\n").replace("\r", "\n")
        limit = opts.limits.max_text_chars
        if len(text) > limit:
            text = text[:limit]
            body.truncated = True
        if ctype != "text/html":
            body.texts.append(text)
            return
        deepest, open_after = html_depth(text, body.html_depth)
        most = opts.limits.max_html_depth
        if deepest <= most:
            body.htmls.append(text)
            body.html_depth = open_after
            return
        body.skipped.append(
            {
                "name": name,
                "content_type": ctype,
                "reason": f"HTML nested deeper than limits.max_html_depth ({most}):"
                " kept as an attachment, not as the body",
            }
        )
    if len(data) > opts.max_attachment_bytes:
        body.skipped.append(
            {
                "name": name,
                "content_type": ctype,
                "size": len(data),
                "reason": f"larger than max_attachment_bytes ({opts.max_attachment_bytes})",
            }
        )
        return
    sha, ref = blobs.put(data)
    if name is None:
        ext = ".eml" if ctype == "message/rfc822" else (mimetypes.guess_extension(ctype) or "")
        name = f"part-{index}{ext}"
    body.attachments.append(
        Attachment(name=name, content_type=ctype, size=len(data), sha256=sha, ref=ref)
    )


def _payload_bytes(part: Message, ctype: str) -> bytes | None:
    try:
        if ctype.startswith("message/") or part.is_multipart():
            payload = part.get_payload()
            if isinstance(payload, list):
                chunks = []
                for inner in payload:
                    if isinstance(inner, Message):
                        chunks.append(_serialize(inner))
                return b"\n".join(chunks)
        data = part.get_payload(decode=True)
    except Exception:
        return None
    if data is None:
        raw = part.get_payload()
        return raw.encode("utf-8", "replace") if isinstance(raw, str) else None
    return data if isinstance(data, bytes) else None


def _serialize(msg: Message) -> bytes:
    try:
        return msg.as_bytes()
    except Exception:
        return msg.as_string().encode("utf-8", "replace")


def _decode_text(part: Message, data: bytes, body: _Body) -> str:
    try:
        charset = part.get_content_charset() or "us-ascii"
    except Exception:
        charset = "us-ascii"
    try:
        codecs.lookup(charset)
    except (LookupError, ValueError):
        body.charset_problems.append(f"unknown charset {charset[:40]!r}")
        charset = "utf-8"
    try:
        return data.decode(charset)
    except UnicodeDecodeError:
        pass
    except Exception:  # exotic codecs can fail in other ways
        charset = "utf-8"
    for fallback in ("utf-8", "windows-1252"):
        if fallback == charset:
            continue
        try:
            text = data.decode(fallback)
        except UnicodeDecodeError:
            continue
        body.charset_problems.append(f"declared {charset[:40]!r}, read as {fallback}")
        return text
    body.charset_problems.append(f"invalid bytes for {charset[:40]!r}, replaced")
    return data.decode(charset, errors="replace")


# --- the envelope ------------------------------------------------------------------------


def _sent_at(value: str | None) -> datetime | None:
    if not value:
        return None
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when is None:
        return None
    return when if when.tzinfo is not None else when.replace(tzinfo=UTC)


def _normalize(
    raw: bytes, channel: str, blobs: BlobStore, opts: Options, received_at: datetime
) -> Envelope:
    limits = opts.limits
    check(raw, limits)
    msg = BytesParser(policy=policy.default).parsebytes(raw)
    header = _Headers(msg, max_len=limits.max_header_bytes)

    ids = parse_msgids(header("message-id"))
    message_id = ids[0] if ids else None
    native = native_id(raw, message_id)

    sender = None
    for name in ("from", "sender", "reply-to", "return-path"):
        found = header.addresses(name)
        if found:
            sender = found[0]
            break
    if sender is None:
        raise MalformedMessage(
            "no sender address (From, Sender, Reply-To and Return-Path missing or unreadable)"
        )
    display, address = sender

    subject = header("subject")
    in_reply_to = parse_msgids(header("in-reply-to"))
    references = parse_msgids(header("references"))
    if len(references) > MAX_REFERENCES:  # keep the root and the most recent ones
        references = references[:1] + references[-(MAX_REFERENCES - 1) :]
    thread = thread_from_headers(message_id, in_reply_to, references, fallback=native)

    to = [a for _, a in header.addresses("to")]
    cc = [a for _, a in header.addresses("cc")]
    reply_to = [a for _, a in header.addresses("reply-to")]
    delivered_to = list(
        dict.fromkeys(
            a
            for name in ("delivered-to", "x-original-to", "envelope-to")
            for a in header.every_address(name)
        )
    )
    token = subject_token(subject) or plus_token(to + cc, opts.own_address)

    body = _walk(msg, blobs, opts)
    full_text = "\n\n".join(t.strip("\n") for t in body.texts if t.strip())
    html_raw = "\n".join(body.htmls) if body.htmls else None
    if not full_text and html_raw:
        full_text = html_to_text(html_raw)
    text = strip_quoted(full_text) if opts.strip_quoted_history else full_text.strip()
    html = sanitize_html(html_raw) if html_raw else None

    noise = classify(msg, header, subject)

    meta: dict[str, Any] = {
        "message_id": message_id,
        "in_reply_to": in_reply_to[0] if in_reply_to else None,
        "references": references,
        "to": to,
        "cc": cc,
        "thread_source": thread.source,
        "auto_submitted": noise.auto_submitted,
        "size": len(raw),
    }
    if message_id is None:
        meta["native_id"] = native
    if reply_to:
        meta["reply_to"] = reply_to
    if delivered_to:
        meta["delivered_to"] = delivered_to
    if token:
        meta["conversation_ref"] = token
    if text != full_text.strip():
        meta["full_text"] = full_text
    if body.skipped:
        meta["skipped_parts"] = body.skipped
    if body.charset_problems:
        meta["charset_problems"] = body.charset_problems[:20]
    if body.truncated:
        meta["truncated"] = True
    defects = header.defects + len(getattr(msg, "defects", []) or [])
    if defects:
        meta["defects"] = defects

    return Envelope(
        id=envelope_id(channel, native),
        kind="message",
        direction="in",
        channel=channel,
        channel_type="email",
        thread_key=_utf8(thread.key),
        sender=Sender(address=_utf8(address), name=_utf8(display) or None, role="customer"),
        sent_at=_sent_at(header("date")),
        received_at=received_at,
        subject=_utf8(subject),
        text=_utf8(text),
        html=_utf8(html),
        attachments=body.attachments,
        automated=_automated(noise),
        reply_context=_utf8(reply_context(address, message_id, references)),
        meta=_utf8(meta),
    )


def _automated(noise: Noise) -> Automated | None:
    """The noise verdict as the envelope's typed part (None: a person wrote it)."""
    if not (noise.auto or noise.is_auto_reply or noise.bounce is not None):
        return None
    bounce = None
    if noise.bounce is not None:
        original = noise.bounce.get("original_message_id")
        recipients = [
            BounceRecipient(
                **{
                    key: _utf8(_bounded(r.get(key), MAX_ADDRESS if key in _LONG else MAX_NAME))
                    for key in ("address", "action", "status", "diagnostic")
                }
            )
            for r in noise.bounce.get("recipients", [])[:MAX_RECIPIENTS]
        ]
        bounce = Bounce(
            envelope_id=our_envelope_id(original) if isinstance(original, str) else None,
            original_id=_utf8(_bounded(original, MAX_ADDRESS)),
            recipients=recipients,
        )
    return Automated(
        auto=noise.auto,
        auto_reply=noise.is_auto_reply,
        bounce=bounce,
        reasons=[_utf8(r[:MAX_REASON]) for r in noise.reasons[:MAX_REASONS]],
    )


_LONG = ("address", "diagnostic")


def _bounded(value: object, limit: int) -> str | None:
    return value[:limit] if isinstance(value, str) else None


def _utf8(value: Any) -> Any:
    """Strings made valid UTF-8: raw bytes the parser kept as surrogates become U+FFFD."""
    if isinstance(value, str):
        try:
            value.encode("utf-8")
            return value
        except UnicodeEncodeError:
            return value.encode("utf-8", "surrogatepass").decode("utf-8", "replace")
    if isinstance(value, dict):
        return {_utf8(k): _utf8(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_utf8(v) for v in value]
    return value
