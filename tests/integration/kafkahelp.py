"""Small real-Kafka helpers for the integration tests: create topics, produce, read a topic back, run a worker."""

from __future__ import annotations

import itertools
import json
import os
import signal
import socket
import subprocess
import sys
import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

from delta.config import Config
from delta.worker import Worker


def create_topics(bootstrap: str, names: list[str], partitions: int) -> None:
    admin = AdminClient({"bootstrap.servers": bootstrap})
    futures = admin.create_topics([NewTopic(n, num_partitions=partitions, replication_factor=1) for n in names])
    for fut in futures.values():
        fut.result(30)


def produce(bootstrap: str, topic: str, items: Iterable[tuple[bytes | None, bytes | None]],
            partition: int | None = None) -> int:
    """Produce (key, value) pairs in order and wait for all acknowledgements; returns how many were sent."""
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
    errors: list[str] = []
    n = 0
    for key, value in items:
        kwargs = {} if partition is None else {"partition": partition}
        while True:
            try:
                producer.produce(topic, value, key, on_delivery=lambda e, m: e and errors.append(str(e)), **kwargs)
                break
            except BufferError:
                producer.poll(0.1)
        n += 1
    assert producer.flush(30) == 0
    assert not errors, errors
    return n


@dataclass(frozen=True)
class Read:
    key: bytes | None
    value: bytes | None
    headers: dict[str, bytes]
    partition: int
    offset: int


def read_topic(bootstrap: str, topic: str, expect: int, timeout: float = 60.0, settle: float = 0.5) -> list[Read]:
    """Read a topic from the beginning until ``expect`` messages arrived (then ``settle`` s more for extras)."""
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": f"reader-{time.monotonic_ns()}",
                         "auto.offset.reset": "earliest", "enable.auto.commit": False})
    consumer.subscribe([topic])
    out: list[Read] = []
    deadline = time.monotonic() + timeout
    settle_until: float | None = None
    try:
        while time.monotonic() < deadline:
            if settle_until is not None and time.monotonic() > settle_until:
                break
            for m in consumer.consume(1000, 0.2):
                if m.error():
                    raise KafkaException(m.error())
                out.append(Read(m.key(), m.value(), dict(m.headers() or []), m.partition(), m.offset()))
            if len(out) >= expect and settle_until is None:
                settle_until = time.monotonic() + settle
    finally:
        consumer.close()
    return out


def committed(bootstrap: str, group: str, topic: str, partitions: int = 1) -> list[int]:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": group})
    try:
        tps = consumer.committed([TopicPartition(topic, p) for p in range(partitions)], timeout=10)
        return [tp.offset for tp in tps]
    finally:
        consumer.close()


def run_worker(worker: Worker, timeout: float = 120.0) -> None:
    """Run a finite-mode worker in a thread; fail (after stopping it) if it has not finished within ``timeout``."""
    errors: list[BaseException] = []

    def target() -> None:
        try:
            worker.run()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(timeout)
    if thread.is_alive():
        worker.stop()
        thread.join(30)
        raise AssertionError(f"worker did not finish within {timeout}s")
    if errors:
        raise errors[0]


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class WorkerProcess:
    """``python -m delta run`` as a user runs it, configured by DELTA_* variables; its log goes to a file."""

    def __init__(self, cfg: Config, log_path: Path, **env: str) -> None:
        self.port = free_port()
        self.log_path = log_path
        full_env = {**os.environ, **cfg.to_env(), "DELTA_HOST": "127.0.0.1", "DELTA_PORT": str(self.port), **env}
        with open(log_path, "ab") as log:
            self.proc = subprocess.Popen([sys.executable, "-m", "delta", "run"], env=full_env, stdout=log,
                                         stderr=subprocess.STDOUT)

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        data = None if body is None else json.dumps(body).encode()
        req = urllib.request.Request(f"http://127.0.0.1:{self.port}{path}", data=data, method=method,
                                     headers={"Content-Type": "application/json",
                                              **({"Authorization": f"Bearer {token}"} if token else {})})
        try:
            with urllib.request.urlopen(req, timeout=10) as resp:
                raw, status, ctype = resp.read(), resp.status, resp.headers.get("Content-Type", "")
        except urllib.error.HTTPError as err:
            raw, status, ctype = err.read(), err.code, err.headers.get("Content-Type", "")
        return status, (json.loads(raw) if "json" in ctype else raw.decode())

    def wait_ready(self, timeout: float = 60.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited with {self.proc.returncode}:\n{self.log()}"
            try:
                if self.request("GET", "/ready")[0] == 200:
                    return
            except OSError:
                pass
            time.sleep(0.1)
        raise AssertionError(f"worker not ready within {timeout}s:\n{self.log()}")

    def wait_for(self, predicate: Callable[[dict[str, Any]], bool], timeout: float = 60.0) -> dict[str, Any]:
        deadline = time.monotonic() + timeout
        body: dict[str, Any] = {}
        while time.monotonic() < deadline:
            assert self.proc.poll() is None, f"worker exited with {self.proc.returncode}:\n{self.log()}"
            try:
                status, body = self.request("GET", "/metrics")
            except OSError:
                status = 0
            if status == 200 and predicate(body):
                return body
            time.sleep(0.05)
        raise AssertionError(f"condition not met within {timeout}s; last /metrics: {body}\n{self.log()[-3000:]}")

    def terminate(self, timeout: float = 15.0) -> int:
        self.proc.send_signal(signal.SIGTERM)
        return self.proc.wait(timeout)

    def kill(self) -> None:
        self.proc.kill()
        self.proc.wait(10)

    def __enter__(self) -> WorkerProcess:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(10)


def paced(per_second: float, stop: threading.Event) -> Iterator[int]:
    """0, 1, 2, ... at ``per_second`` until ``stop`` is set: a stream that is still flowing at a signal."""
    start = time.monotonic()
    for i in itertools.count():
        if stop.is_set():
            return
        if i % 100 == 0:
            ahead = start + i / per_second - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        yield i
