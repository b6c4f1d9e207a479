"""Produce-to-prediction latency at a fixed rate, beside Kafka's own floor on the same broker.

The worker is ``delta run`` in its own process. The floor is a trivial consume -> produce pass-through in its own
process with the same librdkafka settings. A paced producer stamps each event with its send time; a consumer of the
output topic computes receive - send for each."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from typing import Any

from confluent_kafka import Consumer, Producer

from bench.common import config, percentile
from delta.config import Config
from delta.events import dumps, loads

PASS_THROUGH = r"""
import signal, sys
from confluent_kafka import Consumer, Producer
bootstrap, source, sink = sys.argv[1:4]
stop = []
signal.signal(signal.SIGTERM, lambda *a: stop.append(1))
c = Consumer({"bootstrap.servers": bootstrap, "group.id": "floor-" + source, "auto.offset.reset": "earliest",
              "enable.auto.offset.store": False})
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 2, "enable.idempotence": True})
c.subscribe([source])
while not stop:
    msgs = c.consume(500, 0)
    if not msgs:
        first = c.poll(0.1)
        msgs = [first] + c.consume(499, 0) if first is not None else []
    for m in msgs:
        if m.error() is None:
            p.produce(sink, m.value(), m.key(), on_delivery=lambda e, msg: None)
    p.poll(0)
    if msgs:
        c.store_offsets(msgs[-1])
p.flush(10)
c.close()
"""


def worker_env(cfg: Config) -> dict[str, str]:
    return {**os.environ, **cfg.to_env(), "DELTA_HOST": "127.0.0.1", "DELTA_PORT": "0"}


GENERATOR = r"""
import sys, time
from confluent_kafka import Producer
bootstrap, topic = sys.argv[1:3]
rate, seconds, warmup = (float(a) for a in sys.argv[3:6])
p = Producer({"bootstrap.servers": bootstrap, "linger.ms": 0})
head, tail = b'{"id":"', b'","x":{"a":1.5,"b":2.0,"c":"z"}}'
total, sent, start = int(rate * (seconds + warmup)), 0, time.monotonic()
while sent < total:
    due = min(total, int((time.monotonic() - start) * rate) + 1)
    while sent < due:
        stamp = time.time_ns() if sent >= rate * warmup else 0
        p.produce(topic, head + str(stamp).encode() + tail)
        sent += 1
    p.poll(0)
    time.sleep(0.0005)
p.flush(10)
"""


def _measure(bootstrap: str, source: str, sink: str, rate: float, seconds: float, warmup: float = 3.0) -> list[float]:
    """A generator process sends ``{"id": <send ns>, "x": ...}`` at ``rate``; this process reads the outputs and
    returns the latencies (ms) of those sent after the warmup."""
    latencies: list[float] = []
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"lat-{time.time_ns()}",
                  "auto.offset.reset": "latest", "fetch.wait.max.ms": 5})
    c.subscribe([sink])
    while not c.assignment():
        c.poll(0.1)
    gen = subprocess.Popen([sys.executable, "-c", GENERATOR, bootstrap, source, str(rate), str(seconds), str(warmup)])
    quiet_since = None
    while True:
        first = c.poll(0.05)
        batch = [first, *c.consume(1000, 0)] if first is not None else []
        now = time.time_ns()
        for m in batch:
            if m.error() is None:
                sent = int(loads(m.value())["id"])
                if sent > 0:
                    latencies.append((now - sent) / 1e6)
        if gen.poll() is not None:
            quiet_since = quiet_since or time.monotonic()
            if batch:
                quiet_since = time.monotonic()
            if time.monotonic() - quiet_since > 2:
                break
    c.close()
    return latencies


def _wait_for_group(bootstrap: str, source: str, sink: str) -> None:
    """Send probes until one comes out, so the consumer group has joined before measuring."""
    c = Consumer({"bootstrap.servers": bootstrap, "group.id": f"probe-{time.time_ns()}",
                  "auto.offset.reset": "earliest"})
    c.subscribe([sink])
    p = Producer({"bootstrap.servers": bootstrap})
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        p.produce(source, dumps({"id": "0", "x": {"a": 1.0}}))
        p.flush(5)
        if any(m.error() is None for m in c.consume(10, 1.0)):
            c.close()
            return
    raise RuntimeError("no output within 60s")


def measure(bootstrap: str, rates: tuple[int, ...] = (1000, 5000), seconds: float = 8.0) -> list[dict[str, Any]]:
    out = []
    for rate in rates:
        figures: dict[str, tuple[float, float]] = {}
        for kind in ("floor", "delta"):
            cfg = config(bootstrap)
            if kind == "floor":
                cmd = [sys.executable, "-c", PASS_THROUGH, bootstrap, cfg.topics.predict, cfg.topics.predictions]
                proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            else:
                proc = subprocess.Popen([sys.executable, "-m", "delta", "--log-level", "WARNING", "run"],
                                        env=worker_env(cfg), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            try:
                _wait_for_group(bootstrap, cfg.topics.predict, cfg.topics.predictions)
                lat = _measure(bootstrap, cfg.topics.predict, cfg.topics.predictions, rate, seconds)
            finally:
                proc.terminate()
                proc.wait(20)
            figures[kind] = (percentile(lat, 0.5), percentile(lat, 0.99))
        ratio = figures["delta"][1] / figures["floor"][1]
        out.append({"what": f"produce-to-prediction latency at {rate}/s, p50 / p99 (ms)",
                    "delta": f"{figures['delta'][0]:.2f} / {figures['delta'][1]:.2f}",
                    "baseline": f"{figures['floor'][0]:.2f} / {figures['floor'][1]:.2f}",
                    "ratio": ratio, "target": "p99 <= 1.5x floor", "met": ratio <= 1.5, "unit": "ms"})
    return out


if __name__ == "__main__":
    from bench.common import broker

    with broker() as bootstrap:
        for row in measure(bootstrap):
            print(row)
