"""Widget frames in (pure): a client frame parsed and checked, a visitor message made an
envelope. The frames are those of docs/webchat.md."""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import orjson

from connectors.webchat.errors import BadFrame
from connectors.webchat.files import MAX_FILES, SHA
from router.envelope import (
    REQUESTED,
    Attachment,
    Call,
    Envelope,
    Sender,
    StatedIdentity,
    envelope_id,
)

CID = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# A phone number as people type it: the router reads it (with the region of the channel
# that calls back) and says so in the chat when it cannot.
PHONE = re.compile(r"^\+?[0-9 ().-]{5,32}$")
FORM_FIELDS = ("name", "email", "phone", "topic")
MAX_FORM_FIELD = 320


@dataclass(frozen=True, slots=True)
class Hello:
    session: str | None
    last: int
    identity: str | None
    form: dict[str, str] = field(default_factory=dict)
    lang: str | None = None


@dataclass(frozen=True, slots=True)
class Msg:
    cid: str
    text: str
    files: tuple[str, ...] = ()  # sha256s of files this session uploaded


@dataclass(frozen=True, slots=True)
class Callback:
    """ "Call me back": on `phone`, or (None) the number the pre-chat form stated."""

    cid: str
    phone: str | None


@dataclass(frozen=True, slots=True)
class Transcript:
    """ "Email me the transcript", to the address the visitor agreed to be answered at."""

    cid: str


@dataclass(frozen=True, slots=True)
class Ping:
    pass


@dataclass(frozen=True, slots=True)
class Form:
    """The pre-chat (or leave-a-message) form, sent once the visitor agreed to the
    consent line; `reply_by_email`: they asked to be answered by email."""

    fields: dict[str, str]
    reply_by_email: bool = False


Frame = Hello | Msg | Callback | Transcript | Ping | Form


def _str(obj: dict[str, Any], name: str, *, limit: int = 4096) -> str | None:
    value = obj.get(name)
    if value is None:
        return None
    if not isinstance(value, str) or len(value) > limit:
        raise BadFrame(f"{name}: expected a string of at most {limit} characters")
    return value


def _form(form: Any) -> dict[str, str]:
    if not isinstance(form, dict):
        raise BadFrame("form: expected an object")
    fields = {k: _str(form, k, limit=MAX_FORM_FIELD) for k in FORM_FIELDS}
    return {k: v.strip() for k, v in fields.items() if v and v.strip()}


def _files(value: Any) -> tuple[str, ...]:
    if (
        not isinstance(value, list)
        or len(value) > MAX_FILES
        or not all(isinstance(v, str) and SHA.match(v) for v in value)
    ):
        raise BadFrame(f"files: expected at most {MAX_FILES} uploaded files' sha256")
    return tuple(dict.fromkeys(value))


def parse(data: str | bytes) -> Frame:
    """One client frame; raises `BadFrame` naming what is wrong."""
    try:
        obj = orjson.loads(data)
    except orjson.JSONDecodeError:
        raise BadFrame("frame is not JSON") from None
    if not isinstance(obj, dict):
        raise BadFrame("frame is not a JSON object")
    kind = obj.get("t")
    if kind == "ping":
        return Ping()
    if kind in ("msg", "callback", "transcript"):
        cid = obj.get("cid")
        if not isinstance(cid, str) or not CID.match(cid):
            raise BadFrame("cid: expected 1-64 of A-Z a-z 0-9 _ -")
    if kind == "msg":
        files = _files(obj.get("files", []))
        text = obj.get("text", "" if files else None)
        if not isinstance(text, str) or not (text.strip() or files):
            raise BadFrame("text: expected a non-empty string")
        return Msg(obj["cid"], text, files)
    if kind == "transcript":
        return Transcript(obj["cid"])
    if kind == "callback":
        phone = (_str(obj, "phone", limit=MAX_FORM_FIELD) or "").strip() or None
        return Callback(obj["cid"], phone)
    if kind == "hello":
        last = obj.get("last", 0)
        if not isinstance(last, int) or isinstance(last, bool) or last < 0:
            raise BadFrame("last: expected a sequence number (0 for none)")
        return Hello(
            session=_str(obj, "session"),
            last=last,
            identity=_str(obj, "identity"),
            form=_form(obj.get("form") or {}),
            lang=_str(obj, "lang", limit=16),
        )
    if kind == "form":
        if obj.get("consent") is not True:
            raise BadFrame("consent: the visitor must agree to the consent line first")
        fields = _form(obj.get("fields") or {})
        by_email = obj.get("reply_by_email", False)
        if not isinstance(by_email, bool):
            raise BadFrame("reply_by_email: expected true or false")
        if by_email and "email" not in fields:
            raise BadFrame("reply_by_email: needs an email")
        return Form(fields, by_email)
    raise BadFrame("t: expected hello, msg, callback, transcript, form or ping")


def to_envelope(
    channel: str,
    visitor: str,
    msg: Msg,
    *,
    sender: str,
    name: str | None,
    identities: list[tuple[str, str]],
    received_at: datetime,
    subject: str | None = None,
    meta: dict[str, Any] | None = None,
    attachments: list[Attachment] | None = None,
    answer_at: str | None = None,
) -> Envelope:
    """A visitor message. Its id comes from the session and the client id: a resend of the
    same message is the same envelope, which the router drops. The form's topic is the
    subject (routing rules read it); `meta` adds what the agent should know; `answer_at`
    is the email the visitor agreed to be answered at too."""
    return Envelope(
        id=envelope_id(channel, f"{visitor}:{msg.cid}"),
        kind="message",
        direction="in",
        channel=channel,
        channel_type="webchat",
        thread_key=visitor,  # the session is the thread
        sender=Sender(address=sender, name=name, role="customer"),
        received_at=received_at,
        subject=subject,
        text=msg.text,
        attachments=attachments or [],
        identities=[StatedIdentity(kind=k, value=v) for k, v in identities],
        answer_at=_email(answer_at),
        reply_context={"visitor": visitor},
        meta={"cid": msg.cid, **(meta or {})},
    )


def _email(address: str | None) -> StatedIdentity | None:
    return None if address is None else StatedIdentity(kind="email", value=address)


def transcript_envelope(
    channel: str,
    visitor: str,
    frame: Transcript,
    answer_at: str,
    *,
    sender: str,
    received_at: datetime,
) -> Envelope:
    """ "Email me the transcript": asked of the router, to the email the visitor agreed to
    be answered at. Its id, like a message's, comes from the session and the client id."""
    return Envelope(
        id=envelope_id(channel, f"{visitor}:{frame.cid}"),
        kind="message",
        direction="in",
        channel=channel,
        channel_type="webchat",
        thread_key=visitor,
        sender=Sender(address=sender, role="customer"),
        received_at=received_at,
        request="transcript",
        answer_at=_email(answer_at),
        reply_context={"visitor": visitor},
        meta={"cid": frame.cid},
    )


def callback_envelope(
    channel: str,
    visitor: str,
    frame: Callback,
    phone: str,
    *,
    sender: str,
    name: str | None,
    identities: list[tuple[str, str]],
    received_at: datetime,
) -> Envelope:
    """A visitor's "call me back": a `requested` call part, the number a stated `phone`
    identity (the only one). Its id, like a message's, comes from the session and the
    client id."""
    others = [StatedIdentity(kind=k, value=v) for k, v in identities if k != "phone"]
    native = f"{visitor}:{frame.cid}"
    return Envelope(
        id=envelope_id(channel, native),
        kind="call",
        direction="in",
        channel=channel,
        channel_type="webchat",
        thread_key=visitor,
        sender=Sender(address=sender, name=name, role="customer"),
        received_at=received_at,
        text=callback_text(phone),
        identities=[*others, StatedIdentity(kind="phone", value=phone)],
        reply_context={"visitor": visitor},
        call=Call(id=f"webchat:{native}", direction="inbound", disposition=REQUESTED),
        meta={"cid": frame.cid},
    )


def callback_text(phone: str) -> str:
    return f"Please call me back on {phone}"
