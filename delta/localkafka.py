"""A real single-node Apache Kafka broker from Maven Central jars, for tests and the demo.

Why: this project's CI machines have Java and Maven but no Docker engine, and integration tests must run against
real Kafka, never a mock. The broker is Apache Kafka's own ``kafka_2.13`` artifact plus a log4j2 binding, resolved
once by Maven into a cache folder (``$DELTA_KAFKA_CACHE``, default ``~/.cache/delta/kafka-<version>``) and started
as a combined KRaft broker+controller bound to 127.0.0.1 on free ports. Its log goes to ``<workdir>/broker.log``.

Run it by hand with ``python -m delta.localkafka`` (prints the bootstrap address, stops on Ctrl-C).
"""

from __future__ import annotations

import base64
import contextlib
import fcntl
import logging
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import TracebackType

__all__ = ["KAFKA_VERSION", "BrokerError", "LocalKafka", "fetch_jars"]

KAFKA_VERSION = "4.1.1"
LOG4J_VERSION = "2.25.3"
SLF4J_VERSION = "2.0.17"

log = logging.getLogger(__name__)

_POM = """<?xml version="1.0" encoding="UTF-8"?>
<project xmlns="http://maven.apache.org/POM/4.0.0">
  <modelVersion>4.0.0</modelVersion>
  <groupId>dev.delta</groupId>
  <artifactId>kafka-local</artifactId>
  <version>1</version>
  <packaging>pom</packaging>
  <dependencies>
    <dependency>
      <groupId>org.apache.kafka</groupId><artifactId>kafka_2.13</artifactId><version>{kafka}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-slf4j2-impl</artifactId><version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.apache.logging.log4j</groupId><artifactId>log4j-core</artifactId><version>{log4j}</version>
    </dependency>
    <dependency>
      <groupId>org.slf4j</groupId><artifactId>slf4j-api</artifactId><version>{slf4j}</version>
    </dependency>
  </dependencies>
</project>
"""

_LOG4J2 = """status = warn
appender.out.type = Console
appender.out.name = OUT
appender.out.layout.type = PatternLayout
appender.out.layout.pattern = [%d] %p %m (%c)%n
rootLogger.level = INFO
rootLogger.appenderRef.out.ref = OUT
logger.kafka.name = kafka
logger.kafka.level = WARN
logger.apache.name = org.apache.kafka
logger.apache.level = WARN
logger.state.name = state.change.logger
logger.state.level = WARN
"""


class BrokerError(RuntimeError):
    """The local broker could not be fetched or started; the message says what to install or check."""


def cache_dir(version: str = KAFKA_VERSION) -> Path:
    root = os.environ.get("DELTA_KAFKA_CACHE")
    base = Path(root) if root else Path.home() / ".cache" / "delta"
    return base / f"kafka-{version}"


def fetch_jars(version: str = KAFKA_VERSION) -> Path:
    """Resolve the broker's runtime classpath into the cache once; return the folder of jars.

    A lock file serialises concurrent fetches; the jars land in a temporary folder that is renamed into place, so
    an interrupted download never leaves a half-filled cache behind.
    """
    target = cache_dir(version)
    libs = target / "libs"
    if libs.is_dir():
        return libs
    if shutil.which("mvn") is None or shutil.which("java") is None:
        raise BrokerError(
            "the local Kafka broker needs Java 17+ and Maven on PATH (or set DELTA_TEST_BOOTSTRAP_SERVERS "
            "to an existing broker, or run a Docker engine for testcontainers)"
        )
    target.mkdir(parents=True, exist_ok=True)
    with open(target / ".lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if libs.is_dir():
            return libs
        pom = target / "pom.xml"
        pom.write_text(_POM.format(kafka=version, log4j=LOG4J_VERSION, slf4j=SLF4J_VERSION))
        staging = Path(tempfile.mkdtemp(prefix="libs.", dir=target))
        log.info("fetching Apache Kafka %s jars from Maven Central into %s", version, libs)
        cmd = ["mvn", "-q", "-B", "-f", str(pom), "dependency:copy-dependencies",
               "-DincludeScope=runtime", f"-DoutputDirectory={staging}"]
        proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
        if proc.returncode != 0 or not any(staging.glob("kafka_2.13-*.jar")):
            shutil.rmtree(staging, ignore_errors=True)
            raise BrokerError(f"maven could not fetch Kafka {version}: {proc.stdout[-2000:]}{proc.stderr[-2000:]}")
        staging.rename(libs)
    return libs


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _cluster_id() -> str:
    """A KRaft cluster id (Kafka's Uuid: 16 random bytes, url-safe base64, no padding), without a JVM start."""
    while True:
        text = base64.urlsafe_b64encode(uuid.uuid4().bytes).decode().rstrip("=")
        if not text.startswith("-"):
            return text


class LocalKafka:
    """Start, wait for and stop one KRaft broker; use as a context manager."""

    def __init__(self, version: str = KAFKA_VERSION, workdir: Path | None = None, heap: str = "512m") -> None:
        self.version = version
        self.heap = heap
        self._own_workdir = workdir is None
        self.workdir = workdir or Path(tempfile.mkdtemp(prefix="delta-kafka-"))
        self.log_path = self.workdir / "broker.log"
        self.port = 0
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def bootstrap_servers(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _java(self, libs: Path, main: str, *args: str, log_file: object = None) -> list[str]:
        return [
            "java", f"-Xmx{self.heap}", "-Xms128m", "-XX:+UseSerialGC", "-Djava.awt.headless=true",
            f"-Dlog4j2.configurationFile={self.workdir / 'log4j2.properties'}",
            "-cp", f"{libs}/*", main, *args,
        ]

    def start(self, timeout: float = 90.0) -> str:
        libs = fetch_jars(self.version)
        self.port, controller = _free_port(), _free_port()
        data = self.workdir / "data"
        props = self.workdir / "server.properties"
        (self.workdir / "log4j2.properties").write_text(_LOG4J2)
        props.write_text("\n".join([
            "process.roles=broker,controller",
            "node.id=1",
            f"listeners=PLAINTEXT://127.0.0.1:{self.port},CONTROLLER://127.0.0.1:{controller}",
            f"advertised.listeners=PLAINTEXT://127.0.0.1:{self.port}",
            "controller.listener.names=CONTROLLER",
            "inter.broker.listener.name=PLAINTEXT",
            "listener.security.protocol.map=PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT",
            f"controller.quorum.voters=1@127.0.0.1:{controller}",
            f"log.dirs={data}",
            "num.partitions=1",
            "offsets.topic.replication.factor=1",
            "offsets.topic.num.partitions=4",
            "transaction.state.log.replication.factor=1",
            "transaction.state.log.min.isr=1",
            "share.coordinator.state.topic.replication.factor=1",
            "share.coordinator.state.topic.min.isr=1",
            "group.initial.rebalance.delay.ms=0",
            "auto.create.topics.enable=true",
            "",
        ]))
        with open(self.log_path, "ab") as out:
            fmt = subprocess.run(
                self._java(libs, "kafka.tools.StorageTool", "format", "-t", _cluster_id(), "-c", str(props)),
                stdout=out, stderr=subprocess.STDOUT, check=False,
            )
            if fmt.returncode != 0:
                raise BrokerError(f"formatting KRaft storage failed; see {self.log_path}:\n{self.log_tail()}")
            self._proc = subprocess.Popen(
                self._java(libs, "kafka.Kafka", str(props)), stdout=out, stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        self._wait_ready(timeout)
        return self.bootstrap_servers

    def _wait_ready(self, timeout: float) -> None:
        from confluent_kafka.admin import AdminClient

        admin = AdminClient({"bootstrap.servers": self.bootstrap_servers, "log_level": 0})
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._proc is not None and self._proc.poll() is not None:
                raise BrokerError(f"the Kafka broker exited with {self._proc.returncode}:\n{self.log_tail()}")
            try:
                md = admin.list_topics(timeout=1.0)
                if md.brokers:
                    return
            except Exception:  # noqa: BLE001 - not up yet; any client error means "retry"
                time.sleep(0.2)
        self.stop()
        raise BrokerError(f"the Kafka broker did not answer within {timeout:.0f}s:\n{self.log_tail()}")

    def log_tail(self, lines: int = 60) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return "(no broker log)"

    def stop(self, timeout: float = 20.0) -> None:
        proc, self._proc = self._proc, None
        if proc is not None and proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout)
            except subprocess.TimeoutExpired:
                os.killpg(proc.pid, signal.SIGKILL)
                proc.wait()
        if self._own_workdir:
            shutil.rmtree(self.workdir / "data", ignore_errors=True)

    def __enter__(self) -> LocalKafka:
        self.start()
        return self

    def __exit__(self, et: type[BaseException] | None, e: BaseException | None, tb: TracebackType | None) -> None:
        self.stop()


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="%(message)s")
    with LocalKafka() as kafka:
        print(f"bootstrap.servers={kafka.bootstrap_servers}  (log: {kafka.log_path}; Ctrl-C stops)", flush=True)
        stop = False

        def _stop(*_: object) -> None:
            nonlocal stop
            stop = True

        signal.signal(signal.SIGTERM, _stop)
        with contextlib.suppress(KeyboardInterrupt):
            while not stop:
                time.sleep(0.5)
    return 0


if __name__ == "__main__":
    sys.exit(main())
