"""Intake: one IMAP folder read with IDLE (polling when the server lacks it), via aioimaplib.

Delivery is at-least-once and checkpointed:

- The checkpoint (`imap:<folder>` in the store: UIDVALIDITY and the last UID
  taken in) moves only in `ack()`, which the daemon calls once the envelope
  is durably on the bus. After a crash or a 48-hour outage, the next start
  takes in every UID above the checkpoint.
- Each taken-in message also leaves a `seen:<envelope id>` marker. Messages
  met again (a restart between publish and ack, a second copy of the same
  Message-ID, or everything after a UIDVALIDITY change, which makes the
  whole folder new) are skipped when their marker exists, so a recreated
  folder is resynced without duplicates. Messages without a Message-ID are
  keyed by a hash of their bytes.
- Once acked, a message is flagged, moved or deleted per `processed` (in
  batches, before the next wait); the checkpoint, not the flag, is the truth.
- IDLE is re-issued every `idle_renew` (servers drop it at 30 minutes). A
  dropped connection or a BYE closes the connection and raises a retriable
  `ImapError`; a refused login, folder or certificate raises a non-retriable
  one. The daemon's channel runner reconnects (`router.channels`): the intake
  has no reconnect loop of its own.
- A message that cannot be normalized is yielded as `Rejected` with the reason
  and its raw bytes in the blob store; a message above
  `limits.max_message_bytes` is rejected without being downloaded. `normalize`
  runs under the connector's CPU budget (`router.budget`, in a worker
  process): a message that would keep it busy longer is rejected the same
  way, and the next one is read.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import re
import ssl
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any

import aioimaplib
import orjson
import structlog

from connectors.email.config import EmailChannelConfig, ImapConfig
from connectors.email.errors import ImapError, MalformedMessage
from connectors.email.inbound import Options, cpu_seconds, normalize
from connectors.email.threads import resolve_token
from connectors.email.tls import TlsSetupError, client_context, describe_tls_failure, tls_failure
from router.blobs import BlobStore
from router.budget import Budget, BudgetExceeded
from router.config.secrets import SecretRef
from router.connector import DONE, Checkpoints, Incoming, Outcome, Rejected
from router.envelope import Envelope

log = structlog.get_logger(__name__)

_UIDVALIDITY = re.compile(rb"\[UIDVALIDITY (\d+)\]")
_UIDNEXT = re.compile(rb"\[UIDNEXT (\d+)\]")
_FETCH_SIZE = re.compile(rb"UID (\d+).*RFC822\.SIZE (\d+)|RFC822\.SIZE (\d+).*UID (\d+)")
_FETCH_UID = re.compile(rb"UID (\d+)")
_CONNECTION_ERRORS = (aioimaplib.AioImapException, OSError, asyncio.TimeoutError, EOFError)


class _Lost(Exception):
    """The connection dropped or the server said BYE."""


@dataclass(frozen=True, slots=True)
class Position:
    uidvalidity: int
    last_uid: int

    def dump(self) -> str:
        return orjson.dumps({"uidvalidity": self.uidvalidity, "last_uid": self.last_uid}).decode()

    @staticmethod
    def load(raw: str | None) -> Position | None:
        if raw is None:
            return None
        try:
            data = orjson.loads(raw)
            return Position(int(data["uidvalidity"]), int(data["last_uid"]))
        except (orjson.JSONDecodeError, KeyError, TypeError, ValueError):
            log.warning("unreadable IMAP checkpoint; starting over", value=raw[:100])
            return None


def quote_mailbox(name: str) -> str:
    if re.fullmatch(r"[A-Za-z0-9_./-]+", name):
        return name
    escaped = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{escaped}"'


def _check(response: Any, what: str, *, retriable: bool = True) -> Any:
    if response.result != "OK":
        text = b" ".join(line for line in response.lines if isinstance(line, bytes))
        raise ImapError(
            f"{what} refused: {response.result} {text.decode('utf-8', 'replace')[:200]}",
            retriable=retriable,
        )
    return response


class ImapIntake:
    """Reads one folder of one mailbox; yields `Incoming` or `Rejected`, one at a time."""

    def __init__(
        self,
        channel: str,
        cfg: EmailChannelConfig,
        blobs: BlobStore,
        checkpoints: Checkpoints,
        options: Options,
        *,
        budget: Budget,
        folder: str | None = None,
    ) -> None:
        self.channel = channel
        self.cfg: ImapConfig = cfg.imap
        self.blobs = blobs
        self.checkpoints = checkpoints
        self.options = options
        self.budget = budget
        self.folder = folder or self.cfg.folder
        self.key = f"imap:{self.folder}"
        self.timeout = self.cfg.timeout.total_seconds()
        self.client: aioimaplib.IMAP4 | None = None
        self.uidvalidity = 0
        self.uidnext = 0
        self.position: Position | None = None
        self._lost = False
        self._gone = asyncio.Event()  # set when the current connection's socket is closed
        self._done: list[int] = []  # acked UIDs still to flag / move / delete
        # UIDs acked "not yet" in this session: the checkpoint stays below the lowest,
        # whatever later UIDs are done, so they are offered again after a reconnect.
        self._held: set[int] = set()
        # UIDs yielded and not yet acked (the runner has several in flight at once), and
        # an event set whenever there are none: the flush waits for them.
        self._out: set[int] = set()
        self._settled = asyncio.Event()
        self._settled.set()

    # --- connection ---------------------------------------------------------------------

    def _on_lost(self, exc: Exception | None) -> None:
        self._lost = True
        self._gone.set()
        client = self.client
        if client is not None:  # wake an IDLE wait
            client.protocol.idle_queue.put_nowait(aioimaplib.STOP_WAIT_SERVER_PUSH)

    async def connect(self) -> None:
        """Connect, secure, log in and select the folder; read UIDVALIDITY and the checkpoint."""
        await self.close()
        cfg = self.cfg
        self._lost = False
        self._gone = asyncio.Event()
        try:
            tls = None
            if cfg.security != "none":
                tls = client_context(
                    cfg.ca_file, verify=cfg.verify_certificate, what=f"imap {cfg.host}:{cfg.port}"
                )
            client = aioimaplib.IMAP4(
                host=cfg.host,
                port=cfg.port,
                timeout=self.timeout,
                conn_lost_cb=self._on_lost,
                ssl_context=tls if cfg.security == "tls" else None,
            )
            self.client = client
            await client.wait_hello_from_server()
            if cfg.security == "starttls":
                assert tls is not None
                await self._starttls(client, tls)
            await self._login(client)
            response = _check(
                await client.select(quote_mailbox(self.folder)),
                f"select {self.folder!r}",
                retriable=False,
            )
        except ImapError:
            await self.close()
            raise
        except TlsSetupError as exc:
            await self.close()
            raise ImapError(str(exc), retriable=False) from exc
        except _CONNECTION_ERRORS as exc:
            await self.close()
            if (tls_error := tls_failure(exc)) is not None:
                # A certificate the configured trust does not accept is a setting (or an
                # attack) to look at, not a hiccup: the daemon's slower backoff applies.
                raise ImapError(
                    describe_tls_failure(tls_error, cfg.host, cfg.port, cfg.ca_file),
                    retriable=not isinstance(tls_error, ssl.SSLCertVerificationError),
                ) from exc
            raise ImapError(f"cannot reach {cfg.host}:{cfg.port}: {_describe(exc)}") from exc
        self.uidvalidity = self.uidnext = 0
        for line in response.lines:
            if isinstance(line, bytes):
                if m := _UIDVALIDITY.search(line):
                    self.uidvalidity = int(m.group(1))
                if m := _UIDNEXT.search(line):
                    self.uidnext = int(m.group(1))
        stored = Position.load(await self.checkpoints.get_checkpoint(self.channel, self.key))
        if stored is not None and stored.uidvalidity != self.uidvalidity:
            log.warning(
                "UIDVALIDITY changed: resyncing the folder, skipping what was taken in",
                channel=self.channel,
                folder=self.folder,
                old=stored.uidvalidity,
                new=self.uidvalidity,
            )
            stored = Position(self.uidvalidity, 0)
        self.position = stored
        self._done.clear()
        self._held.clear()
        self._out.clear()
        self._settled.set()

    async def _starttls(self, client: aioimaplib.IMAP4, tls: ssl.SSLContext) -> None:
        protocol = client.protocol
        if "STARTTLS" not in protocol.capabilities:
            raise ImapError(f"{self.cfg.host} does not offer STARTTLS", retriable=False)
        cmd = aioimaplib.Command("STARTTLS", protocol.new_tag(), loop=protocol.loop)
        _check(await asyncio.wait_for(protocol.execute(cmd), self.timeout), "STARTTLS")
        # Bytes that came before the handshake are not part of the TLS session: drop
        # any a man in the middle injected after the OK (the STARTTLS injection attack).
        protocol.incomplete_line = b""
        loop = asyncio.get_running_loop()
        transport = await loop.start_tls(
            protocol.transport,
            protocol,
            tls,
            server_hostname=self.cfg.host,
            ssl_handshake_timeout=self.timeout,
        )
        protocol.transport = transport
        # Capabilities learnt before TLS are forgotten and asked again (RFC 3501 6.2.1).
        await asyncio.wait_for(protocol.capability(), self.timeout)

    async def _login(self, client: aioimaplib.IMAP4) -> None:
        cfg = self.cfg
        what = f"login as {cfg.username!r}"
        if cfg.auth == "xoauth2":
            token = _secret(cfg.oauth2_token)
            response, challenge = await _xoauth2(client, cfg.username, token)
            if response.result != "OK" and challenge:
                try:
                    _check(response, what, retriable=False)
                except ImapError as exc:
                    raise ImapError(
                        f"{exc} (the server's token error: {challenge})", retriable=False
                    ) from None
        else:
            if client.has_capability("LOGINDISABLED"):
                # The server refuses passwords on this connection: never send it one.
                raise ImapError(
                    f"{what}: the server does not accept a password without TLS"
                    " (LOGINDISABLED); use security: tls or starttls",
                    retriable=False,
                )
            response = await client.login(cfg.username, _secret(cfg.password))
        # A refused login is not retried (a wrong password stays wrong), except where the
        # server says its own authentication is failing for now (RFC 5530 UNAVAILABLE).
        _check(response, what, retriable=_temporary(response))

    async def close(self) -> None:
        client, self.client = self.client, None
        if client is None:
            return
        try:
            if not self._lost and client.get_state() in ("AUTH", "SELECTED", "NONAUTH"):
                await asyncio.wait_for(client.logout(), 2)
        except (*_CONNECTION_ERRORS, RuntimeError):
            pass
        finally:
            transport = client.protocol.transport
            if transport is not None and not transport.is_closing():
                transport.close()
                # A TLS transport closes its socket only after the close_notify exchange:
                # wait for it, briefly, and cut it short rather than leave the socket open.
                try:
                    await asyncio.wait_for(self._gone.wait(), 2)
                except TimeoutError:
                    transport.abort()
            for task in list(client.tasks) + list(client.protocol.tasks):
                task.cancel()
            if not client._client_task.done():
                client._client_task.cancel()

    # --- the loop -------------------------------------------------------------------------

    async def receive(self) -> AsyncIterator[Incoming | Rejected]:
        try:
            if self.client is None or self._lost:
                await self.connect()
            while True:
                highest = 0
                async for item, uid in self._drain():
                    highest = max(highest, uid)
                    self._out.add(uid)
                    self._settled.clear()
                    yield item
                # The runner takes the next item before this round's are acked (several
                # in flight): wait for their acks, so they are flagged now, not a wait later.
                await self._settled.wait()
                await self._flush_done()
                # Mail that arrived while we worked may have been announced in the
                # answer to one of our commands, not again in IDLE: look before idling.
                # (Dovecot announces a message that lands during a FETCH with
                # EXISTS in that FETCH's answer, and only RECENT in the next IDLE.)
                if self.position is not None and await self._arrived_after(
                    max(highest, self.position.last_uid)
                ):
                    continue
                await self._wait()
        except ImapError:
            await self.close()
            raise
        except (_Lost, *_CONNECTION_ERRORS) as exc:
            await self.close()
            raise ImapError(f"IMAP connection lost: {_describe(exc)}") from exc

    async def _client(self) -> aioimaplib.IMAP4:
        if self.client is None or self._lost:
            raise _Lost("not connected")
        return self.client

    async def _pending(self) -> list[tuple[int, int]]:
        """(UID, size) of the messages to take in now, in UID order."""
        client = await self._client()
        if self.position is None:  # the very first start on this folder
            first = self.cfg.first_start
            if first == "new":
                self.position = Position(self.uidvalidity, max(self.uidnext - 1, 0))
                await self._save()
                return []
            if first == "unseen":
                resp = _check(await client.uid_search("UNSEEN", charset=None), "search")
                wanted = {int(u) for line in resp.lines[:-1] for u in line.split() if u.isdigit()}
                sizes = await self._sizes("1:*")
                return [(u, s) for u, s in sizes if u in wanted]
            self.position = Position(self.uidvalidity, 0)
        last = self.position.last_uid
        return [(u, s) for u, s in await self._sizes(f"{last + 1}:*") if u > last]

    async def _sizes(self, uid_range: str) -> list[tuple[int, int]]:
        client = await self._client()
        resp = _check(await client.uid("fetch", uid_range, "(UID RFC822.SIZE)"), "fetch sizes")
        found = []
        for line in resp.lines:
            if isinstance(line, bytes) and (m := _FETCH_SIZE.search(line)):
                uid = m.group(1) or m.group(4)
                size = m.group(2) or m.group(3)
                found.append((int(uid), int(size)))
        return sorted(found)

    async def _drain(self) -> AsyncIterator[tuple[Incoming | Rejected, int]]:
        for uid, size in await self._pending():
            item = await self._take(uid, size)
            if item is not None:
                yield item, uid

    async def _arrived_after(self, uid: int) -> bool:
        return any(u > uid for u, _ in await self._sizes(f"{uid + 1}:*"))

    async def _take(self, uid: int, size: int) -> Incoming | Rejected | None:
        validity = self.uidvalidity
        limit = self.options.limits.max_message_bytes
        if size > limit:
            return Rejected(
                reason=f"message is {size} bytes, more than limits.max_message_bytes ({limit})",
                native_id=f"{self.folder}/{validity}/{uid}",
                ack=self._acker(uid, validity, None),
            )
        raw = await self._fetch(uid)
        if raw is None:
            return None  # expunged meanwhile
        try:
            envelope = await self.budget.run(
                normalize,
                raw,
                self.channel,
                self.blobs,
                self.options,
                cpu_seconds=cpu_seconds(len(raw), self.options.limits),
            )
        except (MalformedMessage, BudgetExceeded) as exc:
            if exc.retriable:  # the worker could not start: not this message's fault
                raise ImapError(str(exc)) from exc
            sha, ref = await asyncio.to_thread(self.blobs.put, raw)
            seen = f"seen:raw:{sha}"
            if await self.checkpoints.get_checkpoint(self.channel, seen) is not None:
                await self._skip(uid, validity)
                return None
            return Rejected(
                reason=str(exc),
                native_id=f"{self.folder}/{validity}/{uid}",
                raw_ref=ref,
                ack=self._acker(uid, validity, seen),
            )
        seen = f"seen:{envelope.id}"
        if await self.checkpoints.get_checkpoint(self.channel, seen) is not None:
            await self._skip(uid, validity)
            return None
        envelope = await self._thread_by_token(envelope)
        return Incoming(envelope=envelope, ack=self._acker(uid, validity, seen))

    async def _fetch(self, uid: int) -> bytes | None:
        client = await self._client()
        resp = _check(await client.uid("fetch", str(uid), "(UID BODY.PEEK[])"), "fetch")
        for line in resp.lines:
            if isinstance(line, bytearray):
                return bytes(line)
        return None

    async def _thread_by_token(self, envelope: Envelope) -> Envelope:
        meta = envelope.meta
        token = meta.get("conversation_ref")
        if not token or meta.get("thread_source") != "message_id":
            return envelope
        root = await resolve_token(self.checkpoints, self.channel, token, envelope.sender.address)
        if root is None:
            return envelope
        return envelope.model_copy(
            update={"thread_key": root, "meta": {**meta, "thread_source": "token"}}
        )

    # --- acknowledgement and the checkpoint ----------------------------------------------

    def _acker(self, uid: int, validity: int, seen: str | None) -> Any:
        async def ack(outcome: Outcome = DONE) -> None:
            try:
                if outcome.retriable:
                    self._held.add(uid)  # not taken yet: unflagged, and offered again
                    return
                if seen is not None:
                    await self.checkpoints.set_checkpoint(self.channel, seen, f"{validity}/{uid}")
                await self._advance(uid, validity)
            finally:
                self._out.discard(uid)
                if not self._out:
                    self._settled.set()

        return ack

    async def _skip(self, uid: int, validity: int) -> None:
        """Already taken in: move past it without yielding it again."""
        await self._advance(uid, validity)

    async def _advance(self, uid: int, validity: int) -> None:
        if validity != self.uidvalidity or self.position is None:
            return  # the folder changed under us: the resync will see it again
        below_held = min(self._held, default=uid + 1) - 1
        if min(uid, below_held) > self.position.last_uid:
            self.position = Position(validity, min(uid, below_held))
            await self._save()
        if self.cfg.processed != "none":
            self._done.append(uid)

    async def _save(self) -> None:
        assert self.position is not None
        await self.checkpoints.set_checkpoint(self.channel, self.key, self.position.dump())

    async def _flush_done(self) -> None:
        """Flag, move or delete the messages taken in since the last flush."""
        if not self._done:
            return
        client = await self._client()
        uids = ",".join(str(u) for u in sorted(set(self._done)))
        policy = self.cfg.processed
        if policy == "flag":
            _check(
                await client.uid("store", uids, "+FLAGS.SILENT", f"({self.cfg.processed_flag})"),
                "flag processed",
            )
        elif policy == "move":
            target = quote_mailbox(self.cfg.processed_folder or "")
            if client.has_capability("MOVE"):
                _check(await client.uid("move", uids, target), "move processed")
            else:
                _check(await client.uid("copy", uids, target), "copy processed")
                await self._expunge(client, uids)
        elif policy == "delete":
            await self._expunge(client, uids)
        self._done.clear()

    async def _expunge(self, client: aioimaplib.IMAP4, uids: str) -> None:
        _check(await client.uid("store", uids, "+FLAGS.SILENT", r"(\Deleted)"), "mark deleted")
        if client.has_capability("UIDPLUS"):
            _check(await client.uid("expunge", uids), "expunge")
        else:
            _check(await client.expunge(), "expunge")

    # --- waiting for news -------------------------------------------------------------------

    async def _wait(self) -> None:
        client = await self._client()
        if not client.has_capability("IDLE"):
            await asyncio.sleep(self.cfg.poll_interval.total_seconds())
            return
        renew = self.cfg.idle_renew.total_seconds()
        idle = await client.idle_start(timeout=renew)
        try:
            while True:
                push = await client.wait_server_push(timeout=renew + self.timeout)
                if self._lost:
                    raise _Lost("connection closed during IDLE")
                if push == aioimaplib.STOP_WAIT_SERVER_PUSH:
                    break  # time to re-issue IDLE
                lines = [line for line in push if isinstance(line, bytes)]
                if any(line.startswith(b"BYE") for line in lines):
                    raise _Lost("server said BYE")
                if any(line.endswith((b"EXISTS", b"RECENT")) for line in lines):
                    break
        finally:
            if not self._lost and client.has_pending_idle():
                client.idle_done()
                try:
                    await asyncio.wait_for(idle, self.timeout)
                except _CONNECTION_ERRORS:
                    pass
            if not idle.done():
                idle.cancel()


async def _xoauth2(client: aioimaplib.IMAP4, user: str, token: str) -> tuple[Any, str]:
    """AUTHENTICATE XOAUTH2; the response and the server's error challenge, if it sent one.

    A server refusing the token first sends a continuation carrying a JSON error
    (`+ eyJzdGF0dXMiOi...`) and gives its tagged NO only after the client answers
    it with an empty line. aioimaplib's `xoauth2` does not answer and would wait
    for the timeout, so while this command runs the answer is sent here.
    """
    protocol = client.protocol
    challenges: list[bytes] = []
    ignore = protocol._continuation

    def answer(line: bytes) -> None:
        command = protocol.pending_sync_command
        if command is not None and command.name == "AUTHENTICATE":
            challenges.append(line)
            protocol.transport.write(b"\r\n")
        else:
            ignore(line)

    protocol._continuation = answer
    try:
        response = await client.xoauth2(user, token)
    finally:
        del protocol._continuation  # the class's own handler again
    return response, "; ".join(_decode_challenge(c) for c in challenges)


def _decode_challenge(line: bytes) -> str:
    payload = line.removeprefix(b"+").strip()
    try:
        text = base64.b64decode(payload, validate=True).decode("utf-8", "replace")
    except (binascii.Error, ValueError):
        text = payload.decode("ascii", "replace")
    return text[:200]


def _secret(ref: SecretRef | None) -> str:
    """A secret, read again from its file when it came from one (rotation without reload)."""
    if ref is None:
        raise ImapError("no credentials configured", retriable=False)
    try:
        return ref.current()
    except OSError as exc:
        raise ImapError(f"cannot read {ref.path}: {exc.strerror}") from exc


def _temporary(response: Any) -> bool:
    return any(isinstance(line, bytes) and b"[UNAVAILABLE]" in line for line in response.lines)


def _describe(exc: BaseException) -> str:
    text = str(exc)
    return f"{type(exc).__name__}: {text}" if text else type(exc).__name__
