"""Infrastructure sections: bus, store, HTTP listener, logs, blobs."""

from __future__ import annotations

from pathlib import Path
from typing import Any, Literal
from urllib.parse import SplitResult, quote, urlsplit, urlunsplit

from pydantic import (
    Field,
    field_validator,
    model_validator,
)
from pydantic_core import PydanticCustomError

from router.blobs import DEFAULT_MAX_ATTACHMENT
from router.config.types import (
    Secret,
    Section,
    fail,
)


class EmbeddedBusConfig(Section):
    """The embedded bus: a durable log in one SQLite file, for a single machine."""

    path: Path = Field(
        Path("var/bus.sqlite3"),
        description="SQLite file holding the log and the committed offsets"
        " (relative paths are relative to the working directory).",
    )


class KafkaConfig(Section):
    """Connection to a Kafka cluster."""

    bootstrap_servers: str = Field(
        "",
        description="Comma-separated `host:port` list of brokers to bootstrap from;"
        " required when the backend is `kafka`.",
        examples=["kafka-1:9092,kafka-2:9092"],
    )
    replication_factor: int = Field(
        1,
        ge=1,
        description="Replication factor for the topics omnirouter creates.",
    )
    client_id: str = Field("omnirouter", min_length=1, description="Kafka client id.")
    group_id: str = Field(
        "omnirouter-router",
        min_length=1,
        description="Consumer group of the router processes; processes in one group"
        " share the partitions.",
    )
    instance_id: str | None = Field(
        None,
        min_length=1,
        max_length=200,
        pattern=r"^[A-Za-z0-9._-]+$",
        description="Static group membership (Kafka's `group.instance.id`): a name unique to"
        " this process and kept across its restarts (a pod or host name). A restarted process"
        " then takes its partitions back at once instead of waiting for its old session to"
        " expire. Unset: dynamic membership. Two running processes must never share it.",
        examples=["${HOSTNAME}"],
    )
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = Field(
        "PLAINTEXT",
        description="How to talk to the brokers.",
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = Field(
        None,
        description="SASL mechanism, with the SASL_* security protocols.",
    )
    sasl_username: str | None = Field(None, description="SASL user name.")
    sasl_password: Secret | None = Field(None, description="SASL password.")

    @field_validator("bootstrap_servers")
    @classmethod
    def _servers(cls, value: str) -> str:
        for server in value.split(",") if value else ():
            host, _, port = server.strip().rpartition(":")
            if not host or not port.isdigit():
                raise PydanticCustomError(
                    "servers",
                    "expected host:port[,host:port...], got {server}",
                    {"server": repr(server.strip())},
                )
        return value

    @model_validator(mode="after")
    def _sasl(self) -> KafkaConfig:
        if self.security_protocol.startswith("SASL_"):
            missing = [
                name
                for name, value in (
                    ("sasl_mechanism", self.sasl_mechanism),
                    ("sasl_username", self.sasl_username),
                    ("sasl_password", self.sasl_password),
                )
                if value is None
            ]
            if missing:
                raise fail(
                    type(self).__name__,
                    (missing[0],),
                    f"security_protocol {self.security_protocol} needs {', '.join(missing)}",
                )
        return self


class BusConfig(Section):
    """Where records travel between the connectors and the router."""

    backend: Literal["embedded", "kafka"] = Field(
        "embedded",
        description="`embedded` (one machine, no broker) or `kafka`. When omitted and a"
        " `kafka` block with `bootstrap_servers` is present, the backend is `kafka`.",
    )
    topic_prefix: str = Field(
        "omni.",
        pattern=r"^[A-Za-z0-9._-]{0,100}$",
        description="Prefix of every topic name (`omni.inbound`, `omni.outbound.<channel>`...).",
    )
    partitions: int = Field(
        6,
        ge=1,
        le=10_000,
        description="Partitions per topic; the upper bound on parallel router processes.",
    )
    max_record_bytes: int = Field(
        1_000_000,
        ge=10_000,
        le=100_000_000,
        description="Largest record (key and value) omnirouter puts on the bus. A record"
        " over it is never produced: an inbound message is dead-lettered by its channel,"
        " an output of the router goes to the dead-letter topic with the reason and stays"
        " in the store. Deliveries to agents are built to stay well under it. Keep it at"
        " or below the brokers' `message.max.bytes` (about 1 MB by default).",
    )
    embedded: EmbeddedBusConfig = Field(
        default_factory=EmbeddedBusConfig,
        description="Settings of the embedded bus.",
    )
    kafka: KafkaConfig = Field(
        default_factory=KafkaConfig,
        description="Settings of the Kafka backend (`group_id` also names the router's"
        " consumer group on the embedded bus).",
    )

    @model_validator(mode="before")
    @classmethod
    def _infer_backend(cls, data: Any) -> Any:
        if (
            isinstance(data, dict)
            and "backend" not in data
            and isinstance(data.get("kafka"), dict)
            and data["kafka"].get("bootstrap_servers")
        ):
            return {**data, "backend": "kafka"}
        return data

    @model_validator(mode="after")
    def _kafka_block(self) -> BusConfig:
        if self.backend == "kafka" and not self.kafka.bootstrap_servers:
            raise fail(
                type(self).__name__,
                ("kafka", "bootstrap_servers"),
                "backend is kafka: set kafka.bootstrap_servers",
            )
        return self


_STORE_SCHEMES = ("sqlite", "sqlite+aiosqlite", "postgresql", "postgresql+psycopg", "postgres")


class StoreConfig(Section):
    """The database holding customers, conversations, assignments and timers."""

    url: str = Field(
        "sqlite:///var/omnirouter.sqlite3",
        description="Database URL without the password: `sqlite:///relative/path.sqlite3`,"
        " `sqlite:////absolute/path.sqlite3` or `postgresql://user@host:5432/db`."
        " Safe to log.",
    )
    password: Secret | None = Field(
        None,
        description="Database password (PostgreSQL). Never part of `url`.",
    )

    @field_validator("url")
    @classmethod
    def _url(cls, value: str) -> str:
        parts = urlsplit(value)
        if parts.scheme not in _STORE_SCHEMES:
            raise PydanticCustomError(
                "store_url",
                "unsupported database URL scheme {scheme}: use sqlite or postgresql",
                {"scheme": repr(parts.scheme)},
            )
        if parts.password is not None:
            raise PydanticCustomError(
                "store_url",
                "the URL contains a password: remove it and set store.password: {example}",
                {"example": "${OMNI_DB_PASSWORD}"},
            )
        return value

    def dsn(self) -> str:
        """The URL with the password filled in. Secret: never log it."""
        if self.password is None or not self.password.get_secret_value():
            return self.url  # no password, or an empty one from `${VAR:-}`
        parts = urlsplit(self.url)
        user = parts.username or ""
        host = parts.hostname or ""
        if ":" in host:
            host = f"[{host}]"
        netloc = f"{user}:{quote(self.password.get_secret_value(), safe='')}@{host}"
        if parts.port is not None:
            netloc += f":{parts.port}"
        return urlunsplit(
            SplitResult(parts.scheme, netloc, parts.path, parts.query, parts.fragment),
        )


class HttpConfig(Section):
    """The HTTP listener: /healthz, /readyz, /metrics, webhooks and the web chat."""

    host: str = Field("127.0.0.1", min_length=1, description="Address to listen on.")
    port: int = Field(8080, ge=0, le=65535, description="TCP port (0 picks a free one).")


class LoggingConfig(Section):
    """Structured logs."""

    level: Literal["debug", "info", "warning", "error"] = Field(
        "info",
        description="Lowest level written.",
    )
    format: Literal["auto", "json", "console"] = Field(
        "auto",
        description="`json` lines, human `console` output, or `auto`: console on"
        " a terminal, JSON otherwise.",
    )
    redact_personal_data: bool = Field(
        True,
        description="Mask customer addresses, names and message text in logs.",
    )


class BlobsConfig(Section):
    """Attachments: stored by content hash, referenced from envelopes."""

    path: Path = Field(Path("var/blobs"), description="Directory of the blob store.")
    max_attachment_bytes: int = Field(
        DEFAULT_MAX_ATTACHMENT,
        ge=1,
        description="Largest attachment an email channel keeps when its own"
        " `max_attachment_bytes` is null; larger ones are replaced by a note"
        " (`meta.skipped_parts`, with the reason). Web chat has its own limit.",
    )
