"""Operational figures: memory over a long run, /metrics latency under load, snapshot cost, restart time.

The worker is ``delta run`` in its own process (RSS read from /proc); the management API is queried over HTTP
while the worker trains flat out on a backlog."""

from __future__ import annotations

import json
import os
import pickle
import subprocess
import sys
import tempfile
import time
import urllib.request
from pathlib import Path
from typing import Any

from confluent_kafka import Consumer

from bench.common import config, percentile, phishing, produce_all, train_values
from bench.latency import worker_env
from delta.config import Config
from delta.events import TrainEvent, dumps
from delta.host import ModelHost
from delta.snapshots import SnapshotStore


def _rss_mb(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    raise RuntimeError("no VmRSS")


def _get(port: int, path: str) -> Any:
    with urllib.request.urlopen(f"http://127.0.0.1:{port}{path}", timeout=10) as r:
        return json.loads(r.read())


class Running:
    def __init__(self, cfg: Config, **env: str) -> None:
        import socket

        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            self.port = s.getsockname()[1]
        self.proc = subprocess.Popen([sys.executable, "-m", "delta", "--log-level", "WARNING", "run"],
                                     env={**worker_env(cfg), "DELTA_PORT": str(self.port), **env},
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.started = time.perf_counter()

    def trained(self) -> int:
        try:
            return int(_get(self.port, "/metrics")["events"]["trained"])
        except OSError:
            return -1

    def wait_trained(self, n: int, timeout: float = 600) -> None:
        deadline = time.monotonic() + timeout
        while self.trained() < n:
            assert time.monotonic() < deadline and self.proc.poll() is None, "worker stalled"
            time.sleep(0.05)

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(30)


def memory_and_api(bootstrap: str, n: int = 1_000_000) -> list[dict[str, Any]]:
    cfg = config(bootstrap)
    rows = phishing(1250)
    values = train_values(rows)
    produce_all(bootstrap, cfg.topics.train, [values[i % 1250] for i in range(n)])
    worker = Running(cfg)
    try:
        worker.wait_trained(10_000)
        rss_10k = _rss_mb(worker.proc.pid)
        timings = []
        for _ in range(300):
            started = time.perf_counter()
            _get(worker.port, "/metrics")
            timings.append((time.perf_counter() - started) * 1000)
            time.sleep(0.01)
        still_training = worker.trained() < n
        worker.wait_trained(n)
        rss_end = _rss_mb(worker.proc.pid)
    finally:
        worker.stop()
    p99 = percentile(timings, 0.99)
    return [
        {"what": f"worker RSS after 10k and after {n // 1000}k training events (MB)", "delta": f"{rss_end:.0f}",
         "baseline": f"{rss_10k:.0f}", "ratio": rss_end / rss_10k, "target": "<= 1.2", "met": rss_end / rss_10k <= 1.2,
         "unit": "MB"},
        {"what": "GET /metrics while training flat out, p50 / p99 (ms)"
                 + ("" if still_training else " [backlog ran out: not under load]"),
         "delta": f"{percentile(timings, 0.5):.1f} / {p99:.1f}", "baseline": "-", "ratio": p99 / 50,
         "target": "p99 < 50 ms", "met": p99 < 50 and still_training, "unit": "ms"},
    ]


def snapshots(n: int = 100_000) -> list[dict[str, Any]]:
    out = []
    rows = phishing(n)
    for label, spec in (("default model", "preprocessing.StandardScaler() | linear_model.LogisticRegression()"),
                        ("HoeffdingTreeClassifier", "tree.HoeffdingTreeClassifier()")):
        host = ModelHost(spec)
        for x, y in rows:
            host.learn(TrainEvent(None, x, y))
        with tempfile.TemporaryDirectory() as tmp:
            store = SnapshotStore(tmp, keep=2)
            snap = store.save(host.state(), {"offsets": {}}).result()
            pause, write = store.last_pause_ms, store.last_write_ms
            store.close()
        model_kb = len(pickle.dumps(host.model)) / 1024
        out.append({"what": f"snapshot of {label} after {n // 1000}k events: size (KB, model alone {model_kb:.0f}),"
                            " hot-path pause / background write (ms)",
                    "delta": f"{snap.size / 1024:.0f} KB", "baseline": f"{pause:.1f} / {write:.1f} ms", "ratio": None,
                    "target": "-", "met": None, "unit": ""})
    return out


def restart_to_first_prediction(bootstrap: str) -> list[dict[str, Any]]:
    """A worker with a snapshot is started; the clock runs from the process start to the first prediction."""
    with tempfile.TemporaryDirectory() as tmp:
        cfg = config(bootstrap)
        env = {"DELTA_SNAPSHOT_DIR": tmp}
        produce_all(bootstrap, cfg.topics.train, train_values(phishing(5000)))
        first = Running(cfg, **env)
        first.wait_trained(5000)
        first.stop()
        produce_all(bootstrap, cfg.topics.predict, [dumps({"id": "first", "x": phishing(1)[0][0]})])
        reader = Consumer({"bootstrap.servers": bootstrap, "group.id": f"r-{time.time_ns()}",
                           "auto.offset.reset": "earliest"})
        reader.subscribe([cfg.topics.predictions])
        second = Running(cfg, **env)
        try:
            while True:
                msg = reader.poll(0.01)
                if msg is not None and msg.error() is None:
                    took = time.perf_counter() - second.started
                    break
                assert time.perf_counter() - second.started < 60
        finally:
            second.stop()
            reader.close()
    return [{"what": "restart to first prediction (process start, snapshot restore, group join, predict)",
             "delta": f"{took:.2f} s", "baseline": "-", "ratio": None, "target": "-", "met": None, "unit": "s"}]


if __name__ == "__main__":
    from bench.common import broker

    print(snapshots())
    with broker() as bootstrap:
        print(restart_to_first_prediction(bootstrap))
        print(memory_and_api(bootstrap, int(os.environ.get("N", "200000"))))
