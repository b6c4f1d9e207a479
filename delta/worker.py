"""The Kafka adapter: consume batches, route them through the model host, publish predictions and dead letters.

Data flow per batch (DESIGN.md §1-§2)::

    consume (what is queued, up to worker.batch_size) -> decode (delta.events) -> host.learn / host.predict
        (delta.host) -> produce predictions / dead letters -> store offsets once acknowledged -> (auto-commit)

Offsets: ``enable.auto.offset.store=false``; a partition's offset is stored only after every message of the batch
up to it is done *and* every output it caused is acknowledged by the broker. The loop does not wait for the acks:
each batch's outputs are tracked by one :class:`_InFlight` record (its delivery callback counts them down) and
batches are settled strictly in order, so the next batch is consumed while librdkafka delivers the previous one.
librdkafka's auto-commit then commits stored offsets; on revoke, before a snapshot and at shutdown the worker drains
(flushes and settles) and commits synchronously (never on ``on_lost``). A delivery that fails after librdkafka's own
retries stops the worker with an error without storing that batch's offsets, so the batch is replayed by whoever
consumes next: at-least-once, nothing silently dropped.

Training offsets with snapshots on (``snapshots.dir``): the snapshot owns them. At start the worker restores the
newest valid snapshot (model, metrics, counts and the next offset of every training partition it learned from);
on every assignment it seeks each training partition it has a position for to that position, so the model and its
offsets always move together: no training event is lost or learned twice by a model lineage. Kafka commits are then
only for lag visibility: a training partition this model lineage has never learned from starts at its earliest
retained offset (the model has learned none of it), whatever the group committed. Prediction offsets
keep the at-least-once commits above. Eager (``assign``) and cooperative (``incremental_assign``) rebalancing are
both handled.

Ownership: the worker thread is the only one that touches the :class:`ModelHost` while the loop runs. Other threads
(the management API) either read :attr:`Worker.published`, a report the loop republishes at most every 0.5 s and
whenever it goes idle, or hand a function to :meth:`Worker.submit`, which the loop runs between two batches. So the
hot path takes no lock, and a model swap is atomic between batches by construction.

Lifecycle: :meth:`Worker.stop` only sets a flag (safe from a signal handler); the loop polls with a timeout <= 1 s,
finishes the batch in hand, flushes, commits and closes the consumer (leaving the group). ``max_events`` and
``idle_timeout`` give a finite mode for tests and benchmarks.
"""

from __future__ import annotations

import collections
import logging
import queue
import threading
import time
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from typing import Any

from confluent_kafka import OFFSET_BEGINNING, Consumer, KafkaError, KafkaException, Message, Producer, TopicPartition
from confluent_kafka.admin import AdminClient, NewTopic  # type: ignore[attr-defined]

from delta.config import Config
from delta.errors import DeltaError, EventError
from delta.events import Incoming, decode_predict, decode_train, encode_prediction
from delta.host import ModelHost
from delta.snapshots import Snapshot, SnapshotStore

__all__ = ["Worker", "WorkerStats", "ensure_topics", "kafka_settings"]

log = logging.getLogger(__name__)

FLUSH_GRACE_S = 10.0
PUBLISH_EVERY_S = 0.5


class DeliveryError(DeltaError):
    """The broker did not take an output message after librdkafka's retries."""


class _InFlight:
    """One batch's outputs awaiting the broker's acknowledgement, and the offsets to store once all are in."""

    __slots__ = ("errors", "offsets", "outstanding")

    def __init__(self) -> None:
        self.outstanding = 0
        self.errors: list[str] = []
        self.offsets: list[TopicPartition] = []

    def on_delivery(self, err: KafkaError | None, msg: Message) -> None:
        self.outstanding -= 1
        if err is not None:
            self.errors.append(f"{msg.topic()}: {err.str()}")


class SnapshotsOff(DeltaError):
    """A snapshot operation was asked for but ``snapshots.dir`` is not set."""


KAFKA_LOG = logging.getLogger("delta.kafka")


def kafka_settings(cfg: Config, **extra: Any) -> dict[str, Any]:
    """librdkafka settings: the user's passthrough ``kafka.properties`` under Delta's own keys. librdkafka's own log
    lines go through Python logging (``delta.kafka``) instead of raw stderr, so they share the worker's format."""
    return {"bootstrap.servers": cfg.kafka.bootstrap_servers, "logger": KAFKA_LOG, **cfg.kafka.properties, **extra}


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

    def __init__(self, cfg: Config, host: ModelHost, *, snapshots: SnapshotStore | None = None,
                 max_events: int | None = None, idle_timeout: float | None = None,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self.cfg = cfg
        self.host = host
        self.snapshots = snapshots
        self.positions: dict[tuple[str, int], int] = {}
        self._consumed: dict[tuple[str, int], int] = {}
        self.restored_from: str | None = None
        self._trained_at_snapshot = host.trained_total
        self._snapshot_at = clock()
        self._cooperative = "cooperative" in str(cfg.kafka.properties.get("partition.assignment.strategy", ""))
        self.max_events = max_events
        self.idle_timeout = idle_timeout
        self.clock = clock
        self.stats = WorkerStats()
        self.paused = cfg.training.paused
        self._stop = threading.Event()
        self._inflight: collections.deque[_InFlight] = collections.deque()
        self._batch = _InFlight()
        self._processed = 0
        self._consumer: Consumer | None = None
        self._producer: Producer | None = None
        self._train_paused_parts: list[TopicPartition] = []
        self._requests: queue.SimpleQueue[tuple[Callable[[], Any], Future[Any]]] = queue.SimpleQueue()
        self._control = threading.Lock()
        self._published_at = 0.0
        self.published: dict[str, Any] = host.report()

    # --- control (any thread) ----------------------------------------------------------------------------------

    def stop(self) -> None:
        """Ask the loop to finish the batch in hand and shut down; safe to call from a signal handler."""
        self._stop.set()

    # --- Kafka callbacks (run inside consume) ------------------------------------------------------------------

    def _on_assign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("assigned %s", ", ".join(f"{p.topic}/{p.partition}" for p in partitions))
        if self.snapshots is not None:
            for tp in partitions:
                if tp.topic == self.cfg.topics.train:
                    tp.offset = self.positions.get((tp.topic, tp.partition), OFFSET_BEGINNING)
        if self._cooperative:
            consumer.incremental_assign(partitions)
        else:
            consumer.assign(partitions)
        with self.stats.lock:
            self.stats.assigned = [f"{p.topic}/{p.partition}" for p in consumer.assignment()]
        self._apply_pause(consumer)

    def _on_revoke(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.info("revoked %s", ", ".join(f"{p.topic}/{p.partition}" for p in partitions))
        if self._producer is not None:
            self._drain(consumer, self._producer)
        self._commit(consumer)
        self._unassign(consumer, partitions)
        if self.snapshots is None and self.host.waiting:
            self.host.forget_waiting({(p.topic, p.partition) for p in partitions})

    def _unassign(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        if self._cooperative:
            consumer.incremental_unassign(partitions)
        else:
            consumer.unassign()
        with self.stats.lock:
            self.stats.assigned = [f"{p.topic}/{p.partition}" for p in consumer.assignment()]

    def _on_lost(self, consumer: Consumer, partitions: list[TopicPartition]) -> None:
        log.warning("lost %s (not committing)", ", ".join(f"{p.topic}/{p.partition}" for p in partitions))
        self._unassign(consumer, partitions)
        if self.snapshots is None and self.host.waiting:
            self.host.forget_waiting({(p.topic, p.partition) for p in partitions})

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

    def reconfigure(self, cfg: Config) -> None:
        """Take run-time changes (paused training, snapshot cadence); call on the worker thread via submit."""
        self.cfg = cfg
        self.paused = cfg.training.paused
        if self.snapshots is not None:
            self.snapshots.keep = cfg.snapshots.keep

    # --- snapshots ---------------------------------------------------------------------------------------------

    def restore(self) -> str | None:
        """Load the newest valid snapshot into the host and take its training positions; returns its id."""
        if self.snapshots is None:
            return None
        found = self.snapshots.load_latest()
        if found is None:
            return None
        meta, state = found
        self.host.restore(state)
        self.positions = {(t, int(p)): int(o) for t, p, o in (
            (*key.rsplit("/", 1), off) for key, off in meta["offsets"].items())}
        self.restored_from = meta["id"]
        self._trained_at_snapshot = self.host.trained_total
        log.info("restored snapshot %s: model v%d, %d events trained, positions %s", meta["id"],
                 self.host.version, self.host.trained_total, meta["offsets"])
        return self.restored_from

    def snapshot(self) -> Future[Snapshot]:
        """Capture host and positions now (call between batches, on the worker thread); written in the background."""
        if self.snapshots is None:
            raise SnapshotsOff("snapshots are off: set snapshots.dir (DELTA_SNAPSHOT_DIR) to a directory")
        if self._consumer is not None and self._producer is not None:
            self._drain(self._consumer, self._producer)
        host = self.host
        meta = {
            "created": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
            "model_version": host.version, "spec": host.spec, "trained": host.trained_total,
            "counts": {"trained": host.trained_total, "predicted": host.predicted, "invalid": host.invalid,
                       "labels_joined": host.labels_joined, "model_trained": host.trained},
            "offsets": {f"{t}/{p}": o for (t, p), o in sorted(self.positions.items())},
        }
        fut = self.snapshots.save(host.state(), meta)
        self._trained_at_snapshot = host.trained_total
        self._snapshot_at = self.clock()
        fut.add_done_callback(_log_failed_snapshot)
        return fut

    def _snapshot_due(self, now: float) -> bool:
        cadence = self.cfg.snapshots
        learned = self.host.trained_total - self._trained_at_snapshot
        return learned > 0 and (learned >= cadence.every_events or now - self._snapshot_at >= cadence.every_seconds)

    def submit(self, fn: Callable[[], Any]) -> Future[Any]:
        """Run ``fn`` on the worker thread between two batches (inline when the loop is not running)."""
        fut: Future[Any] = Future()
        with self._control:
            if self.stats.running:
                self._requests.put((fn, fut))
                return fut
        _call(fn, fut)
        return fut

    def _serve_requests(self) -> None:
        while True:
            try:
                fn, fut = self._requests.get_nowait()
            except queue.Empty:
                return
            _call(fn, fut)
            self._publish()

    def _publish(self) -> None:
        self.published = self.host.report()
        self._published_at = self.clock()

    # --- the loop ----------------------------------------------------------------------------------------------

    def run(self) -> None:
        """Consume until stopped (or the finite mode ends); raises on a fatal Kafka or delivery error."""
        cfg = self.cfg
        consumer = Consumer(kafka_settings(
            cfg,
            **{"group.id": cfg.kafka.group_id, "enable.auto.commit": True, "enable.auto.offset.store": False,
               "auto.offset.reset": "earliest", "auto.commit.interval.ms": 1000, "enable.partition.eof": False},
        ))
        producer = Producer(kafka_settings(cfg, **{"linger.ms": 2, "enable.idempotence": True}))
        self._consumer, self._producer = consumer, producer
        consumer.subscribe([cfg.topics.train, cfg.topics.predict], on_assign=self._on_assign,
                           on_revoke=self._on_revoke, on_lost=self._on_lost)
        with self._control:
            self.stats.running = True
        self.restore()
        self._publish()
        log.info("worker started: train=%s predict=%s group=%s model v%d", cfg.topics.train, cfg.topics.predict,
                 cfg.kafka.group_id, self.host.version)
        try:
            self._loop(consumer, producer)
        finally:
            with self._control:
                self.stats.running = False
            self._serve_requests()
            self._shutdown(consumer, producer)
            self._publish()

    def _loop(self, consumer: Consumer, producer: Producer) -> None:
        cfg = self.cfg
        batch_size, timeout = cfg.worker.batch_size, cfg.worker.poll_timeout
        last_message = self.clock()
        tick_at = last_message + 1.0
        counted = (0, 0)
        dirty = False
        while not self._stop.is_set():
            self._serve_requests()
            if self.paused != bool(self._train_paused_parts) and consumer.assignment():
                self._apply_pause(consumer)
            messages = _next_batch(consumer, batch_size, timeout)
            now = self.clock()
            self.stats.last_loop = now
            if messages:
                last_message = now
                self._process(messages, consumer, producer)
                dirty = True
                if now - self._published_at >= PUBLISH_EVERY_S:
                    self._publish()
                    dirty = False
            else:
                released: set[tuple[str, int]] = set()
                if self.host.waiting and self._expire_waiting(producer, time.time(), released):
                    self._end_batch(consumer, producer, {}, released)
                    dirty = True
                self._settle(consumer, producer)
                if dirty:
                    self._publish()
                    dirty = False
            if self.snapshots is not None and self._snapshot_due(now):
                self.snapshot()
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
        label_wait = cfg.events.label_wait_seconds
        done: dict[tuple[str, int], int] = {}
        released: set[tuple[str, int]] = set()
        now = time.time()
        ts = int(now * 1000)
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
                    event = decode_train(msg.value(), task, max_bytes)
                    if event.x is None and label_wait and event.id not in host.pending:
                        host.hold(event.id, event.y, now, _incoming(msg))  # type: ignore[arg-type]
                    else:
                        host.learn(event)
                else:
                    key = msg.key()
                    default_id = key.decode("utf-8", "replace") if key else f"{topic}:{partition}:{offset}"
                    prediction = host.predict(decode_predict(msg.value(), default_id, max_bytes), ts)
                    self._produce(producer, predictions_topic, encode_prediction(prediction),
                                  key if key else prediction.id.encode())
                    if host.waiting and prediction.id in host.waiting:
                        source = host.release(prediction.id)
                        released.add((source.topic, source.partition))
            except EventError as exc:
                host.invalid += 1
                self._dead_letter(producer, _incoming(msg), str(exc))
            done[(topic, partition)] = offset + 1
        self._processed += len(messages)
        if host.waiting:
            self._expire_waiting(producer, now, released)
        self._end_batch(consumer, producer, done, released)

    def _expire_waiting(self, producer: Producer, now: float, released: set[tuple[str, int]]) -> bool:
        """Dead-letter labels that waited too long for their prediction event; True if any did."""
        wait = self.cfg.events.label_wait_seconds
        expired = self.host.expire(now - wait, self.cfg.events.max_pending_labels)
        for event_id, source in expired:
            self.host.invalid += 1
            self._dead_letter(producer, source, f'label-only event for id "{event_id}": no prediction event with '
                                                f"that id arrived within {wait:g}s (events.label_wait_seconds)")
            released.add((source.topic, source.partition))
        return bool(expired)

    def _end_batch(self, consumer: Consumer, producer: Producer, done: dict[tuple[str, int], int],
                   released: set[tuple[str, int]]) -> None:
        """Queue the batch's offsets behind its outputs: each partition up to its first label still waiting."""
        batch, self._batch = self._batch, _InFlight()
        consumed = self._consumed
        consumed.update(done)
        floors: dict[tuple[str, int], int] = {}
        for _, _, source in self.host.waiting.values():
            where = (source.topic, source.partition)
            if source.offset < floors.get(where, source.offset + 1):
                floors[where] = source.offset
        batch.offsets = [TopicPartition(t, p, min(consumed[(t, p)], floors.get((t, p), consumed[(t, p)])))
                         for t, p in done.keys() | released if (t, p) in consumed]
        self._inflight.append(batch)
        self._settle(consumer, producer)
        train_topic = self.cfg.topics.train
        for (t, p), o in done.items():
            if t == train_topic:
                self.positions[(t, p)] = o

    def _settle(self, consumer: Consumer, producer: Producer) -> None:
        """Serve delivery reports; store the offsets of finished batches, in batch order."""
        producer.poll(0)
        inflight = self._inflight
        while inflight and inflight[0].outstanding == 0:
            batch = inflight.popleft()
            if batch.errors:
                with self.stats.lock:
                    self.stats.delivery_failures += len(batch.errors)
                raise DeliveryError(f"{len(batch.errors)} output message(s) were not delivered, first: "
                                    f"{batch.errors[0]}; stopping without committing this batch (it will be replayed)")
            if batch.offsets:
                try:
                    consumer.store_offsets(offsets=batch.offsets)
                except KafkaException as exc:  # a partition lost meanwhile: its new owner starts from the commit
                    log.warning("offsets not stored: %s", exc)

    def _drain(self, consumer: Consumer, producer: Producer, timeout: float = 30.0) -> None:
        """Wait until every output so far is acknowledged and its batch's offsets are stored."""
        deadline = self.clock() + timeout
        while self._inflight:
            producer.flush(min(1.0, timeout))
            self._settle(consumer, producer)
            if self._inflight and self.clock() > deadline:
                raise DeliveryError(f"the broker did not acknowledge outputs within {timeout:g}s; stopping without "
                                    "committing the batches in flight (they will be replayed)")

    def _produce(self, producer: Producer, topic: str, value: bytes, key: bytes | None,
                 headers: list[tuple[str, str | bytes | None]] | None = None) -> None:
        batch = self._batch
        while True:
            try:
                producer.produce(topic, value, key, headers=headers, on_delivery=batch.on_delivery)
                batch.outstanding += 1
                return
            except BufferError:
                producer.poll(0.1)

    def _dead_letter(self, producer: Producer, msg: Incoming, reason: str) -> None:
        headers: list[tuple[str, str | bytes | None]] = list(msg.headers)
        headers += [("delta.error", reason.encode()), ("delta.source.topic", msg.topic.encode()),
                    ("delta.source.partition", str(msg.partition).encode()),
                    ("delta.source.offset", str(msg.offset).encode())]
        self._produce(producer, self.cfg.topics.dead_letter, msg.value or b"", msg.key, headers)

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
        """Flush, settle, take the final snapshot, commit, leave the group. Undelivered outputs are raised (after
        the consumer is closed) so the process exits non-zero; their inputs stay uncommitted."""
        failure: DeliveryError | None = None
        try:
            try:
                self._drain(consumer, producer, FLUSH_GRACE_S)
            except DeliveryError as exc:
                failure = exc
            if failure is None and self.snapshots is not None \
                    and self.host.trained_total != self._trained_at_snapshot:
                self.snapshot().result(FLUSH_GRACE_S)
            self._commit(consumer)
        finally:
            consumer.close()
            self._consumer = self._producer = None
            log.info("worker stopped: %d events processed", self._processed)
        if failure is not None:
            raise failure


def _call(fn: Callable[[], Any], fut: Future[Any]) -> None:
    try:
        fut.set_result(fn())
    except Exception as exc:  # noqa: BLE001 - handed to the caller through the future
        fut.set_exception(exc)


def _log_failed_snapshot(fut: Future[Snapshot]) -> None:
    exc = fut.exception()
    if exc is not None:
        log.error("writing a snapshot failed: %s", exc)


def _incoming(msg: Message) -> Incoming:
    headers = tuple((str(h[0]), h[1] if isinstance(h[1], bytes | None) else str(h[1]).encode())
                    for h in msg.headers() or ())
    return Incoming(str(msg.topic()), int(msg.partition() or 0), int(msg.offset() or 0), msg.key(), msg.value(),
                    headers)


def _next_batch(consumer: Consumer, size: int, timeout: float) -> list[Message]:
    """Up to ``size`` messages without waiting for a full batch: ``consume(n, t)`` blocks until it has ``n``
    messages or ``t`` passed, which would add up to ``t`` of latency at low rates. So take what is queued, and only
    when nothing is, wait (up to ``t``) for the first message."""
    messages = consumer.consume(size, 0)
    if messages:
        return messages
    first = consumer.poll(timeout)
    if first is None:
        return []
    return [first, *consumer.consume(size - 1, 0)] if size > 1 else [first]
