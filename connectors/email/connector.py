"""The email connector: the IMAP intake and the SMTP sender behind the connector contract.

`receive()` reads the mailbox (and the agents' folder, when one is set) and
tells agents' mail from customers' (`agentmail.route`): an agent's mail
becomes its `reply` and/or `command` envelopes, all but the last acked with
nothing (a crash in between re-takes the mail; the router dedupes the ids),
the last with the mail's own ack. An agent's mail with nothing to pass on
(no text, no command) or sent by a machine (an out-of-office answer to a
notification, a bounce) is `Rejected`, with the reason, and never reaches a
customer.

`send()` sends customer replies and, for envelopes carrying `delivery`,
notifications to agents: built by `outbound`, sent by `client`.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
from collections.abc import AsyncIterator
from datetime import UTC, datetime

import structlog

from connectors.email.agentmail import agent_envelopes, route
from connectors.email.client import SmtpSender
from connectors.email.config import EmailChannelConfig
from connectors.email.errors import OutboundError
from connectors.email.imap import ImapIntake
from connectors.email.inbound import Options
from connectors.email.outbound import agent_address, build_notification, delivery_of
from router.blobs import BlobStore
from router.budget import Budget
from router.connector import DONE, Incoming, Outcome, Rejected, SendResult, Services, cancelled
from router.envelope import Envelope
from router.errors import OmniError

log = structlog.get_logger(__name__)

HOUSEKEEPING_SECONDS = 3600.0  # how often old markers are pruned

# One worker process normalizes for every email channel of this process: starting
# one costs about a second of CPU (an interpreter and its imports), far more than a
# message, so it outlives connectors restarted by the daemon. It ends with the process.
BUDGET = Budget("normalizing mail")


def options_for(cfg: EmailChannelConfig, blobs: BlobStore) -> Options:
    return Options(
        limits=cfg.limits,
        max_attachment_bytes=cfg.max_attachment_bytes or blobs.max_attachment_bytes,
        strip_quoted_history=cfg.strip_quoted_history,
        own_address=cfg.smtp.from_address,
    )


async def _nothing(outcome: Outcome = DONE) -> None:
    return None


class EmailConnector:
    """One email channel: `receive()` reads the mailbox; `send()` writes replies, notifications."""

    def __init__(self, name: str, cfg: EmailChannelConfig, services: Services) -> None:
        self.name = name
        self.cfg = cfg
        options = options_for(cfg, services.blobs)
        intake = functools.partial(
            ImapIntake, name, cfg, services.blobs, services.checkpoints, options, budget=BUDGET
        )
        self.intake = intake()
        folder = cfg.agents.folder
        self.agent_intake = intake(folder=folder) if folder and folder != cfg.imap.folder else None
        self.sender = SmtpSender(
            name, cfg.smtp, services.checkpoints, cfg.auto_reply_window, services.blobs
        )
        self._checkpoints = services.checkpoints
        self._housekeeping: asyncio.Task[None] | None = None

    def _intakes(self) -> list[ImapIntake]:
        return [self.intake] + ([self.agent_intake] if self.agent_intake is not None else [])

    async def start(self) -> None:
        """Connect and log in now, so a wrong password or folder shows at once."""
        for intake in self._intakes():
            await intake.connect()
        if self._housekeeping is None or self._housekeeping.done():
            self._housekeeping = asyncio.create_task(
                self._keep_house(), name=f"email-housekeeping:{self.name}"
            )

    async def stop(self) -> None:
        housekeeping, self._housekeeping = self._housekeeping, None
        await cancelled(housekeeping)
        for intake in self._intakes():
            await intake.close()

    async def prune(self, now: datetime) -> int:
        """Forget markers nobody needs any more: automatic-message times past their
        window, and taken-in messages' markers past `seen_retention`."""
        forgotten = 0
        for prefix, keep in (
            ("auto:", self.cfg.auto_reply_window),
            ("seen:", self.cfg.seen_retention),
        ):
            forgotten += await self._checkpoints.prune_checkpoints(self.name, prefix, now - keep)
        return forgotten

    async def _keep_house(self) -> None:
        while True:
            try:
                forgotten = await self.prune(datetime.now(UTC))
                if forgotten:
                    log.info("old markers pruned", channel=self.name, count=forgotten)
            except OmniError as exc:  # the store is down: try again next hour
                log.warning("could not prune markers", channel=self.name, error=str(exc))
            await asyncio.sleep(HOUSEKEEPING_SECONDS)

    # --- intake ---------------------------------------------------------------------------

    async def receive(self) -> AsyncIterator[Incoming | Rejected]:
        if self.agent_intake is None:
            async for item in self.intake.receive():
                for out in self._sort(item, agents_folder=False):
                    yield out
            return
        async for item, agents_folder in _merge(self.intake, self.agent_intake):
            for out in self._sort(item, agents_folder=agents_folder):
                yield out

    def _sort(self, item: Incoming | Rejected, *, agents_folder: bool) -> list[Incoming | Rejected]:
        """Customer mail as it is; an agent's mail as its reply and command envelopes."""
        if isinstance(item, Rejected):
            return [item]
        env = item.envelope
        meta = env.meta
        recipients = [*meta.get("to", []), *meta.get("cc", []), *meta.get("delivered_to", [])]
        found = route(recipients, self.cfg, agents_folder=agents_folder)
        if not found.agent:
            return [item]
        native = meta.get("message_id") or meta.get("native_id") or env.id
        if env.automated is not None:
            reasons = ", ".join(env.automated.reasons or ["automatic mail"])
            return [
                Rejected(
                    reason=f"automatic mail to the agents' reply address ({reasons});"
                    " not passed to the customer",
                    native_id=native,
                    ack=item.ack,
                )
            ]
        try:
            envelopes = agent_envelopes(env, found.token)
        except Exception as exc:  # a bug must not stop the intake on this mail forever
            log.exception("agent mail could not be read", channel=self.name, record_id=env.id)
            return [
                Rejected(
                    reason=f"internal error reading an agent's mail: {type(exc).__name__}",
                    native_id=native,
                    ack=item.ack,
                )
            ]
        if not envelopes:
            return [
                Rejected(
                    reason="agent's mail has no new text and no #command (only quoted text?)",
                    native_id=native,
                    ack=item.ack,
                )
            ]
        log.info(
            "agent mail taken in",
            channel=self.name,
            record_id=env.id,
            kinds=[e.kind for e in envelopes],
            token=found.token is not None,
        )
        acks = [_nothing] * (len(envelopes) - 1) + [item.ack]
        return [Incoming(envelope=e, ack=a) for e, a in zip(envelopes, acks, strict=True)]

    # --- sending --------------------------------------------------------------------------

    async def send(self, envelope: Envelope) -> SendResult:
        delivery = delivery_of(envelope)
        if delivery is None:
            return await self.sender.send(envelope)
        try:
            msg = build_notification(envelope, self.cfg)
            to = agent_address(delivery)
        except OutboundError as exc:
            return SendResult(status="failed", detail=f"unusable delivery to an agent: {exc}")
        result = await self.sender.deliver(msg, [to])
        if result.status != "sent":
            return result
        return SendResult(status="sent", detail=result.detail, native_id=str(msg["Message-ID"]))


async def _merge(
    main: ImapIntake, agents: ImapIntake
) -> AsyncIterator[tuple[Incoming | Rejected, bool]]:
    """Both folders' items, each as it comes, with whether it came from the agents' folder.

    Each folder is read by its own task, one item ahead at most; the first
    failure of either ends the merge with that error (the daemon restarts it).
    """
    queue: asyncio.Queue[tuple[Incoming | Rejected, bool] | BaseException] = asyncio.Queue(1)

    async def pump(intake: ImapIntake, agents_folder: bool) -> None:
        try:
            async for item in intake.receive():
                await queue.put((item, agents_folder))
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            await queue.put(exc)

    tasks = [
        asyncio.create_task(pump(main, False), name=f"imap:{main.folder}"),
        asyncio.create_task(pump(agents, True), name=f"imap:{agents.folder}"),
    ]
    try:
        while True:
            got = await queue.get()
            if isinstance(got, BaseException):
                raise got
            yield got
    finally:
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task


def build(name: str, settings: EmailChannelConfig, services: Services) -> EmailConnector:
    """The `ConnectorSpec.factory` for `type: email`."""
    return EmailConnector(name, settings, services)
