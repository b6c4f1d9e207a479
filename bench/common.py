"""Shared pieces of the benchmarks: the broker, event streams, paced producing, timing helpers."""

from __future__ import annotations

import itertools
import os
import statistics
import time
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

from confluent_kafka import Producer
from confluent_kafka.admin import AdminClient, NewTopic
from river import datasets

from delta.config import Config, load_config
from delta.events import dumps
from delta.localkafka import LocalKafka


@contextmanager
def broker() -> Iterator[str]:
    external = os.environ.get("DELTA_BENCH_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    with LocalKafka(heap="1g") as kafka:
        yield kafka.bootstrap_servers


def phishing(n: int) -> list[tuple[dict[str, Any], Any]]:
    return list(itertools.islice(itertools.cycle(list(datasets.Phishing())), n))


def config(bootstrap: str, partitions: int = 1, **env: str) -> Config:
    tag = uuid.uuid4().hex[:8]
    cfg = load_config(env={
        "DELTA_BOOTSTRAP_SERVERS": bootstrap, "DELTA_GROUP_ID": f"bench-{tag}",
        "DELTA_TRAIN_TOPIC": f"bench-{tag}.train", "DELTA_PREDICT_TOPIC": f"bench-{tag}.predict",
        "DELTA_PREDICTIONS_TOPIC": f"bench-{tag}.predictions", "DELTA_DEAD_LETTER_TOPIC": f"bench-{tag}.dlq",
        "DELTA_POLL_TIMEOUT": "0.1", **env,
    })
    admin = AdminClient({"bootstrap.servers": bootstrap})
    topics = [cfg.topics.train, cfg.topics.predict, cfg.topics.predictions, cfg.topics.dead_letter]
    for fut in admin.create_topics([NewTopic(t, num_partitions=partitions, replication_factor=1)
                                    for t in topics]).values():
        fut.result(30)
    return cfg


def produce_all(bootstrap: str, topic: str, values: list[bytes], keys: list[bytes] | None = None) -> None:
    producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 20, "batch.size": 1 << 20,
                         "queue.buffering.max.messages": 1_000_000, "compression.type": "lz4"})
    for i, value in enumerate(values):
        while True:
            try:
                producer.produce(topic, value, None if keys is None else keys[i])
                break
            except BufferError:
                producer.poll(0.05)
        if i % 10_000 == 0:
            producer.poll(0)
    assert producer.flush(60) == 0


def train_values(rows: list[tuple[dict[str, Any], Any]]) -> list[bytes]:
    return [dumps({"x": x, "y": y}) for x, y in rows]


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def median(values: list[float]) -> float:
    return statistics.median(values)


class Stopwatch:
    def __init__(self) -> None:
        self.start = time.perf_counter()

    def seconds(self) -> float:
        return time.perf_counter() - self.start
