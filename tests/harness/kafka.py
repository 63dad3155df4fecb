"""A real single-node Apache Kafka broker (KRaft) for tests, benchmarks and manual checks.

The broker runs from the jars Maven resolves for `tests/kafka/pom.xml` (into
`tests/kafka/.jars`, fetched once, under a file lock). Each pytest session gets
a fresh storage directory and free ports; the broker logs WARN and above to
`<tmp>/broker.log`, whose tail is shown when start-up fails.

- `kafka_bootstrap` (session fixture): "127.0.0.1:PORT". With
  `OMNIROUTER_TEST_KAFKA=host:port` set, that broker is used instead.
  Without java (or the jars) the Kafka tests are skipped locally; with
  `CI=true` they fail instead: Kafka tests are never optional in CI.
- `kafka_classpath()` and `java_executable()` run Kafka's own tools, e.g.
  `java -cp <classpath> org.apache.kafka.tools.ConsoleProducer ...`.
- `python -m tests.harness.kafka` starts a broker in the foreground, prints its
  bootstrap address and runs until interrupted.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.harness.common import free_port, in_ci

KAFKA_DIR = Path(__file__).resolve().parents[1] / "kafka"
JARS_DIR = KAFKA_DIR / ".jars"
POM = KAFKA_DIR / "pom.xml"
ENV_BROKER = "OMNIROUTER_TEST_KAFKA"
START_TIMEOUT = 90.0
# a jar from each part the broker and the tools need; all present = resolved
REQUIRED_JARS = (
    "kafka_2.13-",
    "kafka-clients-",
    "kafka-server-",
    "kafka-tools-",
    "log4j-core-",
    "log4j-slf4j-impl-",
)

LOG4J2 = """\
<?xml version="1.0" encoding="UTF-8"?>
<Configuration status="WARN">
  <Appenders>
    <File name="file" fileName="{log}" append="true">
      <PatternLayout pattern="[%d] %p %m (%c)%n"/>
    </File>
  </Appenders>
  <Loggers>
    <Root level="WARN"><AppenderRef ref="file"/></Root>
  </Loggers>
</Configuration>
"""


class KafkaUnavailable(RuntimeError):
    """Java or the Kafka jars are missing on this machine."""


def java_executable() -> str:
    """The `java` to run Kafka with: $JAVA_HOME/bin/java, else the one on PATH."""
    home = os.environ.get("JAVA_HOME")
    if home and (Path(home) / "bin" / "java").is_file():
        return str(Path(home) / "bin" / "java")
    found = shutil.which("java")
    if found is None:
        raise KafkaUnavailable("java not found (install a JRE 17+ or set JAVA_HOME)")
    return found


def _jars_complete() -> bool:
    if not JARS_DIR.is_dir():
        return False
    names = [p.name for p in JARS_DIR.glob("*.jar")]
    return all(any(n.startswith(prefix) for n in names) for prefix in REQUIRED_JARS)


def ensure_jars() -> Path:
    """Resolve the broker's jars with Maven unless they are already there."""
    if _jars_complete():
        return JARS_DIR
    KAFKA_DIR.mkdir(parents=True, exist_ok=True)
    with open(KAFKA_DIR / ".jars.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another session may be fetching them
        if _jars_complete():
            return JARS_DIR
        mvn = shutil.which("mvn")
        if mvn is None:
            raise KafkaUnavailable(f"{JARS_DIR} is missing or incomplete and mvn is not installed")
        proc = subprocess.run(
            [mvn, "-q", "-B", "-f", str(POM), "dependency:copy-dependencies"],
            capture_output=True,
            text=True,
            timeout=900,
        )
        if proc.returncode != 0 or not _jars_complete():
            raise KafkaUnavailable(
                f"mvn could not resolve the Kafka jars (exit {proc.returncode}):\n"
                f"{proc.stdout[-3000:]}\n{proc.stderr[-3000:]}"
            )
    return JARS_DIR


def kafka_classpath() -> str:
    """The java classpath holding the broker and Kafka's CLI tools."""
    return str(ensure_jars() / "*")


async def _probe(bootstrap: str) -> bool:
    """True once the broker answers a metadata request listing itself."""
    from aiokafka import AIOKafkaClient

    quiet = logging.getLogger("aiokafka")
    level = quiet.level
    quiet.setLevel(logging.CRITICAL)  # "Unable connect" until the broker listens
    client = AIOKafkaClient(bootstrap_servers=bootstrap, request_timeout_ms=3000)
    try:
        await asyncio.wait_for(client.bootstrap(), 5)
        return bool(client.cluster.brokers())
    except Exception:
        return False
    finally:
        await client.close()
        quiet.setLevel(level)


def broker_answers(bootstrap: str) -> bool:
    return asyncio.run(_probe(bootstrap))


class KafkaBroker:
    """One KRaft broker+controller process on free ports with fresh storage."""

    def __init__(self, workdir: Path | None = None, *, heap: str = "512m") -> None:
        self._own_dir = workdir is None
        self.dir = workdir or Path(tempfile.mkdtemp(prefix="omnirouter-kafka-"))
        self.heap = heap
        self.port = 0
        self.controller_port = 0
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap(self) -> str:
        return f"127.0.0.1:{self.port}"

    @property
    def log_path(self) -> Path:
        return self.dir / "broker.log"

    def log_tail(self, lines: int = 60) -> str:
        parts = []
        for path in (self.log_path, self.dir / "stdout.log"):
            if path.exists():
                text = path.read_text(errors="replace").splitlines()[-lines:]
                parts.append(f"--- {path.name} ---\n" + "\n".join(text))
        return "\n".join(parts) or "(no broker log)"

    def _java(self, *args: str) -> list[str]:
        return [
            java_executable(),
            f"-Xmx{self.heap}",
            f"-Dlog4j2.configurationFile={self.dir / 'log4j2.xml'}",
            f"-Dkafka.logs.dir={self.dir}",
            "-cp",
            kafka_classpath(),
            *args,
        ]

    def start(self, timeout: float = START_TIMEOUT) -> str:
        self.port, self.controller_port = free_port(), free_port()
        while self.controller_port == self.port:
            self.controller_port = free_port()
        logs = self.dir / "data"
        (self.dir / "log4j2.xml").write_text(LOG4J2.format(log=self.log_path))
        props = self.dir / "server.properties"
        props.write_text(
            "\n".join(
                [
                    "process.roles=broker,controller",
                    "node.id=1",
                    f"listeners=PLAINTEXT://127.0.0.1:{self.port},"
                    f"CONTROLLER://127.0.0.1:{self.controller_port}",
                    f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
                    "controller.listener.names=CONTROLLER",
                    "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
                    f"controller.quorum.bootstrap.servers=127.0.0.1:{self.controller_port}",
                    f"log.dirs={logs}",
                    "num.partitions=1",
                    "offsets.topic.replication.factor=1",
                    "offsets.topic.num.partitions=6",
                    "transaction.state.log.replication.factor=1",
                    "transaction.state.log.min.isr=1",
                    "share.coordinator.state.topic.replication.factor=1",
                    "share.coordinator.state.topic.min.isr=1",
                    "group.initial.rebalance.delay.ms=0",
                    "",
                ]
            )
        )
        cluster_id = (
            subprocess.run(
                self._java("kafka.tools.StorageTool", "random-uuid"),
                capture_output=True,
                text=True,
                check=True,
                timeout=120,
            )
            .stdout.strip()
            .splitlines()[-1]
        )
        fmt = subprocess.run(
            self._java(
                "kafka.tools.StorageTool",
                "format",
                "--standalone",
                "-t",
                cluster_id,
                "-c",
                str(props),
            ),
            capture_output=True,
            text=True,
            timeout=120,
        )
        if fmt.returncode != 0:
            raise RuntimeError(f"kafka storage format failed:\n{fmt.stdout}\n{fmt.stderr}")
        with open(self.dir / "stdout.log", "wb") as out:
            self.proc = subprocess.Popen(
                self._java("kafka.Kafka", str(props)),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
            )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(
                    f"kafka broker exited with {self.proc.returncode} during start-up\n"
                    + self.log_tail()
                )
            if broker_answers(self.bootstrap):
                return self.bootstrap
            time.sleep(0.5)
        self.stop()
        raise RuntimeError(
            f"kafka broker did not answer on {self.bootstrap} within {timeout:.0f} s\n"
            + self.log_tail()
        )

    def stop(self) -> None:
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if self._own_dir:
            shutil.rmtree(self.dir, ignore_errors=True)

    def __enter__(self) -> KafkaBroker:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


@contextlib.contextmanager
def broker_at(address: str | None) -> Iterator[str]:
    """The bootstrap address of the broker at `address`, or of one started for the block
    (for the benches' `--kafka HOST:PORT`)."""
    if address:
        yield address
        return
    with KafkaBroker() as broker:
        yield broker.bootstrap


@pytest.fixture(scope="session")
def kafka_bootstrap() -> Iterator[str]:
    """Bootstrap address of a real broker for this test session."""
    external = os.environ.get(ENV_BROKER, "").strip()
    if external:
        if not broker_answers(external):
            raise RuntimeError(f"{ENV_BROKER}={external} does not answer")
        yield external
        return
    broker = KafkaBroker()
    try:
        java_executable()
        ensure_jars()
    except KafkaUnavailable as exc:
        broker.stop()
        if in_ci():
            raise  # Kafka tests are never skipped in CI
        pytest.skip(f"no Kafka broker available: {exc}")
    try:
        broker.start()
    except BaseException:
        broker.stop()
        raise
    try:
        yield broker.bootstrap
    finally:
        broker.stop()


def main() -> int:
    """Run a broker in the foreground until interrupted (SIGINT/SIGTERM)."""
    broker = KafkaBroker()

    def _stop(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    try:
        broker.start()
        print(broker.bootstrap, flush=True)
        print(f"# log: {broker.log_path}; Ctrl-C to stop", file=sys.stderr, flush=True)
        while broker.proc is not None and broker.proc.poll() is None:
            time.sleep(0.5)
        print(f"broker exited\n{broker.log_tail()}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        broker.stop()


if __name__ == "__main__":
    raise SystemExit(main())
