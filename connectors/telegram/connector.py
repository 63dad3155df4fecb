"""The Telegram connector: one bot, customers in their chats and agents in theirs.

Intake, by long polling (default) or webhook, gives one envelope per customer
message and per agent reply or button press:

- Polling: getUpdates from the offset kept in the daemon's checkpoints (key
  `offset`). The offset moves past an update only once its envelope is acked done
  (durably on the bus) or dead-lettered; a retriable ack offers it again. So
  Telegram (confirmed by the next getUpdates) and the checkpoint (read at start)
  only ever forget what is safe.
- Webhook: the kit's `HttpIntake` on `webhook.path`, registered with setWebhook and
  a `secret_token`: a request without the right `X-Telegram-Bot-Api-Secret-Token`
  gets 401 and nothing is queued; 200 only once the envelope is on the bus (else
  503 and Telegram sends it again). The URL we serve holds no bot token.

Either way the same update gives the same envelope id (`inbound`), and update ids
done lately are remembered, so a replayed update creates nothing new.

Agents are the users whose sink is `{type: telegram, address: <user id>}` on this
channel (kept current by the daemon). Their private chat gets the context card
(`outbound.card`) with inline buttons; the card's message id is kept with the
delivery's token (checkpoint `card:<chat>:<message>`), so a Telegram reply to the
card answers the customer and a button press is a command for that conversation.
Transfer swaps the card's buttons for the queues (`Services.queues`, kept current
by the daemon); a queue's button is the transfer command.
A callback from anyone else gets a polite refusal and a log line.

Sending is paced (`client.Pacer`) and one send at a time (the runner's outbound
loop), so per-chat order holds: a 429 holds the chat for `retry_after` and the
same message is sent again; 403 (the user blocked the bot) fails for good, which
the runner reports to the router (an incident, and a note to the owner).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import Any

import orjson
import structlog
from aiohttp import web
from telegram import (
    Bot,
    InlineKeyboardButton,
    InlineKeyboardMarkup,
    InputFile,
    Message,
    ReplyParameters,
)
from telegram.error import (
    BadRequest,
    Forbidden,
    InvalidToken,
    NetworkError,
    RetryAfter,
    TelegramError,
)
from telegram.request import RequestData
from telegram.request._requestparameter import RequestParameter

from connectors.telegram import inbound, outbound
from connectors.telegram.client import (
    READ_TIMEOUT,
    AiohttpRequest,
    Offsets,
    Pacer,
    retry_after_of,
)
from connectors.telegram.config import TelegramChannelConfig
from connectors.telegram.errors import ApiUnavailable, BadUpdate, BotRefused
from connectors.telegram.identity import deep_link_key, linked_by_start
from router.blobs import BlobError, BlobStore
from router.connector import (
    DONE,
    Ack,
    Incoming,
    Outcome,
    Rejected,
    SendResult,
    Services,
    cancelled,
    sink_through,
)
from router.connector.agents import AgentInput, BadCommand
from router.connector.http import ACK_TIMEOUT, QUEUE_SIZE, HttpIntake, HttpRefusal, require_json
from router.connector.signing import BadSignature, same
from router.envelope import Attachment, Envelope, Sender, envelope_id, now_utc
from router.errors import OmniError

log = structlog.get_logger(__name__)

SECRET_HEADER = "X-Telegram-Bot-Api-Secret-Token"  # noqa: S105 (a header name)
MAX_UPDATE_BYTES = 1024 * 1024  # an update is a few KB; files are fetched, never posted
MAX_HOLD = 60.0  # longer 429 holds go back to the runner's retry (the send is not lost)
REMEMBERED_UPDATES = 10_000  # update ids done lately: a replay is dropped here
REMEMBERED_CHATS = 10_000  # chats whose latest message id we know
POLL_SLACK = 10.0  # read timeout beyond the long-poll's own
CARD_PREFIX = "card:"
CARD_STORE_WAIT = 5.0  # seconds a press waits for its card's token to be stored
HOUSEKEEPING_SECONDS = 3600.0  # how often old cards are pruned
OFFSET_KEY = "offset"

Item = Incoming | Rejected


class _RedactToken(logging.Filter):
    """python-telegram-bot logs its API URL (which holds the token) at DEBUG: redact it."""

    tokens: set[str] = set()

    def filter(self, record: logging.LogRecord) -> bool:
        text = record.getMessage()
        if any(t in text for t in self.tokens):
            for token in self.tokens:
                text = text.replace(token, "<bot token>")
            record.msg, record.args = text, ()
        return True


_REDACT = _RedactToken()
for _name in ("telegram", "telegram.Bot", "telegram.BaseRequest"):
    logging.getLogger(_name).addFilter(_REDACT)


class TelegramConnector:
    def __init__(
        self,
        name: str,
        cfg: TelegramChannelConfig,
        services: Services,
        *,
        pacer: Pacer | None = None,
        max_hold: float = MAX_HOLD,
        read_timeout: float = READ_TIMEOUT,
        ack_timeout: timedelta = ACK_TIMEOUT,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.name = name
        self.cfg = cfg
        assert cfg.bot_token is not None  # the config requires it
        self._token = cfg.bot_token.get_secret_value()
        _RedactToken.tokens.add(self._token)
        self._key = deep_link_key(self._token)
        self._blobs: BlobStore = services.blobs
        self._checkpoints = services.checkpoints
        self._sinks = services.sinks  # agent id -> sink; the daemon keeps it current
        self._queues = services.queues  # the queue names; the daemon keeps them current
        self.pacer = pacer or Pacer()
        self._max_hold = max_hold
        self.read_timeout = read_timeout  # of every call but getUpdates
        self._bot: Bot | None = None
        self._updates = AiohttpRequest()
        self._recent: OrderedDict[int, None] = OrderedDict()  # update ids done lately
        self._latest: OrderedDict[int, int] = OrderedDict()  # chat -> latest message id
        self._storing: dict[int, asyncio.Event] = {}  # agent chat -> its card's token write
        self._housekeeping: asyncio.Task[None] | None = None
        self.intake: HttpIntake | None = None
        if cfg.mode == "webhook":
            assert cfg.webhook is not None  # the config requires it
            self.intake = HttpIntake(
                name,
                check=self._check_secret,
                parse=self._parse_webhook,
                max_body_bytes=MAX_UPDATE_BYTES,
                ack_timeout=ack_timeout,
                queue_size=queue_size,
                accepted_status=200,
                log_as="telegram update",
                noun="update",
            )
            if services.http is None:
                log.warning("no HTTP listener: Telegram cannot reach this channel", channel=name)
            else:
                services.http.add("POST", cfg.webhook.path, self.intake.handle)

    # --- lifecycle ------------------------------------------------------------------------

    def _api(self) -> str:
        return self.cfg.api_url.rstrip("/")

    async def start(self) -> None:
        if self._bot is not None:
            return
        # getUpdates goes through this transport directly: the raw updates, so one bad
        # update is dead-lettered alone instead of failing the library's parse of the batch.
        self._updates = AiohttpRequest(
            read_timeout=self.cfg.polling.timeout.total_seconds() + POLL_SLACK
        )
        bot = Bot(
            self._token,
            base_url=self._api() + "/bot",
            base_file_url=self._api() + "/file/bot",
            request=AiohttpRequest(self.read_timeout),
            get_updates_request=self._updates,
        )
        try:
            await _call(bot.initialize())  # getMe: a refused token stops here
            if self.cfg.mode == "polling":
                await _call(bot.delete_webhook(drop_pending_updates=False))
            else:
                await self._set_webhook(bot)
        except BaseException:
            await bot.shutdown()
            raise
        self._bot = bot
        if self.intake is not None:
            self.intake.start()
        if self._housekeeping is None or self._housekeeping.done():
            self._housekeeping = asyncio.create_task(
                self._keep_house(), name=f"telegram-housekeeping:{self.name}"
            )

    async def prune(self, now: datetime) -> int:
        """Forget the cards (card message -> conversation token) older than
        `card_retention`; the offset is never pruned."""
        before = now - self.cfg.card_retention
        return await self._checkpoints.prune_checkpoints(self.name, CARD_PREFIX, before)

    async def _keep_house(self) -> None:
        while True:
            try:
                forgotten = await self.prune(now_utc())
                if forgotten:
                    log.info("old telegram cards pruned", channel=self.name, count=forgotten)
            except OmniError as exc:  # the store is down: try again next time
                log.warning("could not prune telegram cards", channel=self.name, error=str(exc))
            await asyncio.sleep(HOUSEKEEPING_SECONDS)

    async def _set_webhook(self, bot: Bot) -> None:
        hook = self.cfg.webhook
        assert hook is not None
        secret = hook.secret_token.get_secret_value() if hook.secret_token else None
        await _call(
            bot.set_webhook(
                url=hook.public_url,
                secret_token=secret,
                allowed_updates=inbound.ALLOWED_UPDATES,
            )
        )

    async def stop(self) -> None:
        housekeeping, self._housekeeping = self._housekeeping, None
        await cancelled(housekeeping)
        if self.intake is not None:
            self.intake.stop()
        bot, self._bot = self._bot, None
        if bot is not None:
            await bot.shutdown()

    def _live(self) -> Bot:
        if self._bot is None:
            raise ApiUnavailable("the connector is stopped")
        return self._bot

    # --- intake ---------------------------------------------------------------------------

    def receive(self) -> AsyncIterator[Item]:
        return self._poll() if self.intake is None else self._from_webhook()

    async def _poll(self) -> AsyncIterator[Item]:
        saved = await self._checkpoints.get_checkpoint(self.name, OFFSET_KEY)
        offsets = Offsets(int(saved) if saved and saved.isdigit() else 0)
        timeout = int(self.cfg.polling.timeout.total_seconds())
        while True:
            updates = await _call(
                self._updates.post(
                    f"{self._live().base_url}/getUpdates",
                    _data(
                        offset=offsets.offset(),
                        timeout=timeout,
                        allowed_updates=inbound.ALLOWED_UPDATES,
                    ),
                    read_timeout=timeout + POLL_SLACK,
                )
            )
            if not isinstance(updates, list):
                raise ApiUnavailable("getUpdates answered something other than a list")
            for update in updates:
                if not isinstance(update, dict) or not isinstance(update.get("update_id"), int):
                    raise ApiUnavailable("getUpdates answered an update without update_id")
                update_id = update["update_id"]
                if not offsets.take(update_id):
                    continue
                item = await self._handle(update, self._offset_ack(offsets, update_id))
                if item is not None:
                    yield item
            await offsets.settled()

    def _offset_ack(self, offsets: Offsets, update_id: int) -> Ack:
        async def ack(outcome: Outcome = DONE) -> None:
            before = offsets.start
            offsets.finish(update_id, outcome)
            if offsets.offset() != before:
                await self._checkpoints.set_checkpoint(self.name, OFFSET_KEY, str(offsets.start))

        return ack

    def _check_secret(self, request: web.Request, body: bytes) -> None:
        hook = self.cfg.webhook
        secret = hook.secret_token if hook is not None else None
        given = request.headers.get(SECRET_HEADER)
        if secret is None or not secret.known or given is None:
            raise BadSignature(f"missing {SECRET_HEADER}")
        if not same(secret.get_secret_value(), given):
            raise BadSignature(f"wrong {SECRET_HEADER}")

    def _parse_webhook(self, request: web.Request, body: bytes) -> Envelope:
        """The update, carried to `_from_webhook` (never put on the bus as it is)."""
        require_json(request)
        try:
            update = orjson.loads(body)
            update_id = inbound.update_id_of(update)
        except (orjson.JSONDecodeError, BadUpdate, AttributeError):
            raise HttpRefusal(400, "not a Telegram update (a JSON object with update_id)") from None
        return Envelope(
            id=envelope_id(self.name, f"update:{update_id}"),
            kind="message",
            direction="in",
            channel=self.name,
            channel_type="telegram",
            thread_key=f"update:{update_id}",
            sender=Sender(address="telegram", role="system"),
            received_at=now_utc(),
            meta={"update": update},
        )

    async def _from_webhook(self) -> AsyncIterator[Item]:
        assert self.intake is not None
        async for carried in self.intake.receive():
            update = carried.envelope.meta["update"]
            update_id = update["update_id"]
            if update_id in self._recent:  # a replay: taken already
                await carried.ack(DONE)
                continue
            ack = self._remembering(carried.ack, update_id)
            try:
                item = await self._handle(update, ack)
            except ApiUnavailable as exc:  # a file not fetched: Telegram sends it again
                await carried.ack(Outcome(str(exc), retriable=True))
                continue
            if item is not None:
                yield item

    def _remembering(self, ack: Ack, update_id: int) -> Ack:
        async def remember(outcome: Outcome = DONE) -> None:
            if outcome.done or not outcome.retriable:
                self._recent[update_id] = None
                while len(self._recent) > REMEMBERED_UPDATES:
                    self._recent.popitem(last=False)
            await ack(outcome)

        return remember

    async def _handle(self, update: dict[str, Any], ack: Ack) -> Item | None:
        """The update's item, or None once handled without one (and acked)."""
        try:
            read = inbound.read(update)
        except BadUpdate as exc:
            return Rejected(reason=str(exc), ack=ack, native_id=f"update:{update.get('update_id')}")
        item: Item | None = None
        if isinstance(read, inbound.Skip):
            log.info("telegram update skipped", channel=self.name, kind=read.what)
        elif isinstance(read, inbound.Press):
            item = await self._press(read, ack)
        elif (agent := self._agents().get(str(read.user_id))) is not None and read.chat_id > 0:
            item = await self._agent_message(agent, read, ack)
        else:
            item = Incoming(envelope=await self._customer(read), ack=ack)
        if item is None:
            await ack(DONE)
        return item

    async def _customer(self, msg: inbound.Message) -> Envelope:
        self._seen(msg.chat_id, msg.message_id)
        linked = None
        if msg.start_payload is not None:
            linked = linked_by_start(self._key, msg.start_payload, now_utc().timestamp())
            if linked is None:
                log.warning("telegram deep link not ours: nothing linked", channel=self.name)
        return inbound.customer_envelope(
            self.name,
            msg,
            files=await self._fetch(msg.files),
            received_at=now_utc(),
            linked=linked,
        )

    async def _fetch(self, refs: tuple[inbound.FileRef, ...]) -> inbound.Files:
        files = inbound.Files()
        for ref in refs:
            if ref.size is not None and ref.size > inbound.MAX_DOWNLOAD_BYTES:
                files.notes.append(inbound.too_large_note(ref))
                continue
            try:
                got = await _call(self._live().get_file(ref.file_id))
                data = bytes(await _call(got.download_as_bytearray()))
            except BadRequest as exc:  # "file is too big", or gone
                files.notes.append(
                    inbound.too_large_note(ref)
                    if "big" in exc.message
                    else f"[The customer sent {ref.name}; Telegram would not give it to us:"
                    f" {exc.message}]"
                )
                continue
            sha, blob_ref = await asyncio.to_thread(self._blobs.put, data)
            files.attachments.append(
                Attachment(
                    name=ref.name,
                    content_type=ref.content_type,
                    size=len(data),
                    sha256=sha,
                    ref=blob_ref,
                )
            )
        return files

    # --- agents ---------------------------------------------------------------------------

    def _agents(self) -> dict[str, str]:
        """Telegram user id -> agent id, for the agents this channel reaches."""
        return {
            sink.address: agent_id
            for agent_id in self._sinks
            if (sink := sink_through(self._sinks, agent_id, "telegram", self.name)) is not None
            and sink.address
        }

    def _agent_input(self, user_id: int, token: str | None, name: str | None) -> AgentInput:
        return AgentInput(
            channel=self.name,
            channel_type="telegram",
            agent=str(user_id),  # the router knows a Telegram agent by their sink address
            token=token,
            received_at=now_utc(),
            name=name,
        )

    async def _card_token(self, chat_id: int | None, message_id: int | None) -> str | None:
        if chat_id is None or message_id is None:
            return None
        key = f"{CARD_PREFIX}{chat_id}:{message_id}"
        # Taken before the read: a write that ends while the read runs has dropped its
        # event by the time the read answers (not found), and must still be waited for.
        storing = self._storing.get(chat_id)
        token = await self._checkpoints.get_checkpoint(self.name, key)
        if token is None and storing is not None:
            # The card is in the chat before its token is stored: a quick agent's
            # press or reply waits for that write rather than finding no card.
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(storing.wait(), CARD_STORE_WAIT)
            token = await self._checkpoints.get_checkpoint(self.name, key)
        return token

    async def _agent_message(self, agent: str, msg: inbound.Message, ack: Ack) -> Item | None:
        token = await self._card_token(msg.chat_id, msg.reply_to)
        words = msg.text.split()
        is_command = bool(words) and words[0].startswith("/")
        name = words[0][1:].split("@")[0].lower() if is_command else ""
        if token is None and not (is_command and name in outbound.PRESENCE):
            await self._tell(msg.chat_id, outbound.WHICH_CONVERSATION)
            return None
        builder = self._agent_input(msg.user_id, token, msg.name)
        if not is_command:
            files = await self._fetch(msg.files)
            if files.notes:  # over the 20 MB a bot may download: the agent must know
                names = ", ".join(ref.name for ref in msg.files)
                await self._tell(
                    msg.chat_id,
                    f"Not all files could be taken ({names}): "
                    "Telegram lets a bot download 20 MB at most.",
                )
                if not (msg.text or files.attachments):
                    return None
            envelope = builder.reply(msg.native_id, msg.text, attachments=files.attachments)
            return Incoming(envelope=envelope, ack=ack)
        args = words[1:2] + ([" ".join(words[2:])] if len(words) > 2 else [])
        try:
            envelope = builder.command(msg.native_id, name, args, text=msg.text)
        except BadCommand as exc:
            await self._tell(msg.chat_id, f"Not a command I know: {exc}")
            return None
        return Incoming(envelope=envelope, ack=ack)

    async def _press(self, press: inbound.Press, ack: Ack) -> Item | None:
        if str(press.user_id) not in self._agents():
            log.warning(
                "telegram button from a user who is no agent",
                channel=self.name,
                user_id=press.user_id,
            )
            await self._answer(press.callback_id, outbound.NOT_AN_AGENT)
            return None
        queue = press.data.removeprefix(outbound.QUEUE_PREFIX)
        picked = queue != press.data
        if not picked and press.data not in outbound.BUTTONS and press.data != outbound.BACK:
            await self._answer(press.callback_id, "This button is no longer in use.")
            return None
        token = await self._card_token(press.chat_id, press.message_id)
        if token is None and press.data not in outbound.PRESENCE:
            await self._answer(press.callback_id, "I no longer know this card's conversation.")
            return None
        if press.data == "transfer":
            await self._pick_queue(press)
            return None
        if press.data == outbound.BACK or picked:
            await self._set_keyboard(press, outbound.keyboard())
        if press.data == outbound.BACK:
            await self._answer(press.callback_id, "")
            return None
        if picked and queue not in self._queues:
            await self._answer(press.callback_id, f"There is no queue {queue!r} any more.")
            return None
        builder = self._agent_input(press.user_id, token, press.name)
        native_id = f"callback:{press.callback_id}"
        if picked:
            envelope = builder.command(native_id, "transfer", [queue])
            await self._answer(press.callback_id, f"Transfer to {queue}: sent")
        else:
            envelope = builder.command(native_id, press.data)
            await self._answer(press.callback_id, f"{outbound.BUTTONS[press.data]}: sent")
        return Incoming(envelope=envelope, ack=ack)

    async def _pick_queue(self, press: inbound.Press) -> None:
        """Transfer: the card's keyboard becomes the queues (the daemon keeps them
        current); with none configured, how to transfer by command."""
        if not self._queues:
            await self._answer(press.callback_id, outbound.TRANSFER_HOW)
            return
        await self._set_keyboard(press, outbound.queue_keyboard(self._queues))
        await self._answer(press.callback_id, outbound.PICK_QUEUE)

    async def _set_keyboard(self, press: inbound.Press, keyboard: Mapping[str, Any]) -> None:
        if press.chat_id is None or press.message_id is None:
            return
        try:
            await _call(
                self._live().edit_message_reply_markup(
                    press.chat_id, press.message_id, reply_markup=_markup(keyboard)
                )
            )
        except (ApiUnavailable, BotRefused, TelegramError) as exc:
            log.warning("telegram card keyboard not changed", channel=self.name, error=str(exc))

    async def _answer(self, callback_id: str, text: str) -> None:
        try:
            await _call(self._live().answer_callback_query(callback_id, text=text))
        except (ApiUnavailable, BotRefused, TelegramError) as exc:
            log.warning("telegram callback not answered", channel=self.name, error=str(exc))

    async def _tell(self, chat_id: int, text: str) -> None:
        """A short answer to an agent (not a customer message: not on the bus)."""
        result = await self._paced(chat_id, text)
        if isinstance(result, SendResult):
            log.warning("telegram notice not sent", channel=self.name, detail=result.detail)

    # --- sending --------------------------------------------------------------------------

    def _seen(self, chat_id: int, message_id: int) -> None:
        self._latest[chat_id] = message_id
        self._latest.move_to_end(chat_id)
        while len(self._latest) > REMEMBERED_CHATS:
            self._latest.popitem(last=False)

    async def send(self, envelope: Envelope) -> SendResult:
        if envelope.direction != "out":
            return SendResult(status="failed", detail="not an outbound envelope (direction in)")
        if self._bot is None:
            return SendResult(status="retry", detail="the connector is stopped")
        if envelope.delivery is not None:
            return await self._send_card(envelope)
        try:
            where = outbound.target(envelope)
        except outbound.NoChat as exc:
            return SendResult(status="failed", detail=str(exc))
        parts = outbound.chunks(envelope.text)
        files = envelope.attachments
        if not parts and not files:
            return SendResult(status="failed", detail="nothing to send (no text, no files)")
        if (too_large := outbound.too_large(files)) is not None:
            return SendResult(status="failed", detail=too_large)
        # A Telegram reply where the answered message is no longer the chat's latest.
        reply_to = where.reply_to if self._latest.get(where.chat_id) != where.reply_to else None
        sent: Any = None
        for i, part in enumerate(parts):
            sent = await self._paced(where.chat_id, part, reply_to=reply_to if i == 0 else None)
            if isinstance(sent, SendResult):
                return sent
        for attachment in files:
            sent = await self._send_file(where.chat_id, attachment)
            if isinstance(sent, SendResult):
                return sent
        return SendResult(status="sent", native_id=str(sent.message_id))

    async def _send_file(self, chat_id: int, attachment: Attachment) -> Any:
        """One file from the blob store, as a photo or a document; paced like a message."""
        try:
            data = await asyncio.to_thread(self._blobs.get, attachment.ref)
        except BlobError as exc:
            return SendResult(status="retry" if exc.retriable else "failed", detail=str(exc))
        upload = InputFile(data, filename=attachment.name, attach=True)
        bot = self._live()
        if outbound.upload_as(attachment) == "photo":
            return await self._paced(chat_id, call=lambda: bot.send_photo(chat_id, upload))
        return await self._paced(chat_id, call=lambda: bot.send_document(chat_id, upload))

    async def _send_card(self, envelope: Envelope) -> SendResult:
        delivery = envelope.delivery
        assert delivery is not None
        sink = sink_through(self._sinks, delivery.agent.id, "telegram", self.name)
        if sink is None:
            return SendResult(
                status="failed",
                detail=f"agent {delivery.agent.id!r} is not reached through this channel",
            )
        try:
            chat_id = int(sink.address or "")
        except ValueError:
            return SendResult(status="failed", detail="the agent's sink has no Telegram user id")
        text = outbound.card(envelope, delivery, now_utc())
        storing = self._storing[chat_id] = asyncio.Event()
        try:
            sent = await self._paced(chat_id, text, markup=_markup(outbound.keyboard()))
            if isinstance(sent, SendResult):
                return sent
            if delivery.token:
                key = f"{CARD_PREFIX}{chat_id}:{sent.message_id}"
                await self._checkpoints.set_checkpoint(self.name, key, delivery.token)
        finally:
            storing.set()
            if self._storing.get(chat_id) is storing:
                del self._storing[chat_id]
        return SendResult(status="sent", native_id=str(sent.message_id))

    async def _paced(
        self,
        chat_id: int,
        text: str = "",
        *,
        reply_to: int | None = None,
        markup: InlineKeyboardMarkup | None = None,
        call: Callable[[], Awaitable[Message]] | None = None,
    ) -> Any:
        """The sent Message, or the SendResult saying why not. A 429 holds the chat and the
        same message is sent again (up to `max_hold` of waiting, then the runner retries).
        `call` sends something else than `text` (a file), made anew for each try."""
        bot = self._live()
        held = 0.0
        reply = ReplyParameters(reply_to, allow_sending_without_reply=True) if reply_to else None
        if call is None:

            def call() -> Awaitable[Message]:
                return bot.send_message(chat_id, text, reply_parameters=reply, reply_markup=markup)

        while True:
            await self.pacer.slot(chat_id)
            try:
                message = await call()
            except RetryAfter as exc:
                self.pacer.sent(chat_id)
                wait = retry_after_of(exc)
                self.pacer.hold(chat_id, wait)
                held += wait
                log.info("telegram asks to wait", channel=self.name, chat=chat_id, seconds=wait)
                if held > self._max_hold:
                    return SendResult(status="retry", detail=f"Telegram asks to wait {wait:g} s")
                continue
            except Forbidden:
                self.pacer.sent(chat_id)
                return SendResult(
                    status="failed",
                    detail="Telegram refused (403): the user blocked the bot or left the chat;"
                    " not retried",
                )
            except InvalidToken:
                return SendResult(status="retry", detail="Telegram refused the bot token")
            except BadRequest as exc:
                self.pacer.sent(chat_id)
                return SendResult(status="failed", detail=f"Telegram refused: {exc.message}")
            except (NetworkError, TelegramError) as exc:  # TimedOut is a NetworkError
                self.pacer.sent(chat_id)
                return SendResult(status="retry", detail=f"Telegram not reached: {exc.message}")
            self.pacer.sent(chat_id)
            self._seen(chat_id, message.message_id)
            return message


def _markup(data: Mapping[str, Any]) -> InlineKeyboardMarkup:
    return InlineKeyboardMarkup(
        [
            [InlineKeyboardButton(b["text"], callback_data=b["callback_data"]) for b in row]
            for row in data["inline_keyboard"]
        ]
    )


async def _call(call: Any) -> Any:
    """Await a Bot API call; the library's errors as ours (intake and lifecycle)."""
    try:
        return await call
    except InvalidToken:
        raise BotRefused("Telegram refused the bot token (revoked or mistyped)") from None
    except RetryAfter as exc:
        raise ApiUnavailable(f"Telegram asks to wait {retry_after_of(exc):g} s") from None
    except Forbidden as exc:
        raise BotRefused(f"Telegram refused: {exc.message}") from None
    except BadRequest:
        raise
    except (NetworkError, TelegramError) as exc:
        raise ApiUnavailable(f"Telegram not reached: {exc.message}") from None


def _data(**params: object) -> RequestData:
    return RequestData([RequestParameter.from_input(k, v) for k, v in params.items()])


def build(name: str, settings: TelegramChannelConfig, services: Services) -> TelegramConnector:
    """The `ConnectorSpec.factory` for `type: telegram`."""
    return TelegramConnector(name, settings, services)
