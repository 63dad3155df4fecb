"""Email connector: customer mail in over IMAP IDLE, replies out over SMTP in-thread,
and agents who work from their own mailbox.

Modules, in the shape every connector has:

- `config`: the `email:` block of channels.yaml;
- `inbound`: MIME → envelope (no network; attachments go to the blob store),
  with its helpers `text` (HTML to text, sanitizing, quoted history),
  `noise` (loop protection and bounces), `limits` (what the parsers are
  spared) and `agentmail` (agents' mail → `reply`/`command` envelopes, and
  the token in their reply address);
- `outbound`: envelope → MIME, no I/O: customer replies and notifications
  to agents;
- `client`: the SMTP client (sending, the outcome of each envelope), and
  `imap`: the IMAP client (the intake and its checkpoint). Two modules, not
  one `client`, because the IMAP session alone is near 600 lines;
- `threads` (thread keys, conversation tokens, our Message-IDs) and `tls`
  (certificates) serve both directions;
- `connector`: the wiring behind the connector contract; `errors`.

Inbound envelopes (`kind="message"`, `direction="in"`, `channel_type="email"`)
---------------------------------------------------------------------------------
- `id`: `envelope_id(channel, Message-ID)`, or of `sha256:<hex of the raw
  bytes>` when the message has no Message-ID.
- `thread_key`: the thread's root Message-ID (`<id@host>`): first of
  References, else In-Reply-To, else the root recorded for the conversation
  token (only when the mail comes from the address the token was sent to),
  else the message's own Message-ID.
- `sender`: From (else Sender, Reply-To, Return-Path), role `customer`.
- `text`: the new text, quoted history and signature stripped (text/plain,
  or text extracted from HTML when there is none); `html`: sanitized (nh3).
- `attachments`: every non-body part, inline images and forwarded
  `message/rfc822` parts included, in the blob store.
- `automated` (see `noise`; null when a person wrote it): `auto` (a machine
  sent it: no acknowledgement, no new conversation), `auto_reply` (an
  out-of-office: kept, but no SLA reset, no ack), `bounce` (a delivery-status
  report: `envelope_id` when it bounces a message of ours, from our Message-ID
  `<omni.<envelope id>@domain>`, `original_id`, and per recipient address,
  action, status, diagnostic) and `reasons` (e.g. `precedence: bulk`).
- `reply_context`: `{to: [sender], message_id, references}` (References plus
  this Message-ID, the root and the latest 19): the router hands it back on
  every reply to the conversation, and `outbound` threads the reply from it.

`meta` keys, channel-native extras the router stores but never reads (always
present unless marked *optional*):

| key | value |
| --- | --- |
| `message_id` | `<id@host>` or null |
| `in_reply_to` | first Message-ID of In-Reply-To, or null |
| `references` | list of Message-IDs (root first; at most 100) |
| `to`, `cc` | lists of addresses |
| `thread_source` | `references`, `in_reply_to`, `token` or `message_id` (a new thread) |
| `auto_submitted` | the Auto-Submitted header, or null |
| `size` | raw size in bytes |
| `native_id` | *optional*: `sha256:<hex>` when there is no Message-ID |
| `reply_to` | *optional*: Reply-To addresses |
| `delivered_to` | *optional*: Delivered-To, X-Original-To and Envelope-To addresses |
| `conversation_ref` | *optional*: the `[#ref]` token found in the subject or our plus-address |
| `full_text` | *optional*: the whole body text, when `text` had history stripped |
| `skipped_parts` | *optional*: `[{name, content_type, size?, reason}]` parts not kept |
| `charset_problems` | *optional*: charsets that were unknown or wrong, and how it was read |
| `truncated` | *optional*: true when a body was longer than `limits.max_text_chars` |
| `defects` | *optional*: number of MIME/header defects the parser tolerated |

Outbound envelopes (on `omni.outbound.<channel>`; what the router sends)
-------------------------------------------------------------------------
`kind="reply"` (or `"message"` for a notice we start), `direction="out"`,
`channel`, `thread_key` (the conversation's root Message-ID), `subject` (the
conversation's subject; one `Re:` is added when it answers something),
`text` (required), `html` (optional: sent as multipart/alternative),
`attachments` (the agent's files, read from the blob store and attached; at
most 18 MB together, else the send fails with the reason),
`sender` (the agent or `role="system"`), `automated.auto` for automatic
messages (below), and the addressing: the `reply_context` our intake wrote
(`to`, `message_id` answered, `references`), handed back by the router; or,
for a message with no reply context, in `meta`:

- `to`: required, list of addresses (the first is the customer);
- `in_reply_to`: the Message-ID answered;
- `references`: list of the thread's Message-IDs (the root is put first if missing);

and, in `meta` in both cases:

- `cc`: optional list;
- `conversation_ref`: optional, 4-32 letters/digits: written as `[#ref]` in the
  subject and as `from+ref@domain` in Reply-To; once sent, the connector
  records ref → (thread_key, first `to`) in the checkpoint store, so a reply
  that lost its headers still finds the thread.

`automated.auto` true marks an automatic message (acknowledgement, notice): sent
with `Auto-Submitted: auto-replied`, at most one per address per
`auto_reply_window`; further ones are answered `sent` with detail
`suppressed: ...` and not sent.

The email's Message-ID is `<omni.<envelope id>@<from domain>>`, so it is the
same on every retry and is returned as `SendResult.native_id`.

A thread we start (`ConnectorSpec.start_thread`, `threads.start_thread`: a web
chat visitor answered by email) has the thread key `<omni.thread.<seed>@<from
domain>>`, a root no message carries, named first in our References; the
customer's answer names it first in theirs, so the intake gives it that thread
key, and the router the conversation it started the thread for.

Agents in their mailbox
-----------------------
Deliveries to an agent whose sink is `{type: email, channel: <this channel>}`
reach `send()` too (the router's `omni.agent.<channel>`): an envelope with
a `delivery` is sent to `delivery.sink.address` as a notification
(`outbound`): the router's subject (`[#REF] ...`), its plain summary plus an
HTML layout of the context, `Auto-Submitted: auto-generated`, and Reply-To
`<reply local part>+<token>@<domain>`: the agents' reply address
(`agents.reply_address`, default `smtp.from_address`) with the signed
conversation token written in 50 address-safe characters.

Mail sent to that address (found in To, Cc, Delivered-To, X-Original-To or
Envelope-To), or anything in the agents' folder (`agents.folder`), is an
agent's: it becomes a `kind="reply"` envelope (the new text, the quoted
notification cut off) and/or a `kind="command"` one (a leading `#resolve`,
`#transfer billing ...`, `#note ...`, `#promise 17:00 call back`, `#kept`
line, as `command = {name, args}`),
with `sender = {address: From lowercased, role: "agent"}` and `meta.token`
(null when the mail carried none; the router rejects it). Ids derive from the
mail's Message-ID (`agent-reply:` / `agent-command:`), the thread key is the
token's conversation id. Automatic mail to that address (out-of-office,
bounces) and mail with nothing new in it are rejected to `omni.dlq` with the
reason: nothing reaches a customer. See `agentmail` for the exact rules.
"""

from datetime import timedelta

from connectors.email.config import EmailChannelConfig
from connectors.email.connector import build
from connectors.email.inbound import normalize_cli
from connectors.email.threads import agent_address, start_thread
from router.connector import ConnectorSpec

_H = timedelta(hours=1)

spec = ConnectorSpec(
    type="email",
    description="A support mailbox: IMAP IDLE in, SMTP out, replies kept in the thread.",
    config=EmailChannelConfig,
    factory=build,
    normalize=normalize_cli,
    customer_channel=True,
    agent_sink=True,  # agents work from their own mailbox (`outbound`, `agentmail`)
    sink_address=agent_address,
    default_capacity=10,
    # Most customers drop a supplier that takes more than a day to answer an email.
    default_targets={"urgent": _H, "high": 4 * _H, "normal": 24 * _H, "low": 48 * _H},
    identity_kind="email",
    start_thread=start_thread,  # a web chat's visitor answered by email (threads.py)
)

__all__ = ["EmailChannelConfig", "spec"]
