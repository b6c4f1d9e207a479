"""Training and prediction throughput of the worker on real Kafka, against a plain in-process River loop.

The worker runs in this process (its own thread, finite mode) on a pre-filled topic; its clock starts at its first
batch, so group join time is excluded. The baseline does the same model work on the same events, already decoded,
with no Kafka and no JSON: the physical limit of the model."""

from __future__ import annotations

import threading
import time
from typing import Any

from confluent_kafka import Message
from river import metrics

from bench.common import config, phishing, produce_all, train_values
from delta.events import dumps
from delta.host import ModelHost
from delta.spec import build
from delta.worker import Worker


class TimedWorker(Worker):
    """A worker that notes when its first batch arrived and when its last one was done."""

    first_batch: float | None = None
    last_batch_done: float = 0.0

    def _process(self, messages: list[Message], consumer: Any, producer: Any) -> None:
        if self.first_batch is None:
            self.first_batch = time.perf_counter()
        super()._process(messages, consumer, producer)
        self.last_batch_done = time.perf_counter()


def run_worker(worker: TimedWorker) -> float:
    thread = threading.Thread(target=worker.run)
    thread.start()
    thread.join()
    assert worker.first_batch is not None
    return worker.last_batch_done - worker.first_batch


def baseline_train(spec: str, rows: list[tuple[dict[str, Any], Any]]) -> float:
    """predict_proba_one -> the four default metrics -> learn_one, as a River user writes it."""
    model = build(spec)
    ms = [metrics.Accuracy(), metrics.F1(), metrics.ROCAUC(), metrics.LogLoss()]
    started = time.perf_counter()
    for x, y in rows:
        proba = model.predict_proba_one(x)
        if proba:
            label = max(proba, key=proba.get)
            ms[0].update(y, label)
            ms[1].update(y, label)
            ms[2].update(y, proba)
            ms[3].update(y, proba)
        model.learn_one(x, y)
    return len(rows) / (time.perf_counter() - started)


def worker_train(bootstrap: str, spec: str, rows: list[tuple[dict[str, Any], Any]]) -> float:
    cfg = config(bootstrap, DELTA_MODEL=spec)
    produce_all(bootstrap, cfg.topics.train, train_values(rows))
    worker = TimedWorker(cfg, ModelHost(spec), max_events=len(rows))
    elapsed = run_worker(worker)
    assert worker.host.trained_total == len(rows)
    return len(rows) / elapsed


def baseline_predict(model: Any, xs: list[dict[str, Any]]) -> float:
    started = time.perf_counter()
    for x in xs:
        model.predict_proba_one(x)
    return len(xs) / (time.perf_counter() - started)


def worker_predict(bootstrap: str, spec: str, rows: list[tuple[dict[str, Any], Any]], n: int) -> tuple[float, Any]:
    cfg = config(bootstrap, DELTA_MODEL=spec)
    host = ModelHost(spec)
    from delta.events import TrainEvent

    for x, y in rows[:5000]:
        host.learn(TrainEvent(None, x, y))
    xs = [x for x, _ in rows[:n]]
    produce_all(bootstrap, cfg.topics.predict, [dumps({"id": f"p{i}", "x": x}) for i, x in enumerate(xs)])
    worker = TimedWorker(cfg, host, max_events=n)
    elapsed = run_worker(worker)
    assert host.predicted == n
    return n / elapsed, host.model


def measure(bootstrap: str, n_train: int = 200_000, n_predict: int = 100_000) -> list[dict[str, Any]]:
    rows = phishing(n_train)
    out = []
    for label, spec in (("StandardScaler+LogisticRegression",
                         "preprocessing.StandardScaler() | linear_model.LogisticRegression()"),
                        ("HoeffdingTreeClassifier", "tree.HoeffdingTreeClassifier()")):
        base = baseline_train(spec, rows)
        delta = worker_train(bootstrap, spec, rows)
        out.append({"what": f"training throughput, {label}", "delta": delta, "baseline": base,
                    "ratio": delta / base, "target": ">= 0.90", "met": delta / base >= 0.90, "unit": "events/s"})
    spec = "preprocessing.StandardScaler() | linear_model.LogisticRegression()"
    delta, model = worker_predict(bootstrap, spec, rows, n_predict)
    base = baseline_predict(model, [x for x, _ in rows[:n_predict]])
    out.append({"what": "prediction throughput, StandardScaler+LogisticRegression", "delta": delta,
                "baseline": base, "ratio": delta / base, "target": ">= 1.0", "met": delta / base >= 1.0,
                "unit": "predictions/s"})
    return out


if __name__ == "__main__":
    from bench.common import broker

    with broker() as bootstrap:
        for row in measure(bootstrap):
            print(row)
