"""Threading: which conversation an email belongs to.

The thread key is the Message-ID of the thread's first message, found in
this order:

1. the first entry of `References` (RFC 5322 keeps the root first);
2. `In-Reply-To`;
3. the conversation token our own outbound mail carries, as `[#ref]` in the
   subject or as the plus-address of our Reply-To (`support+ref@example.com`),
   looked up in the ref → (root, customer address) map the sender keeps in
   the checkpoint store, and honoured only when the mail comes from that
   customer's address (so a stranger quoting a token joins no one's thread);
4. otherwise the message's own Message-ID: it starts a new thread.

Steps 1, 2 and 4 need only the message (`thread_from_headers`); step 3 needs
the store and runs in the intake (`resolve_token`).
"""

from __future__ import annotations

import re
import secrets
from dataclasses import dataclass
from typing import Any

import orjson

from router.connector import Checkpoints
from router.envelope import Envelope

_MSGID = re.compile(r"<([^<>\s]{1,998})>")
_SUBJECT_TOKEN = re.compile(r"\[#([A-Za-z0-9]{4,32})\]")
_PLUS_TOKEN = re.compile(r"^([^+@\s]+)\+([A-Za-z0-9]{4,32})@(.+)$")
_REPLY_PREFIX = re.compile(r"^\s*((re|aw|sv|vs|antw|odp|r|rif|res|ynt)\s*(\[\d+\])?\s*:\s*)+", re.I)

TOKEN_ALPHABET = "abcdefghjkmnpqrstuvwxyz23456789"  # noqa: S105  (no 0/o, 1/l/i)


def new_conversation_ref(length: int = 8) -> str:
    """A short random conversation token (the router may use this to make one)."""
    return "".join(secrets.choice(TOKEN_ALPHABET) for _ in range(length))


def parse_msgids(value: str | None) -> list[str]:
    """Message-IDs in a header value, in order, each as `<id>`; tolerant of junk."""
    if not value:
        return []
    found = [f"<{m}>" for m in _MSGID.findall(value)]
    if found:
        return found
    # Some clients drop the angle brackets: accept bare id@host words.
    return [f"<{w}>" for w in value.split() if "@" in w and len(w) < 998]


@dataclass(frozen=True, slots=True)
class Thread:
    key: str
    source: str  # "references" | "in_reply_to" | "token" | "message_id"


def thread_from_headers(
    message_id: str | None, in_reply_to: list[str], references: list[str], fallback: str
) -> Thread:
    """Steps 1, 2 and 4: the thread root from the message's own headers."""
    if references:
        return Thread(references[0], "references")
    if in_reply_to:
        return Thread(in_reply_to[0], "in_reply_to")
    return Thread(message_id or fallback, "message_id")


def subject_token(subject: str | None) -> str | None:
    if not subject:
        return None
    found = _SUBJECT_TOKEN.findall(subject)
    return found[-1].lower() if found else None


def plus_token(addresses: list[str], own_address: str | None) -> str | None:
    """The token in a plus-address of ours among the recipients (`own+token@domain`)."""
    if not own_address or "@" not in own_address:
        return None
    local, _, domain = own_address.lower().partition("@")
    for addr in addresses:
        m = _PLUS_TOKEN.match(addr.lower())
        if m and m.group(1) == local and m.group(3) == domain:
            return m.group(2)
    return None


def plus_address(own_address: str, token: str) -> str:
    local, _, domain = own_address.partition("@")
    return f"{local}+{token}@{domain}"


def with_token(subject: str, token: str) -> str:
    """The subject with `[#token]` at its end, once."""
    tag = f"[#{token}]"
    return subject if tag.lower() in subject.lower() else f"{subject} {tag}".strip()


def reply_subject(subject: str | None) -> str:
    """`Re: subject`, without piling up prefixes (`Re: Re: AW:` becomes `Re:`)."""
    base = _REPLY_PREFIX.sub("", subject or "").strip()
    return f"Re: {base}" if base else "Re:"


def ref_key(token: str) -> str:
    return f"ref:{token.lower()}"


async def remember_ref(
    store: Checkpoints, channel: str, token: str, root: str, address: str
) -> None:
    """Record that `token` means the thread `root` with the customer at `address`."""
    value = orjson.dumps({"root": root, "address": address.lower()}).decode()
    await store.set_checkpoint(channel, ref_key(token), value)


async def resolve_token(store: Checkpoints, channel: str, token: str, sender: str) -> str | None:
    """Step 3: the root for `token`, if it was issued to `sender`'s address."""
    raw = await store.get_checkpoint(channel, ref_key(token))
    if raw is None:
        return None
    try:
        data = orjson.loads(raw)
    except orjson.JSONDecodeError:
        return None
    if not isinstance(data, dict) or data.get("address") != sender.lower():
        return None
    root = data.get("root")
    return root if isinstance(root, str) and root else None


# The reply context (`Envelope.reply_context`): what the intake records about a
# customer's message so the reply to it threads: who to answer, the Message-ID
# answered and the thread's References. The router hands it back unchanged on
# every reply to the conversation; `reply_headers` reads it.
REPLY_REFERENCES = 20  # enough to thread
_CONTEXT_BYTES = 3000  # under the envelope's bound, with room for the address


def reply_context(address: str, message_id: str | None, references: list[str]) -> dict[str, object]:
    """The reply context of a customer's message from `address`."""
    refs = list(dict.fromkeys([*references, *([message_id] if message_id else [])]))
    if len(refs) > REPLY_REFERENCES:  # the root and the latest
        refs = refs[:1] + refs[-(REPLY_REFERENCES - 1) :]
    context: dict[str, object] = {"to": [address], "message_id": message_id, "references": refs}
    while len(orjson.dumps(context)) > _CONTEXT_BYTES and refs:
        refs.pop(len(refs) // 2)  # a very long id: keep the ends of the chain
    if len(orjson.dumps(context)) > _CONTEXT_BYTES:
        context["message_id"] = None
    return context


def start_thread(cfg: Any, address: str, seed: str) -> tuple[str, dict[str, object]]:
    """A thread we start with the customer at `address` (`ConnectorSpec.start_thread`):
    its root is a Message-ID of ours that no message carries, named in the first email's
    References, so the customer's answers carry it first in theirs and the intake gives
    them this thread key. `seed` is the router's random part: nobody can guess the key."""
    domain = str(cfg.smtp.from_address).rpartition("@")[2] or "omnirouter.invalid"
    return f"<omni.thread.{seed}@{domain}>", reply_context(address, None, [])


def agent_address(value: str) -> str:
    """An email sink's address (the agent's own mailbox): `local@domain`, stripped;
    ValueError with the reason otherwise (replies from it authenticate the agent)."""
    address = value.strip()
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain or any(c.isspace() for c in address):
        raise ValueError("expected the agent's email address, such as ana@example.com")
    return address


# --- our own Message-IDs ---------------------------------------------------------------


def message_id_for(envelope: Envelope, from_address: str) -> str:
    """The stable Message-ID of the email made from `envelope`: same envelope, same id."""
    domain = from_address.rpartition("@")[2] or "omnirouter.invalid"
    return f"<omni.{envelope.id}@{domain}>"


_OUR_MESSAGE_ID = re.compile(r"<?omni\.([0-9a-f]{32})@")


def our_envelope_id(message_id: str) -> str | None:
    """The envelope id in a Message-ID we made (`message_id_for`); None if not ours."""
    match = _OUR_MESSAGE_ID.search(message_id)
    return match.group(1) if match else None
