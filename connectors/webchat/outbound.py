"""Outgoing envelopes to widget frames (pure): what the visitor's session shows."""

from __future__ import annotations

from typing import Any

from connectors.webchat.tokens import VISITOR
from router.envelope import Envelope


class Unsendable(ValueError):
    """The envelope can never reach a chat session; the message says why."""


def visitor_of(envelope: Envelope) -> str:
    if envelope.direction != "out":
        raise Unsendable("not an outbound envelope (direction in)")
    if envelope.kind != "reply":
        raise Unsendable(f"a web chat only shows replies, not {envelope.kind!r}")
    if not VISITOR.match(envelope.thread_key):
        raise Unsendable("thread_key is not a web chat session")
    shows = envelope.text.strip() or envelope.attachments or envelope.standing or envelope.signal
    if not shows:
        raise Unsendable("the reply has no text and no files")
    return envelope.thread_key


def to_frames(envelope: Envelope) -> list[tuple[dict[str, Any], str]]:
    """The numbered frames an outgoing envelope shows, each with its dedup key (a
    redelivery shows nothing twice): its `msg` when it has text or files, then its
    `standing` when it has one, or its `assigned` frame. A `seen` signal is numbered too,
    but the session writes its `upto` (`seen_frame`); a `typing` one is not numbered
    (`typing_frame`)."""
    frames = []
    if envelope.text.strip() or envelope.attachments:
        frames.append((to_frame(envelope), f"o:{envelope.id}"))
    if envelope.standing is not None:
        frames.append((standing_frame(envelope), f"o:{envelope.id}:standing"))
    if envelope.signal == "assigned":
        frames.append((assigned_frame(envelope), f"o:{envelope.id}:assigned"))
    return frames


def assigned_frame(envelope: Envelope) -> dict[str, Any]:
    """The agent named now has the chat (on assignment, and again after a hand-over);
    without its `seq`."""
    return {
        "t": "assigned",
        "id": envelope.id,
        "name": envelope.sender.name,
        "at": envelope.received_at.isoformat(),
    }


def standing_frame(envelope: Envelope) -> dict[str, Any]:
    """Where the waiting visitor stands, as of `at`; without its `seq`."""
    standing = envelope.standing
    assert standing is not None
    return {
        "t": "standing",
        "id": envelope.id,
        "position": standing.position,
        "queue": standing.queue,
        "due": standing.due.isoformat() if standing.due else None,
        "wait": standing.wait,
        "at": envelope.received_at.isoformat(),
    }


def to_frame(envelope: Envelope) -> dict[str, Any]:
    """The `msg` frame of a reply, without its `seq` (the session gives it)."""
    agent = envelope.sender.role == "agent"
    frame: dict[str, Any] = {
        "t": "msg",
        "id": envelope.id,
        "from": "agent" if agent else "system",
        "text": envelope.text,
        "at": envelope.received_at.isoformat(),
    }
    if agent and envelope.sender.name:
        frame["name"] = envelope.sender.name
    purpose = envelope.meta.get("purpose")
    if isinstance(purpose, str):
        frame["purpose"] = purpose
    return frame


def typing_frame(envelope: Envelope) -> dict[str, Any] | None:
    """The transient `typing` frame of a `typing` signal (None for anything else): shown
    to the sockets open now, never numbered nor replayed; the widget lets it expire."""
    if envelope.signal != "typing":
        return None
    return {"t": "typing", "name": envelope.sender.name, "at": envelope.received_at.isoformat()}


def seen_frame(envelope: Envelope, upto: int) -> dict[str, Any]:
    """The `seen` frame: the agent has read the visitor's messages numbered up to `upto`
    (those taken in by `at`); without its own `seq`."""
    return {
        "t": "seen",
        "id": envelope.id,
        "upto": upto,
        "name": envelope.sender.name,
        "at": envelope.received_at.isoformat(),
    }
