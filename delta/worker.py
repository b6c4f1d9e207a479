"""The Kafka adapter: consume batches, route them through the model host, publish predictions and dead letters.

Data flow per batch (DESIGN.md §1-§2)::

    consume(batch_size, poll_timeout) -> decode (delta.events) -> host.learn / host.predict (delta.host)
        -> produce predictions / dead letters -> flush once -> store offsets -> (auto-commit)

Offsets: ``enable.auto.offset.store=false``; a partition's offset is stored only after every message of the batch
up to it is done *and* every output it caused is acknowledged by the broker (one ``flush`` per batch that produced
anything, delivery reports checked). librdkafka's auto-commit then commits stored offsets, and on revoke the worker
commits them synchronously (never on ``on_lost``). A delivery that fails after librdkafka's own retries stops the
worker with an error without storing that batch's offsets, so the batch is replayed by whoever consumes next:
at-least-once, nothing silently dropped.

Offset ownership is delegated to an :class:`OffsetPolicy`: :class:`KafkaCommits` is the at-least-once default; the
snapshot module can take over the training partitions by seeking them on assignment.

Lifecycle: :meth:`Worker.stop` only sets a flag (safe from a signal handler); the loop polls with a timeout <= 1 s,
finishes the batch in hand, flushes, commits and closes the consumer (leaving the group). ``max_events`` and
``idle_timeout`` give a finite mode for tests and benchmarks.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from confluent_kafka import Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from delta.config import Config
from delta.errors import DeltaError, EventError
from delta.events import decode_predict, decode_train, encode_prediction
from delta.host import ModelHost

__all__ = ["KafkaCommits", "OffsetPolicy", "Worker", "WorkerStats", "ensure_topics", "kafka_settings"]

log = logging.getLogger(__name__)

FLUSH_GRACE_S = 10.0


class DeliveryError(DeltaError):
    """The broker did not take an output message after librdkafka's retries."""


def kafka_settings(cfg: Config, **extra: Any) -> dict[str, Any]:
    """librdkafka settings: the user's passthrough ``kafka.properties`` under Delta's own keys."""
    return {"bootstrap.servers": cfg.kafka.bootstrap_servers, **cfg.kafka.properties, **extra}


def ensure_topics(cfg: Config, timeout: float = 15.0) -> None:
    """Create missing Delta topics with the broker's default partition count, so a first run just works."""
    admin = AdminClient(kafka_settings(cfg))
    names = [cfg.topics.train, cfg.topics.predict, cfg.topics.predictions, cfg.topics.dead_letter]
    existing = admin.list_topics(timeout=timeout).topics
    missing = [n for n in names if n not in existing]
    if not missing:
        return
    futures = admin.create_topics([NewTopic(n) for n in missing], operation_timeout=timeout)
    for name, fut in futures.items():
        try:
            fut.result(timeout)
            log.info("created topic %s", name)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError.TOPIC_ALREADY_EXISTS:
                raise


class OffsetPolicy(Protocol):
    """Who decides where a partition starts and what is committed."""

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None: ...


class KafkaCommits:
    """At-least-once via Kafka's committed offsets: start where the group left off."""

    def on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        consumer.assign(partitions)


@dataclass
class WorkerStats:
    """Figures the loop keeps for the management API; written by the loop thread, read under ``lock``."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    assigned: list[str] = field(default_factory=list)
    lag: dict[str, int] = field(default_factory=dict)
    train_per_s: float = 0.0
    predict_per_s: float = 0.0
    last_loop: float = field(default_factory=time.monotonic)
    delivery_failures: int = 0
    consume_errors: int = 0
    running: bool = False


class Worker:
    """One consumer (train + predict topics, one group) and one producer around a :class:`ModelHost`."""

    def __init__(self, cfg: Config, host: ModelHost, *, policy: OffsetPolicy | None = None,
                 max_events: int | None = None, idle_timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.host = host
        self.policy = policy or KafkaCommits()
        self.max_events = max_events
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.stats = WorkerStats()
        self.paused = cfg.training.paused
        self._stop = threading.Event()
        self._delivery_errors: list[str] = []
        self._processed = 0
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._train_paused_parts: list[TopicPartition] = []

    # --- control (any thread) ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and shut down; safe to call from a signal handler."""
        self._stop.set()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    # --- Kafka callbacks (run inside consume) ------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{p.topic}/{p.partition}" for p in partitions))
        self.policy.on_assign(consumer, partitions)
        with self.stats.lock:
            self.stats.assigned = [f"{p.topic}/{p.partition}" for p in consumer.assignment()]
        self._apply_pause(consumer)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", ", ".join(f"{p.topic}/{p.partition}" for p in partitions))
        self._commit(consumer)
        consumer.unassign()
        with self.stats.lock:
            self.stats.assigned = []

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("lost %s (not committing)", ", ".join(f"{p.topic}/{p.partition}" for p in partitions))
        consumer.unassign()
        with self.stats.lock:
            self.stats.assigned = []

    def _on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        if err is not None:
            self._delivery_errors.append(f"{msg.topic()}: {err.str()}")

    @staticmethod
    def _commit(consumer: Consumer) -> None:
        try:
            consumer.commit(asynchronous=False)
        except KafkaException as exc:
            if exc.args[0].code() != KafkaError._NO_OFFSET:
                log.warning("offset commit failed: %s", exc)

    def _apply_pause(self, consumer: Consumer) -> None:
        """``training.paused`` pauses the training partitions: events wait in Kafka instead of being skipped."""
        train = [p for p in consumer.assignment() if p.topic == self.cfg.topics.train]
        if self.paused and train:
            consumer.pause(train)
        elif not self.paused and self._train_paused_parts:
            consumer.resume(train)
        self._train_paused_parts = train if self.paused else []

    def set_paused(self, paused: bool) -> None:
        self.paused = paused

    # --- the loop ----------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until stopped (or the finite mode ends); raises on a fatal Kafka or delivery error."""
        cfg = self.cfg
        consumer = Consumer(kafka_settings(
            cfg,
            **{"group.id": cfg.kafka.group_id, "enable.auto.commit": True, "enable.auto.offset.store": False,
               "auto.offset.reset": "earliest", "auto.commit.interval.ms": 1000, "enable.partition.eof": False},
        ))
        producer = Producer(kafka_settings(cfg, **{"linger.ms": 5, "enable.idempotence": True}))
        self._consumer, self._producer = consumer, producer
        consumer.subscribe([cfg.topics.train, cfg.topics.predict], on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_lost)
        self.stats.running = True
        log.info("worker started: train=%s predict=%s group=%s model v%d", cfg.topics.train, cfg.topics.predict,
                 cfg.kafka.group_id, self.host.version)
        try:
            self._loop(consumer, producer)
        finally:
            self.stats.running = False
            self._shutdown(consumer, producer)

    def _loop(self, consumer: Consumer, producer: Producer) -> None:
        cfg = self.cfg
        batch_size, timeout = cfg.worker.batch_size, cfg.worker.poll_timeout
        last_message = self.clock()
        tick_at = last_message + 1.0
        counted = (0, 0)
        while not self._stop.is_set():
            if self.paused != bool(self._train_paused_parts) and consumer.assignment():
                self._apply_pause(consumer)
            messages = consumer.consume(batch_size, timeout)
            now = self.clock()
            self.stats.last_loop = now
            if messages:
                last_message = now
                self._process(messages, consumer, producer)
            else:
                producer.poll(0)
            if now >= tick_at:
                counted = self._tick(consumer, now - tick_at + 1.0, counted)
                tick_at = now + 1.0
            if self.max_events is not None and self._processed >= self.max_events:
                log.info("finite mode: %d events processed, stopping", self._processed)
                break
            if self.idle_timeout is not None and now - last_message >= self.idle_timeout:
                log.info("finite mode: idle for %.1fs, stopping", self.idle_timeout)
                break

    def _process(self, messages: list[Message], consumer: Consumer, producer: Producer) -> None:
        cfg, host = self.cfg, self.host
        train_topic, predictions_topic = cfg.topics.train, cfg.topics.predictions
        max_bytes, task = cfg.events.max_bytes, host.task
        produced = False
        done: dict[tuple[str, int], int] = {}
        ts = int(time.time() * 1000)
        with host.lock:
            for msg in messages:
                err = msg.error()
                if err is not None:
                    self._consume_error(err)
                    continue
                topic: str = msg.topic()  # type: ignore[assignment]
                partition: int = msg.partition()  # type: ignore[assignment]
                offset: int = msg.offset()  # type: ignore[assignment]
                try:
                    if topic == train_topic:
                        host.learn(decode_train(msg.value(), task, max_bytes))
                    else:
                        key = msg.key()
                        default_id = key.decode("utf-8", "replace") if key else f"{topic}:{partition}:{offset}"
                        prediction = host.predict(decode_predict(msg.value(), default_id, max_bytes), ts)
                        self._produce(producer, predictions_topic, encode_prediction(prediction),
                                      key if key else prediction.id.encode())
                        produced = True
                except EventError as exc:
                    host.invalid += 1
                    self._dead_letter(producer, msg, str(exc))
                    produced = True
                done[(topic, partition)] = offset + 1
            self._processed += len(messages)
        if produced:
            self._flush(producer)
        if done:
            consumer.store_offsets(offsets=[TopicPartition(t, p, o) for (t, p), o in done.items()])

    def _produce(self, producer: Producer, topic: str, value: bytes, key: bytes | None,
                 headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=self._on_delivery)
                return
            except BufferError:
                producer.poll(0.1)

    def _dead_letter(self, producer: Producer, msg: Message, reason: str) -> None:
        headers: list[tuple[str, str | bytes | None]] = [(str(h[0]), h[1]) for h in msg.headers() or []]
        headers += [("delta.error", reason.encode()), ("delta.source.topic", str(msg.topic()).encode()),
                    ("delta.source.partition", str(msg.partition()).encode()),
                    ("delta.source.offset", str(msg.offset()).encode())]
        self._produce(producer, self.cfg.topics.dead_letter, msg.value() or b"", msg.key(), headers)

    def _flush(self, producer: Producer) -> None:
        deadline = self.clock() + max(FLUSH_GRACE_S, 30.0)
        while producer.flush(1.0) > 0:
            if self.clock() > deadline:
                raise DeliveryError("the broker did not acknowledge outputs within 30s; stopping without "
                                    "committing this batch (it will be replayed)")
        if self._delivery_errors:
            errors, self._delivery_errors = self._delivery_errors, []
            with self.stats.lock:
                self.stats.delivery_failures += len(errors)
            raise DeliveryError(f"{len(errors)} output message(s) were not delivered, first: {errors[0]}; "
                                "stopping without committing this batch (it will be replayed)")

    def _consume_error(self, err: KafkaError) -> None:
        with self.stats.lock:
            self.stats.consume_errors += 1
            first = self.stats.consume_errors == 1
        if err.fatal():
            raise KafkaException(err)
        if first or self.stats.consume_errors % 1000 == 0:
            log.warning("consume error (%d so far): %s", self.stats.consume_errors, err.str())

    def _tick(self, consumer: Consumer, elapsed: float, counted: tuple[int, int]) -> tuple[int, int]:
        """Once a second: throughput over the last interval and per-partition lag."""
        trained, predicted = self.host.trained_total, self.host.predicted
        lag: dict[str, int] = {}
        try:
            assignment = consumer.assignment()
            for tp in consumer.position(assignment) if assignment else []:
                _, high = consumer.get_watermark_offsets(tp, cached=True)
                if high >= 0:
                    lag[f"{tp.topic}/{tp.partition}"] = max(high - tp.offset, 0) if tp.offset >= 0 else high
        except KafkaException as exc:
            log.debug("lag unavailable: %s", exc)
        with self.stats.lock:
            self.stats.train_per_s = (trained - counted[0]) / elapsed
            self.stats.predict_per_s = (predicted - counted[1]) / elapsed
            self.stats.lag = lag
        return trained, predicted

    def _shutdown(self, consumer: Consumer, producer: Producer) -> None:
        try:
            remaining = producer.flush(FLUSH_GRACE_S)
            if remaining:
                log.error("%d output message(s) not delivered at shutdown; their inputs stay uncommitted", remaining)
            self._commit(consumer)
        finally:
            consumer.close()
            self._consumer = self._producer = None
            log.info("worker stopped: %d events processed", self._processed)
