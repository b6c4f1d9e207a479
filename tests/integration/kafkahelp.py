"""Small real-Kafka helpers for the integration tests: create topics, produce, read a topic back, run a worker."""

from __future__ import annotations

import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass

from confluent_kafka import Consumer, KafkaException, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic

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
