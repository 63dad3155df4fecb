"""The web chat connector: the widget's socket (and its HTTP fallback), its files, and
agents' replies into the visitor's session. The protocol: docs/webchat.md.

A visitor message is handed to the channel runner and answered `sent` only
once the runner acks it durably on the bus; a retriable outcome (the bus is
slow, the daemon stopping) is `failed` with `retry`, and the widget sends the
same client id again. Origin (403), session and identity tokens (4401) and
rate limits (4429) are checked per socket or request and never touch another
session. Outgoing replies (and where a waiting visitor stands in the queue) are
appended to the session's log (sessions.py) and pushed to its open sockets, or
shown when the visitor returns.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from typing import Any

import orjson
import structlog
from aiohttp import WSMsgType, web

from connectors.webchat import files, inbound, outbound, static
from connectors.webchat.config import WebchatChannelConfig
from connectors.webchat.errors import BadFrame, RateLimited, WebchatError
from connectors.webchat.sessions import Push, Sessions
from connectors.webchat.tokens import issue_session, new_visitor, verify_identity, verify_session
from router.blobs import BlobError, BlobStore
from router.connector import Incoming, Outcome, SendResult, Services, cancelled
from router.connector.handover import NOT_YET, Handover
from router.connector.http import ACK_TIMEOUT, QUEUE_SIZE, client_ip, read_body
from router.envelope import Attachment, Envelope, now_utc
from router.errors import ConnectorError
from router.logs import RateLimiter

log = structlog.get_logger(__name__)

POLL_WAIT = 25.0  # a long-poll answers at the latest after this (under proxies' 30 s)
FRAME_OVERHEAD = 4096  # room for a msg frame's fields around its text
RATE_KEYS = 100_000  # sessions and IPs tracked by the rate limits
PRUNE_EVERY = 3600.0


class Who:
    """Who a session's visitor is: the sender address, name and identities of its messages."""

    def __init__(self, visitor: str, stored: dict[str, Any] | None) -> None:
        stored = stored or {}
        self.sender: str = stored.get("sender") or visitor
        self.name: str | None = stored.get("name")
        self.identities: list[tuple[str, str]] = [tuple(i) for i in stored.get("identities", [])]
        self.topic: str | None = stored.get("topic")
        self.reply_by_email: str | None = stored.get("reply_by_email")

    def as_dict(self) -> dict[str, Any]:
        return {
            "sender": self.sender,
            "name": self.name,
            "identities": self.identities,
            "topic": self.topic,
            "reply_by_email": self.reply_by_email,
        }

    def fill(self, form: dict[str, str], *, reply_by_email: bool = False) -> None:
        """The form's answers. A typed email or phone is only stated: the router decides
        what it links."""
        if form.get("name"):
            self.name = form["name"]
        if form.get("topic"):
            self.topic = form["topic"]
        for kind in ("email", "phone"):
            value = form.get(kind)
            if value and all(k != kind for k, _ in self.identities):
                self.identities.append((kind, value))
        if reply_by_email:
            self.reply_by_email = form["email"]


class WebchatConnector:
    def __init__(
        self,
        name: str,
        cfg: WebchatChannelConfig,
        services: Services,
        *,
        ack_timeout: timedelta = ACK_TIMEOUT,
        queue_size: int = QUEUE_SIZE,
    ) -> None:
        self.name = name
        self.cfg = cfg
        self.sessions = Sessions(name, services.checkpoints)
        self._blobs: BlobStore = services.blobs
        self._path = cfg.path.rstrip("/")
        self._opens_at = services.opens_at
        self._handover = Handover(ack_timeout=ack_timeout.total_seconds(), in_flight=queue_size)
        self._sockets: set[web.WebSocketResponse] = set()
        self._per_session = RateLimiter(cfg.messages_per_minute, 60.0, max_keys=RATE_KEYS)
        self._per_ip = RateLimiter(cfg.sessions_per_hour, 3600.0, max_keys=RATE_KEYS)
        self._accepting = False
        self._pruner: asyncio.Task[None] | None = None
        self._ttl = cfg.session_ttl.total_seconds()
        self._heartbeat = cfg.heartbeat.total_seconds()
        self._max_frame = cfg.max_message_bytes + FRAME_OVERHEAD
        if services.http is None:
            log.warning("no HTTP listener: the web chat cannot be reached", channel=name)
        else:
            # The routes as the config declares them (what `check` holds against other
            # channels'), in its order: the socket, frames over HTTP, polling, the widget,
            # uploads, downloads, versioned static files.
            handlers = (
                self.socket,
                self.http_frame,
                self.poll,
                static.latest,
                self.upload,
                self.download,
                static.versioned,
            )
            for route, handler in zip(cfg.http_routes(name), handlers, strict=True):
                services.http.add(route.method, route.path, handler)

    # --- lifecycle ------------------------------------------------------------------------

    async def start(self) -> None:
        if self.cfg.session_key is None:
            raise ConnectorError(
                "webchat.session_key (or session_key_file) is required: it signs the"
                " visitors' session tokens",
                retriable=False,
            )
        self._keys = self.cfg.keys()
        self._identity_key = self.cfg.identity_key()
        self._accepting = True
        if self._pruner is None:
            self._pruner = asyncio.create_task(self._prune())

    async def stop(self) -> None:
        """Close every socket (1001: the widget reconnects) and answer waiting messages
        `failed`, `retry` (the widget sends them again)."""
        self._accepting = False
        self._handover.release()
        await asyncio.gather(
            *(
                ws.close(code=1001, message=b"the chat server is restarting")
                for ws in list(self._sockets)
            )
        )
        pruner, self._pruner = self._pruner, None
        await cancelled(pruner)

    async def _prune(self) -> None:
        while True:
            try:
                removed = await self.sessions.prune(self.cfg.session_ttl, now_utc())
                if removed:
                    log.info("web chat sessions pruned", channel=self.name, keys=removed)
            except Exception as exc:  # the store is down: try at the next round
                log.warning("web chat prune failed", channel=self.name, error=str(exc))
            await asyncio.sleep(PRUNE_EVERY)

    # --- intake ---------------------------------------------------------------------------

    def receive(self) -> AsyncIterator[Incoming]:
        return self._handover.receive()

    async def _hand_over(self, envelope: Envelope) -> Outcome:
        if not self._accepting:
            return NOT_YET
        outcome = await self._handover.hand_over(envelope)
        return outcome or Outcome("too many messages in flight", retriable=True)

    # --- sending --------------------------------------------------------------------------

    async def send(self, envelope: Envelope) -> SendResult:
        try:
            visitor = outbound.visitor_of(envelope)
        except outbound.Unsendable as exc:
            return SendResult(status="failed", detail=str(exc))
        typing = outbound.typing_frame(envelope)
        if typing is not None:  # transient: nobody connected, nobody to tell
            return SendResult(
                status="sent", detail=f"{self.sessions.tell(visitor, typing)} sockets"
            )
        seq = 0
        try:
            # One by one: after a failure between them, the retry shows only what is missing.
            for frame, dedup in outbound.to_frames(envelope):
                frame = self._with_files(visitor, envelope, frame)
                seq = await self.sessions.append(visitor, frame, dedup)
            if envelope.signal == "seen":
                seq = await self.sessions.seen(
                    visitor,
                    envelope.received_at,
                    lambda upto: (outbound.seen_frame(envelope, upto), f"o:{envelope.id}:seen"),
                )
        except Exception as exc:  # the store: the runner retries later
            return SendResult(status="retry", detail=f"session store: {exc}")
        return SendResult(status="sent", native_id=f"{visitor}:{seq}")

    # --- what every socket and request goes through ----------------------------------------

    def _origin_ok(self, request: web.Request) -> bool:
        origin = request.headers.get("Origin")
        if origin is None:
            return False
        allowed = self.cfg.allowed_origins or [f"{request.scheme}://{request.host}"]
        return origin.rstrip("/") in {o.rstrip("/") for o in allowed}

    def _client(self, request: web.Request) -> str | None:
        """The visitor's address, through the channel's trusted proxies."""
        return client_ip(request, self.cfg.trusted_proxies)

    def _refuse(self, request: web.Request, status: int, reason: str) -> web.Response:
        log.warning(
            "web chat refused",
            channel=self.name,
            status=status,
            reason=reason,
            peer=self._client(request),
        )
        return web.json_response({"error": reason}, status=status)

    async def _hello(self, hello: inbound.Hello, ip: str | None) -> tuple[str, Who]:
        now = time.time()
        if hello.session is not None:
            visitor = verify_session(self._keys, hello.session, now, self._ttl)
        else:
            if self._per_ip.admit(ip) is None:
                raise RateLimited(
                    f"rate limited: more than {self.cfg.sessions_per_hour} new chats an hour"
                    " from this address"
                )
            visitor = new_visitor()
        who = Who(visitor, await self.sessions.who(visitor))
        before = who.as_dict()
        if hello.identity is not None:
            customer = verify_identity(self._identity_key, hello.identity, now)
            who.sender = f"shop:{customer.id}"
            if customer.email:
                who.identities = [("email", customer.email)]
        who.fill(hello.form)
        if who.as_dict() != before:
            await self.sessions.remember(visitor, who.as_dict())
        return visitor, who

    def _welcome(self, visitor: str, lang: str | None) -> Callable[[int], dict[str, Any]]:
        token = issue_session(self._keys[0], visitor, time.time())

        look = self.cfg.widget()
        opens = self._closed_until()

        def greet(last: int) -> dict[str, Any]:
            frame = {
                "t": "welcome",
                "session": token,
                "visitor": visitor,
                "last": last,
                "title": self.cfg.title,
                "lang": self.cfg.language or lang,
                "look": look,
            }
            if opens is not None:
                frame["opens_at"] = opens
            return frame

        return greet

    def _closed_until(self) -> str | None:
        """When the channel opens (ISO 8601) while it is closed by its business hours."""
        now = now_utc()
        opens = self._opens_at(self.name, now)
        return opens.isoformat() if opens > now else None

    async def _form(self, visitor: str, who: Who, form: inbound.Form, push: Push) -> None:
        # Each one writes to the store: it counts against the session's message rate.
        if self._per_session.admit(visitor) is None:
            raise RateLimited(
                f"rate limited: more than {self.cfg.messages_per_minute} messages a minute"
                " in this chat"
            )
        before = who.as_dict()
        who.fill(form.fields, reply_by_email=form.reply_by_email)
        if who.as_dict() != before:
            await self.sessions.remember(visitor, who.as_dict())
        push({"t": "form", "saved": True})

    def _meta(self, who: Who) -> dict[str, Any]:
        """What the agent should know beside the text: left while we were closed."""
        meta: dict[str, Any] = {}
        if self._closed_until() is not None:
            meta["left_while_closed"] = True
        return meta

    async def _message(self, visitor: str, who: Who, msg: inbound.Msg, push: Push) -> None:
        size = len(msg.text.encode())
        if size > self.cfg.max_message_bytes:
            push(
                {
                    "t": "error",
                    "code": "too_large",
                    "cid": msg.cid,
                    "reason": f"message of {size} bytes; at most {self.cfg.max_message_bytes}",
                }
            )
            return
        self._admit(visitor)
        attachments = []
        for sha in msg.files:
            kept = await self.sessions.file(visitor, sha)
            if kept is None:
                push(
                    {
                        "t": "error",
                        "code": "no_such_file",
                        "cid": msg.cid,
                        "reason": "that file was not uploaded in this chat; attach it again",
                    }
                )
                return
            attachments.append(Attachment.model_validate(kept))
        envelope = inbound.to_envelope(
            self.name,
            visitor,
            msg,
            sender=who.sender,
            name=who.name,
            identities=who.identities,
            received_at=now_utc(),
            subject=who.topic,
            meta=self._meta(who),
            attachments=attachments,
            answer_at=who.reply_by_email,
        )
        await self._take(visitor, msg.cid, envelope, push)

    async def _callback(self, visitor: str, who: Who, frame: inbound.Callback, push: Push) -> None:
        """ "Call me back" on the number given, or the one the pre-chat form stated."""
        phone = frame.phone or next((v for k, v in who.identities if k == "phone"), None)
        if phone is None or not inbound.PHONE.match(phone) or sum(map(str.isdigit, phone)) < 5:
            code = "phone_required" if phone is None else "bad_phone"
            reason = "a phone number to call" if phone is None else f"not a phone number: {phone}"
            push({"t": "error", "code": code, "cid": frame.cid, "reason": reason})
            return
        self._admit(visitor)
        if frame.phone is not None:
            # The number they gave is the one they state from now on.
            who.identities = [(k, v) for k, v in who.identities if k != "phone"]
            who.identities.append(("phone", phone))
            await self.sessions.remember(visitor, who.as_dict())
        envelope = inbound.callback_envelope(
            self.name,
            visitor,
            frame,
            phone,
            sender=who.sender,
            name=who.name,
            identities=who.identities,
            received_at=now_utc(),
        )
        await self._take(visitor, frame.cid, envelope, push)

    async def _transcript(
        self, visitor: str, who: Who, frame: inbound.Transcript, push: Push
    ) -> None:
        """ "Email me the transcript": refused here when nothing could send it; else asked
        of the router (once on the bus: `state` `sent`), which answers in the chat."""
        address = who.reply_by_email
        if self.cfg.answer_by_email is None:
            code, reason = "no_email_channel", "this chat cannot send transcripts by email"
        elif address is None:
            code, reason = "email_required", "give your email and agree to be answered by email"
        elif await self.sessions.last(visitor) == 0:
            code, reason = "nothing_yet", "nothing has been said in this chat yet"
        else:
            self._admit(visitor)
            envelope = inbound.transcript_envelope(
                self.name, visitor, frame, address, sender=who.sender, received_at=now_utc()
            )
            outcome = await self._hand_over(envelope)
            state: dict[str, Any] = {"t": "state", "cid": frame.cid, "state": "sent"}
            if not outcome.done:
                state.update(state="failed", retry=outcome.retriable, reason=outcome.error)
            push(state)
            return
        push({"t": "error", "code": code, "cid": frame.cid, "reason": reason})

    def _admit(self, visitor: str) -> None:
        if self._per_session.admit(visitor) is None:
            raise RateLimited(
                f"rate limited: more than {self.cfg.messages_per_minute} messages a minute"
                " in this chat"
            )

    async def _take(self, visitor: str, cid: str, envelope: Envelope, push: Push) -> None:
        """Hand the visitor's envelope over and number it once it is on the bus; a resend
        of `cid` already sent creates nothing new."""
        async with self.sessions.intake(visitor) as append:
            seq = await self.sessions.sent(visitor, cid)
            if seq is None:
                outcome = await self._hand_over(envelope)
                if not outcome.done:
                    push(
                        {
                            "t": "state",
                            "cid": cid,
                            "state": "failed",
                            "retry": outcome.retriable,
                            "reason": outcome.error,
                        }
                    )
                    return
                frame = {
                    "t": "msg",
                    "id": envelope.id,
                    "from": "visitor",
                    "cid": cid,
                    "text": envelope.text,
                    "at": envelope.received_at.isoformat(),
                }
                frame = self._with_files(visitor, envelope, frame)
                seq = await append(frame, f"c:{cid}")
        push({"t": "state", "cid": cid, "state": "sent", "seq": seq})

    # --- the socket -------------------------------------------------------------------------

    async def socket(self, request: web.Request) -> web.StreamResponse:
        if not self._accepting:
            return self._refuse(request, 503, "the chat is not available right now; try again")
        if not self._origin_ok(request):
            return self._refuse(request, 403, "this page's origin may not open the chat")
        ws = web.WebSocketResponse(max_msg_size=self._max_frame, heartbeat=self._heartbeat)
        await ws.prepare(request)
        self._sockets.add(ws)
        out: asyncio.Queue[dict[str, Any] | None] = asyncio.Queue()
        push: Push = out.put_nowait
        writer = asyncio.create_task(_write(ws, out))
        try:
            await self._serve(ws, request, push)
        except WebchatError as exc:
            push({"t": "error", "code": exc.code, "reason": str(exc)})
            out.put_nowait(None)
            await writer
            await ws.close(code=exc.code, message=str(exc).encode()[:120])
        finally:
            self._sockets.discard(ws)
            if not writer.done():
                out.put_nowait(None)
                await writer
            await ws.close()
        return ws

    async def _serve(self, ws: web.WebSocketResponse, request: web.Request, push: Push) -> None:
        first = await self._next(ws)
        if first is None:
            return
        hello = inbound.parse(first)
        if not isinstance(hello, inbound.Hello):
            raise BadFrame("the first frame must be hello")
        visitor, who = await self._hello(hello, self._client(request))
        await self.sessions.join(visitor, push, hello.last, self._welcome(visitor, hello.lang))
        try:
            while (data := await self._next(ws)) is not None:
                frame = inbound.parse(data)
                if isinstance(frame, inbound.Ping):
                    push({"t": "pong"})
                elif isinstance(frame, inbound.Msg):
                    await self._message(visitor, who, frame, push)
                elif isinstance(frame, inbound.Form):
                    await self._form(visitor, who, frame, push)
                elif isinstance(frame, inbound.Callback):
                    await self._callback(visitor, who, frame, push)
                elif isinstance(frame, inbound.Transcript):
                    await self._transcript(visitor, who, frame, push)
                else:
                    raise BadFrame("hello only once per socket")
        finally:
            self.sessions.leave(visitor, push)

    async def _next(self, ws: web.WebSocketResponse) -> str | None:
        """The next text frame; None once the socket closed. Silence for two heartbeats is
        a half-open socket (4408)."""
        try:
            # One deadline for the frame: aiohttp's own timeout restarts on every pong.
            async with asyncio.timeout(2 * self._heartbeat):
                msg = await ws.receive()
        except TimeoutError:
            raise _Silent("no frame for two heartbeats") from None
        if msg.type == WSMsgType.TEXT:
            return str(msg.data)
        if msg.type == WSMsgType.BINARY:
            raise BadFrame("frames are JSON text")
        if msg.type == WSMsgType.ERROR and ws.close_code == 1009:
            return None  # aiohttp closed it already, with its reason
        return None

    # --- the HTTP fallback ------------------------------------------------------------------

    def _cors(self, request: web.Request, response: web.Response) -> web.Response:
        response.headers["Access-Control-Allow-Origin"] = request.headers.get("Origin", "")
        response.headers["Vary"] = "Origin"
        return response

    async def _body(self, request: web.Request) -> dict[str, Any] | web.Response:
        if not self._accepting:
            return self._refuse(request, 503, "the chat is not available right now; try again")
        if not self._origin_ok(request):
            return self._refuse(request, 403, "this page's origin may not open the chat")
        body = await read_body(request, self._max_frame)
        if body is None:
            return self._cors(request, self._refuse(request, 413, "frame too large"))
        try:
            obj = orjson.loads(body)
        except orjson.JSONDecodeError:
            return self._cors(request, self._refuse(request, 400, "frame is not JSON"))
        if not isinstance(obj, dict):
            return self._cors(request, self._refuse(request, 400, "frame is not a JSON object"))
        return obj

    async def http_frame(self, request: web.Request) -> web.Response:
        """One client frame by POST; the frames it gives, as a JSON array."""
        obj = await self._body(request)
        if isinstance(obj, web.Response):
            return obj
        frames: list[dict[str, Any]] = []
        try:
            frame = inbound.parse(orjson.dumps(obj))
            if isinstance(frame, inbound.Hello):
                visitor, _ = await self._hello(frame, self._client(request))
                await self.sessions.join(
                    visitor, frames.append, frame.last, self._welcome(visitor, frame.lang)
                )
                self.sessions.leave(visitor, frames.append)
            elif isinstance(
                frame, inbound.Msg | inbound.Callback | inbound.Form | inbound.Transcript
            ):
                visitor = verify_session(self._keys, obj.get("session"), time.time(), self._ttl)
                who = Who(visitor, await self.sessions.who(visitor))
                if isinstance(frame, inbound.Msg):
                    await self._message(visitor, who, frame, frames.append)
                elif isinstance(frame, inbound.Form):
                    await self._form(visitor, who, frame, frames.append)
                elif isinstance(frame, inbound.Transcript):
                    await self._transcript(visitor, who, frame, frames.append)
                else:
                    await self._callback(visitor, who, frame, frames.append)
            else:
                frames.append({"t": "pong"})
        except WebchatError as exc:
            status = 429 if isinstance(exc, RateLimited) else 401 if exc.code == 4401 else 400
            return self._cors(request, self._refuse(request, status, str(exc)))
        return self._cors(request, web.json_response(frames))

    async def poll(self, request: web.Request) -> web.Response:
        """The frames above `last`, waiting up to POLL_WAIT for one."""
        obj = await self._body(request)
        if isinstance(obj, web.Response):
            return obj
        try:
            visitor = verify_session(self._keys, obj.get("session"), time.time(), self._ttl)
        except WebchatError as exc:
            return self._cors(request, self._refuse(request, 401, str(exc)))
        last = obj.get("last", 0)
        if not isinstance(last, int) or last < 0:
            return self._cors(request, self._refuse(request, 400, "last: expected a seq"))
        frames: list[dict[str, Any]] = []
        arrived = asyncio.Event()

        def push(frame: dict[str, Any]) -> None:
            if frame.get("t") in (
                "msg",
                "standing",
                "assigned",
                "seen",
                "typing",
            ):  # not the greeting
                frames.append(frame)
                arrived.set()

        await self.sessions.join(visitor, push, last, lambda n: {"t": "welcome", "last": n})
        try:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(arrived.wait(), POLL_WAIT)
        finally:
            self.sessions.leave(visitor, push)
        return self._cors(request, web.json_response(frames))

    # --- attachments --------------------------------------------------------------------

    def _with_files(
        self, visitor: str, envelope: Envelope, frame: dict[str, Any]
    ) -> dict[str, Any]:
        """A `msg` frame with its envelope's attachments as links only this session has."""
        if frame.get("t") != "msg" or not envelope.attachments:
            return frame
        shown = []
        for a in envelope.attachments:
            name = files.safe_name(a.name, a.content_type)
            url = files.link(self._path, self._keys[0], visitor, a.sha256, name)
            shown.append({"name": name, "content_type": a.content_type, "size": a.size, "url": url})
        return {**frame, "files": shown}

    async def upload(self, request: web.Request) -> web.Response:
        """A visitor's file (the raw body; `?session=<token>&name=<file name>`): its type read
        from the bytes, kept in the blob store and with the session until a message
        carries it."""
        if not self._accepting:
            return self._refuse(request, 503, "the chat is not available right now; try again")
        if not self._origin_ok(request):
            return self._refuse(request, 403, "this page's origin may not open the chat")
        limit = self.cfg.max_attachment_bytes
        try:
            visitor = verify_session(
                self._keys, request.query.get("session"), time.time(), self._ttl
            )
            self._admit(visitor)
        except WebchatError as exc:
            status = 429 if isinstance(exc, RateLimited) else 401
            return self._cors(request, self._refuse(request, status, str(exc)))
        if limit == 0:
            return self._cors(request, self._refuse(request, 403, "this chat takes no files"))
        data = await read_body(request, limit)
        if data is None:
            return self._cors(
                request, self._refuse(request, 413, f"file larger than {limit} bytes")
            )
        content_type = files.sniff(data)
        if content_type is None:
            reason = "file type not accepted: send " + ", ".join(files.ALLOWED)
            return self._cors(request, self._refuse(request, 415, reason))
        try:
            sha, ref = await asyncio.to_thread(self._blobs.put, data)
        except BlobError as exc:
            log.error("web chat file not stored", channel=self.name, error=str(exc))
            return self._cors(request, self._refuse(request, 503, "could not keep the file"))
        name = files.safe_name(request.query.get("name"), content_type)
        attachment = Attachment(
            name=name, content_type=content_type, size=len(data), sha256=sha, ref=ref
        )
        await self.sessions.keep_file(visitor, sha, attachment.model_dump(mode="json"))
        log.info("web chat file", channel=self.name, visitor=visitor, sha256=sha, size=len(data))
        answer = {"file": sha, "name": name, "content_type": content_type, "size": len(data)}
        return self._cors(request, web.json_response(answer))

    async def download(self, request: web.Request) -> web.Response:
        """A file shown in a session, by the link only that session was given."""
        visitor, sha = request.match_info["visitor"], request.match_info["sha"]
        if not files.SHA.match(sha) or not files.link_ok(
            self._keys, visitor, sha, request.match_info["sig"]
        ):
            return self._refuse(request, 403, "not a link of this chat")
        try:
            data = await asyncio.to_thread(self._blobs.get, BlobStore.ref_for(sha))
        except BlobError as exc:
            return self._refuse(request, 404, str(exc))
        content_type = files.sniff(data) or "application/octet-stream"
        name = files.safe_name(request.match_info["name"], content_type)
        return web.Response(
            body=data,
            headers={
                "Content-Type": content_type,
                "Content-Disposition": f'attachment; filename="{name}"',
                "X-Content-Type-Options": "nosniff",
                "Cache-Control": "private, max-age=3600",
            },
        )


class _Silent(WebchatError):
    code = 4408


async def _write(ws: web.WebSocketResponse, out: asyncio.Queue[dict[str, Any] | None]) -> None:
    """One socket's writer: frames in the order they were pushed, until None."""
    while (frame := await out.get()) is not None:
        if ws.closed:
            continue
        with contextlib.suppress(ConnectionError, RuntimeError):
            await ws.send_str(orjson.dumps(frame).decode())


def build(name: str, settings: WebchatChannelConfig, services: Services) -> WebchatConnector:
    """The `ConnectorSpec.factory` for `type: webchat`."""
    return WebchatConnector(name, settings, services)
