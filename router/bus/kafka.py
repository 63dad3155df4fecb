"""The Kafka bus, via aiokafka.

- Producer: idempotent, `acks="all"`; `produce()` returns once the broker has
  the record on every in-sync replica. Keys go through Kafka's default
  partitioner (murmur2, the same as `router.bus.partition_for`).
- Consumers: `enable_auto_commit=False`, `auto_offset_reset="earliest"`;
  `commit(records)` commits, per partition, the offset after the highest
  record given. Partitions revoked by a rebalance before the commit are
  skipped (logged): the new owner gets those records again (at-least-once).
- `ensure_topics` creates missing topics with the admin client and waits until
  every partition has a leader; a topic created concurrently by someone else
  is fine.
- `backlog` (for the metrics) reads a group's committed offsets with an admin
  client and the topics' end offsets with a consumer in no group, both started
  at its first use: it never joins the group it measures.
- Every aiokafka exception stops here: it is re-raised as `BusError` (`from`
  the original), retriable unless the cause is the record or the configuration
  (too large, invalid topic, not authorized, bad config).
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
from collections.abc import AsyncGenerator, AsyncIterator, Mapping, Sequence
from typing import Any

import structlog
from aiokafka import AIOKafkaClient, AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka import errors as kerr
from aiokafka.admin import AIOKafkaAdminClient, NewTopic

from router.bus.base import DEFAULT_MAX_RECORD_BYTES, Record, check_record_size
from router.errors import BusError

log = structlog.get_logger(__name__)

# errors caused by the record or the configuration: retrying will not help
_FATAL: tuple[type[BaseException], ...] = (
    kerr.MessageSizeTooLargeError,
    kerr.RecordTooLargeError,
    kerr.RecordListTooLargeError,
    kerr.InvalidTopicError,
    kerr.TopicAuthorizationFailedError,
    kerr.GroupAuthorizationFailedError,
    kerr.ClusterAuthorizationFailedError,
    kerr.AuthenticationFailedError,
    kerr.AuthenticationMethodNotSupported,
    kerr.SaslAuthenticationFailed,
    kerr.UnsupportedSaslMechanismError,
    kerr.KafkaConfigurationError,
    kerr.InvalidReplicationFactorError,
    kerr.InvalidPartitionsError,
    kerr.IllegalOperation,
    kerr.UnsupportedVersionError,
    kerr.IncompatibleBrokerVersion,
)
PING_TIMEOUT = 3.0
TOPIC_READY_TIMEOUT = 30.0
SCAN_STALL_TIMEOUT = 30.0  # a scan with records left that none arrive for gives up


def _wrap(exc: BaseException, what: str) -> BusError:
    return BusError(
        f"kafka {what}: {type(exc).__name__}: {exc}", retriable=not isinstance(exc, _FATAL)
    )


@contextlib.asynccontextmanager
async def _boundary(what: str) -> AsyncIterator[None]:
    """Re-raise aiokafka's (and the network's) exceptions as BusError."""
    try:
        yield
    except BusError:
        raise
    except (kerr.KafkaError, OSError, TimeoutError) as exc:
        raise _wrap(exc, what) from exc


class KafkaBus:
    """The bus on an Apache Kafka cluster."""

    def __init__(
        self,
        bootstrap_servers: str,
        *,
        partitions: int = 6,
        replication_factor: int = 1,
        client_id: str = "omnirouter",
        instance_id: str | None = None,
        max_record_bytes: int = DEFAULT_MAX_RECORD_BYTES,
        security_protocol: str = "PLAINTEXT",
        ssl_context: ssl.SSLContext | None = None,
        sasl_mechanism: str = "PLAIN",
        sasl_plain_username: str | None = None,
        sasl_plain_password: str | None = None,
    ) -> None:
        if partitions < 1 or replication_factor < 1:
            raise ValueError("partitions and replication_factor must be >= 1")
        self.bootstrap_servers = bootstrap_servers
        self.partitions = partitions
        self.replication_factor = replication_factor
        self.client_id = client_id
        self.instance_id = instance_id
        self.max_record_bytes = max_record_bytes
        self._common: dict[str, Any] = {
            "bootstrap_servers": bootstrap_servers,
            "security_protocol": security_protocol,
            "ssl_context": ssl_context,
            "sasl_mechanism": sasl_mechanism,
            "sasl_plain_username": sasl_plain_username,
            "sasl_plain_password": sasl_plain_password,
        }
        self._producer: Any = None
        self._consumers: set[KafkaConsumer] = set()
        # For `backlog`, started at its first use: an admin client (group offsets, topic
        # partitions) and a consumer in no group (end and start offsets).
        self._offsets: tuple[Any, Any] | None = None

    def __repr__(self) -> str:  # never show credentials
        return f"KafkaBus({self.bootstrap_servers!r}, partitions={self.partitions})"

    # -- lifecycle -------------------------------------------------------

    async def start(self) -> None:
        if self._producer is not None:
            return
        producer = AIOKafkaProducer(
            **self._common,
            client_id=self.client_id,
            enable_idempotence=True,
            acks="all",
            linger_ms=0,
            # The producer's own bound: a record passing our check must pass its check too.
            max_request_size=max(self.max_record_bytes + 4096, 1_048_576),
        )
        try:
            async with _boundary("producer start"):
                await producer.start()
        except BaseException:
            await producer.stop()
            raise
        self._producer = producer

    async def stop(self) -> None:
        for consumer in list(self._consumers):
            await consumer.close()
        offsets, self._offsets = self._offsets, None
        if offsets is not None:
            await _close_offset_clients(*offsets)
        producer, self._producer = self._producer, None
        if producer is not None:
            with contextlib.suppress(kerr.KafkaError, OSError):
                await producer.stop()

    async def __aenter__(self) -> KafkaBus:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _live_producer(self) -> Any:
        if self._producer is None:
            raise BusError("kafka bus is not started", retriable=False)
        return self._producer

    # -- Bus ---------------------------------------------------------------

    async def ensure_topics(self, names: Sequence[str]) -> None:
        wanted = list(dict.fromkeys(names))
        if not wanted:
            return
        admin = AIOKafkaAdminClient(**self._common, client_id=f"{self.client_id}-admin")
        try:
            async with _boundary("ensure_topics"):
                await admin.start()
                existing = set(await admin.list_topics())
                missing = [n for n in wanted if n not in existing]
                if missing:
                    response = await admin.create_topics(
                        [NewTopic(n, self.partitions, self.replication_factor) for n in missing]
                    )
                    for topic, code, *rest in response.topic_errors:
                        if code not in (0, kerr.TopicAlreadyExistsError.errno):
                            err = kerr.for_code(code)
                            raise err(f"{topic}: {rest[0] if rest else ''}")
                await self._wait_ready(admin, wanted)
        finally:
            with contextlib.suppress(kerr.KafkaError, OSError):
                await admin.close()

    @staticmethod
    async def _wait_ready(admin: Any, names: list[str]) -> None:
        """Wait until every partition of `names` has a leader."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + TOPIC_READY_TIMEOUT
        while True:
            topics = await admin.describe_topics(names)
            ready = all(
                t["error_code"] == 0
                and t["partitions"]
                and all(p["error_code"] == 0 and p["leader"] >= 0 for p in t["partitions"])
                for t in topics
            )
            if ready and len(topics) == len(names):
                return
            if loop.time() > deadline:
                raise BusError(f"kafka topics not ready after {TOPIC_READY_TIMEOUT:.0f} s: {names}")
            await asyncio.sleep(0.1)

    async def produce(self, topic: str, key: bytes, value: bytes) -> None:
        producer = self._live_producer()
        check_record_size(topic, key, value, self.max_record_bytes)
        async with _boundary(f"produce to {topic}"):
            await producer.send_and_wait(topic, value=value, key=key)

    async def consumer(self, group: str, topics: Sequence[str]) -> KafkaConsumer:
        if not topics:
            raise BusError("a consumer needs at least one topic", retriable=False)
        inner = AIOKafkaConsumer(
            *dict.fromkeys(topics),
            **self._common,
            client_id=self.client_id,
            group_id=group,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
            # Static membership: one id per (process, group); group ids keep them apart.
            group_instance_id=self.instance_id,
        )
        try:
            async with _boundary(f"consumer start ({group})"):
                await inner.start()
        except BaseException:
            await inner.stop()
            raise
        consumer = KafkaConsumer(self, inner, group)
        self._consumers.add(consumer)
        return consumer

    async def scan(
        self, topic: str, start: Mapping[int, int] | None = None
    ) -> AsyncGenerator[list[Record], None]:
        # No group: partitions assigned by hand, positions held in memory only.
        inner = AIOKafkaConsumer(
            **self._common,
            client_id=f"{self.client_id}-scan",
            group_id=None,
            enable_auto_commit=False,
            auto_offset_reset="earliest",
        )
        try:
            async with _boundary(f"scan {topic}"):
                await inner.start()
                found = await self._live_producer().partitions_for(topic)
                wanted = found if start is None else set(start) & found
                tps = [TopicPartition(topic, p) for p in sorted(wanted)]
                if not tps:
                    return
                inner.assign(tps)
                ends = await inner.end_offsets(tps)
                for tp in tps:
                    if start is None:
                        await inner.seek_to_beginning(tp)
                    else:
                        inner.seek(tp, start[tp.partition])
                left = {tp for tp in tps if await inner.position(tp) < ends[tp]}
            loop = asyncio.get_running_loop()
            stalled_at = loop.time() + SCAN_STALL_TIMEOUT
            while left:
                async with _boundary(f"scan {topic}"):
                    got = await inner.getmany(*left, timeout_ms=500, max_records=500)
                    done = {tp for tp in left if await inner.position(tp) >= ends[tp]}
                batch = [
                    Record(tp.topic, tp.partition, m.offset, m.key or b"", m.value or b"")
                    for tp, msgs in sorted(got.items(), key=lambda item: item[0].partition)
                    for m in msgs
                    if m.offset < ends[tp]
                ]
                left -= done
                if batch or done:
                    stalled_at = loop.time() + SCAN_STALL_TIMEOUT
                elif loop.time() > stalled_at:
                    raise BusError(f"kafka scan {topic}: no records for {SCAN_STALL_TIMEOUT} s")
                if batch:
                    yield batch
        finally:
            with contextlib.suppress(kerr.KafkaError, OSError):
                await inner.stop()

    async def backlog(self, group: str, topics: Sequence[str]) -> dict[str, int]:
        self._live_producer()  # started, not stopped
        async with _boundary(f"backlog ({group})"):
            admin, reader = await self._offset_clients()
            tps = [
                TopicPartition(t["topic"], p["partition"])
                for t in await admin.describe_topics(list(topics))
                for p in t["partitions"]
            ]
            committed = await admin.list_consumer_group_offsets(group, partitions=tps)
            ends = await reader.end_offsets(tps)
            starts = await reader.beginning_offsets(tps)
        result = dict.fromkeys(topics, 0)
        for tp in tps:
            done = committed.get(tp)
            # Never committed (-1), or committed below what retention kept: from the start.
            since = max(done.offset if done is not None else -1, starts[tp])
            result[tp.topic] += max(ends[tp] - since, 0)
        return result

    async def _offset_clients(self) -> tuple[Any, Any]:
        if self._offsets is None:
            admin = AIOKafkaAdminClient(**self._common, client_id=f"{self.client_id}-offsets")
            reader = AIOKafkaConsumer(
                **self._common, client_id=f"{self.client_id}-offsets", group_id=None
            )
            try:
                await admin.start()
                await reader.start()
            except BaseException:
                await _close_offset_clients(admin, reader)
                raise
            self._offsets = (admin, reader)
        return self._offsets

    async def ping(self) -> bool:
        """True if cluster metadata arrives within a few seconds; never raises."""
        try:
            if self._producer is not None:
                md = await asyncio.wait_for(
                    self._producer.client.fetch_all_metadata(), PING_TIMEOUT
                )
                return bool(md.brokers())
            client = AIOKafkaClient(**self._common, client_id=f"{self.client_id}-ping")
            try:
                await asyncio.wait_for(client.bootstrap(), PING_TIMEOUT)
                return bool(client.cluster.brokers())
            finally:
                await client.close()
        except Exception:
            return False


async def _close_offset_clients(admin: Any, reader: Any) -> None:
    with contextlib.suppress(kerr.KafkaError, OSError):
        await reader.stop()
    with contextlib.suppress(kerr.KafkaError, OSError):
        await admin.close()


class KafkaConsumer:
    """One member of a Kafka consumer group."""

    def __init__(self, bus: KafkaBus, inner: Any, group: str) -> None:
        self._bus = bus
        self._inner = inner
        self.group = group
        self._closed = False

    @property
    def assignment(self) -> frozenset[tuple[str, int]]:
        return frozenset((tp.topic, tp.partition) for tp in self._inner.assignment())

    async def fetch(self, max_records: int = 500, timeout: float = 1.0) -> list[Record]:  # noqa: ASYNC109
        if self._closed:
            raise BusError("consumer is closed", retriable=False)
        async with _boundary(f"fetch ({self.group})"):
            batches = await self._inner.getmany(
                timeout_ms=int(timeout * 1000), max_records=max_records
            )
        return [
            Record(tp.topic, tp.partition, m.offset, m.key or b"", m.value or b"")
            for tp, msgs in batches.items()
            for m in msgs
        ]

    async def commit(self, records: Sequence[Record]) -> None:
        if not records:
            return
        if self._closed:
            raise BusError("consumer is closed", retriable=False)
        offsets: dict[Any, int] = {}
        for rec in records:
            tp = TopicPartition(rec.topic, rec.partition)
            offsets[tp] = max(offsets.get(tp, 0), rec.offset + 1)
        owned = self._inner.assignment()
        lost = [tp for tp in offsets if tp not in owned]
        if lost:
            log.warning("bus.commit_skipped_revoked", group=self.group, partitions=len(lost))
            for tp in lost:
                del offsets[tp]
        if not offsets:
            return
        try:
            async with _boundary(f"commit ({self.group})"):
                await self._inner.commit(offsets)
        except BusError as exc:
            if isinstance(exc.__cause__, kerr.CommitFailedError | kerr.IllegalStateError):
                # the group rebalanced under us: the new owners redeliver these
                log.warning("bus.commit_failed_rebalance", group=self.group, error=str(exc))
                return
            raise

    async def lag(self) -> dict[tuple[str, int], int]:
        tps = list(self._inner.assignment())
        if not tps or self._closed:
            return {}
        async with _boundary(f"lag ({self.group})"):
            ends = await self._inner.end_offsets(tps)
            result = {}
            for tp in tps:
                committed = await self._inner.committed(tp)
                result[(tp.topic, tp.partition)] = max(ends[tp] - (committed or 0), 0)
        return result

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._bus._consumers.discard(self)
        with contextlib.suppress(kerr.KafkaError, OSError):
            await self._inner.stop()
