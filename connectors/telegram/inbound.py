"""Telegram updates, read: pure functions from an Update (a JSON object) to what it says.

`read(update)` gives a `Message` (a new or edited message: text or caption, the
files it carries, a shared contact, a `/start` payload), a `Press` (an inline
button pressed: a callback query) or `Skip` (an update kind we do not serve).
`customer_envelope` turns a customer's `Message` into the envelope, once its
files are in the blob store (the client downloads them).

Ids: a message is `<chat id>:<message id>` (an edit adds `:edit:<edit_date>`), so
the same update delivered again (a webhook retry, a replayed `update_id`, a poll
after a restart) gives the same envelope id and the router drops the repeat.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from connectors.telegram.errors import BadUpdate
from connectors.telegram.identity import shared_contact
from router.envelope import Attachment, Envelope, Sender, StatedIdentity, envelope_id

# The Bot API's getFile limit: a larger file cannot be downloaded by a bot.
MAX_DOWNLOAD_BYTES = 20 * 1024 * 1024
MESSAGE_KINDS = ("message", "edited_message")
# What the bot asks Telegram for (getUpdates and setWebhook).
ALLOWED_UPDATES = ["message", "edited_message", "callback_query"]


@dataclass(frozen=True, slots=True)
class FileRef:
    """A file a message carries, to fetch with getFile."""

    file_id: str
    name: str
    content_type: str
    size: int | None  # as Telegram states it (None: not stated)


@dataclass(frozen=True, kw_only=True, slots=True)
class Message:
    update_id: int
    chat_id: int
    chat_type: str
    message_id: int
    user_id: int
    name: str | None
    username: str | None
    text: str
    sent_at: datetime
    edited_at: datetime | None = None
    reply_to: int | None = None  # the message id this one answers (a Telegram reply)
    files: tuple[FileRef, ...] = ()
    identities: tuple[StatedIdentity, ...] = ()
    start_payload: str | None = None

    @property
    def native_id(self) -> str:
        base = f"{self.chat_id}:{self.message_id}"
        if self.edited_at is None:
            return base
        return f"{base}:edit:{int(self.edited_at.timestamp())}"


@dataclass(frozen=True, kw_only=True, slots=True)
class Press:
    update_id: int
    callback_id: str
    user_id: int
    name: str | None
    chat_id: int | None
    message_id: int | None  # the message whose button was pressed (the card)
    data: str


@dataclass(frozen=True, slots=True)
class Skip:
    update_id: int
    what: str  # the update kind, for the log


Update = Message | Press | Skip


def update_id_of(update: Mapping[str, Any]) -> int:
    value = update.get("update_id")
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise BadUpdate("update_id: missing or not a non-negative integer")
    return value


def read(update: Mapping[str, Any]) -> Update:
    """What an update says; `BadUpdate` naming the field when it is not of the documented shape."""
    uid = update_id_of(update)
    for kind in MESSAGE_KINDS:
        if kind in update:
            return _message(uid, _obj(update, kind), edited=kind == "edited_message")
    if "callback_query" in update:
        return _press(uid, _obj(update, "callback_query"))
    kinds = sorted(k for k in update if k != "update_id")
    return Skip(uid, kinds[0] if kinds else "empty")


def _obj(parent: Mapping[str, Any], key: str, where: str = "") -> Mapping[str, Any]:
    value = parent.get(key)
    if not isinstance(value, Mapping):
        raise BadUpdate(f"{where}{key}: missing or not an object")
    return value


def _int(parent: Mapping[str, Any], key: str, where: str) -> int:
    value = parent.get(key)
    if isinstance(value, bool) or not isinstance(value, int):
        raise BadUpdate(f"{where}{key}: missing or not an integer")
    return value


def _str(parent: Mapping[str, Any], key: str) -> str | None:
    value = parent.get(key)
    return value if isinstance(value, str) else None


def _when(seconds: int) -> datetime:
    try:
        return datetime.fromtimestamp(seconds, UTC)
    except (OverflowError, OSError, ValueError):
        raise BadUpdate("date: not a Unix time") from None


def _name(user: Mapping[str, Any]) -> str | None:
    parts = [p for p in (_str(user, "first_name"), _str(user, "last_name")) if p]
    return " ".join(parts)[:100] or None


def _message(uid: int, msg: Mapping[str, Any], *, edited: bool) -> Message:
    where = "edited_message." if edited else "message."
    chat = _obj(msg, "chat", where)
    user = _obj(msg, "from", where)
    user_id = _int(user, "id", where + "from.")
    text = _str(msg, "text") or _str(msg, "caption") or ""
    start = None
    if text.startswith("/start") and text[6:7] in ("", " "):
        start = text[7:].strip() or None
    reply = msg.get("reply_to_message")
    contact = msg.get("contact")
    return Message(
        update_id=uid,
        chat_id=_int(chat, "id", where + "chat."),
        chat_type=_str(chat, "type") or "private",
        message_id=_int(msg, "message_id", where),
        user_id=user_id,
        name=_name(user),
        username=_str(user, "username"),
        text=text,
        sent_at=_when(_int(msg, "date", where)),
        edited_at=_when(_int(msg, "edit_date", where)) if edited else None,
        reply_to=reply.get("message_id") if isinstance(reply, Mapping) else None,
        files=tuple(_files(msg)),
        identities=tuple(
            shared_contact(str(user_id), contact) if isinstance(contact, Mapping) else ()
        ),
        start_payload=start,
    )


def _files(msg: Mapping[str, Any]) -> list[FileRef]:
    found: list[FileRef] = []
    photos = msg.get("photo")
    if isinstance(photos, list) and photos:
        # Telegram sends each size of the photo; the last is the largest.
        best = photos[-1]
        if isinstance(best, Mapping) and isinstance(best.get("file_id"), str):
            found.append(_ref(best, "photo.jpg", "image/jpeg"))
    for kind, default_name, default_type in (
        ("document", "document", "application/octet-stream"),
        ("voice", "voice.ogg", "audio/ogg"),
        ("audio", "audio", "audio/mpeg"),
        ("video", "video.mp4", "video/mp4"),
    ):
        item = msg.get(kind)
        if isinstance(item, Mapping) and isinstance(item.get("file_id"), str):
            found.append(_ref(item, default_name, default_type))
    return found


def _ref(item: Mapping[str, Any], name: str, content_type: str) -> FileRef:
    size = item.get("file_size")
    return FileRef(
        file_id=str(item["file_id"]),
        name=(_str(item, "file_name") or name)[:200],
        content_type=_str(item, "mime_type") or content_type,
        size=size if isinstance(size, int) and not isinstance(size, bool) else None,
    )


def _press(uid: int, query: Mapping[str, Any]) -> Press:
    where = "callback_query."
    user = _obj(query, "from", where)
    msg = query.get("message")
    chat = msg.get("chat") if isinstance(msg, Mapping) else None
    callback_id = _str(query, "id")
    if not callback_id:
        raise BadUpdate(f"{where}id: missing")
    return Press(
        update_id=uid,
        callback_id=callback_id,
        user_id=_int(user, "id", where + "from."),
        name=_name(user),
        chat_id=chat.get("id") if isinstance(chat, Mapping) else None,
        message_id=msg.get("message_id") if isinstance(msg, Mapping) else None,
        data=_str(query, "data") or "",
    )


@dataclass(frozen=True, kw_only=True, slots=True)
class Files:
    """A message's files once fetched: in the blob store, or why not (a note for the agent)."""

    attachments: list[Attachment] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def too_large_note(ref: FileRef) -> str:
    size = f"{ref.size / 1024 / 1024:.1f} MB" if ref.size else "over 20 MB"
    return (
        f"[The customer sent {ref.name} ({size}), over the 20 MB a Telegram bot may"
        " download: ask them for it another way.]"
    )


def customer_envelope(
    channel: str,
    msg: Message,
    *,
    files: Files,
    received_at: datetime,
    linked: StatedIdentity | None = None,
) -> Envelope:
    """A customer's message (or edit) as the envelope for `omni.inbound`."""
    text = "\n".join([msg.text, *files.notes]).strip()
    identities = list(msg.identities) + ([linked] if linked is not None else [])
    meta: dict[str, Any] = {
        "update_id": msg.update_id,
        "message_id": msg.message_id,
        "chat_id": msg.chat_id,
        "chat_type": msg.chat_type,
    }
    if msg.username:
        meta["username"] = msg.username
    if msg.edited_at is not None:
        # Kept as an edit: the transcript shows the new text next to the original.
        meta["edit_of"] = envelope_id(channel, f"{msg.chat_id}:{msg.message_id}")
    if msg.reply_to is not None:
        meta["reply_to"] = msg.reply_to
    return Envelope(
        id=envelope_id(channel, msg.native_id),
        kind="message",
        direction="in",
        channel=channel,
        channel_type="telegram",
        thread_key=str(msg.chat_id),
        sender=Sender(address=str(msg.user_id), name=msg.name, role="customer"),
        sent_at=msg.edited_at or msg.sent_at,
        received_at=received_at,
        text=text,
        attachments=files.attachments,
        identities=identities,
        reply_context={"chat_id": msg.chat_id, "message_id": msg.message_id},
        meta=meta,
    )
