"""SIGTERM during a stream: exit 0, every consumed prediction event answered, a restart skips nothing."""

from __future__ import annotations

import itertools
import os
import signal
import subprocess
import sys
import threading
import time

from confluent_kafka import Consumer, TopicPartition
from conftest import make_config
from kafkahelp import committed, produce, read_topic, run_worker

from delta.config import Config
from delta.events import dumps, loads
from delta.service import build_host
from delta.worker import Worker


def worker_env(cfg: Config) -> dict[str, str]:
    return {
        **os.environ,
        "DELTA_BOOTSTRAP_SERVERS": cfg.kafka.bootstrap_servers, "DELTA_GROUP_ID": cfg.kafka.group_id,
        "DELTA_TRAIN_TOPIC": cfg.topics.train, "DELTA_PREDICT_TOPIC": cfg.topics.predict,
        "DELTA_PREDICTIONS_TOPIC": cfg.topics.predictions, "DELTA_DEAD_LETTER_TOPIC": cfg.topics.dead_letter,
        "DELTA_PORT": "0", "DELTA_HOST": "127.0.0.1", "DELTA_POLL_TIMEOUT": "0.2",
    }


def high_watermark(bootstrap: str, topic: str) -> int:
    consumer = Consumer({"bootstrap.servers": bootstrap, "group.id": "watermarks"})
    try:
        return int(consumer.get_watermark_offsets(TopicPartition(topic, 0), timeout=10)[1])
    finally:
        consumer.close()


def test_sigterm_drains_and_restart_continues(bootstrap: str) -> None:
    cfg = make_config(bootstrap)
    stop_feeding = threading.Event()
    fed: list[int] = []
    feeder = threading.Thread(target=lambda: fed.append(produce(
        bootstrap, cfg.topics.predict,
        ((f"k{i}".encode(), dumps({"id": f"p-{i}", "x": {"a": float(i % 7), "b": "c"}}))
         for i in _paced(2000, stop_feeding)),
    )))
    proc = subprocess.Popen([sys.executable, "-m", "delta", "run"], env=worker_env(cfg),
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        feeder.start()
        deadline = time.monotonic() + 60
        while high_watermark(bootstrap, cfg.topics.predictions) < 500:
            assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
            assert time.monotonic() < deadline, "the worker produced no predictions within 60s"
            time.sleep(0.1)
        proc.send_signal(signal.SIGTERM)
        sent = time.monotonic()
        code = proc.wait(timeout=15)
        elapsed = time.monotonic() - sent
        log = proc.stdout.read() if proc.stdout else ""
    finally:
        if proc.poll() is None:
            proc.kill()
    assert code == 0, log
    assert elapsed < 10, f"shutdown took {elapsed:.1f}s"
    assert "draining" in log and "Traceback" not in log
    stop_feeding.set()
    feeder.join()
    n = fed[0]

    consumed = committed(bootstrap, cfg.kafka.group_id, cfg.topics.predict)[0]
    assert 0 < consumed < n, "SIGTERM should land mid-stream"
    answered = {loads(r.value)["id"] for r in read_topic(bootstrap, cfg.topics.predictions, expect=consumed)}
    assert {f"p-{i}" for i in range(consumed)} <= answered

    host = build_host(cfg)
    run_worker(Worker(cfg, host, max_events=n - consumed))
    assert host.report()["events"]["predicted"] == n - consumed, "the restart resumed at the committed offset"
    final = {loads(r.value)["id"] for r in read_topic(bootstrap, cfg.topics.predictions, expect=n)}
    assert final == {f"p-{i}" for i in range(n)}


def _paced(per_second: float, stop: threading.Event):  # type: ignore[no-untyped-def]
    """0, 1, 2, ... at ``per_second`` until ``stop`` is set: a stream that is still flowing at SIGTERM."""
    start = time.monotonic()
    for i in itertools.count():
        if stop.is_set():
            return
        if i % 100 == 0:
            ahead = start + i / per_second - time.monotonic()
            if ahead > 0:
                time.sleep(ahead)
        yield i
