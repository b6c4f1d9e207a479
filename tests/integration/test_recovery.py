"""Effectively-once training across SIGKILLs: snapshots own the training offsets (DESIGN.md §2 "Delivery")."""

from __future__ import annotations

import itertools
import json
import random
import threading
import time
from pathlib import Path

from confluent_kafka import Producer
from conftest import make_config
from kafkahelp import WorkerProcess, paced, produce, read_topic
from river import datasets

from delta.config import Config
from delta.events import PredictEvent, TrainEvent, dumps, loads
from delta.host import ModelHost

N = 20_000
SNAPSHOT_ENV = {"DELTA_SNAPSHOT_EVERY_EVENTS": "1000", "DELTA_API_TOKEN": "t0ken",
                "DELTA_KAFKA_PROPERTIES": '{"group.instance.id": "crash-test", "session.timeout.ms": 10000}'}


def feed(bootstrap: str, topic: str, items: list[tuple[int, bytes]], rate: float) -> threading.Thread:
    """Produce (partition, value) items at ``rate`` per second from a background thread: a live stream."""

    def run() -> None:
        producer = Producer({"bootstrap.servers": bootstrap, "linger.ms": 5, "enable.idempotence": True})
        for i in itertools.islice(paced(rate, threading.Event()), len(items)):
            partition, value = items[i]
            producer.produce(topic, value, partition=partition)
            producer.poll(0)
        assert producer.flush(30) == 0

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    return thread


def crash_and_recover(cfg: Config, tmp_path: Path, items: list[tuple[int, bytes]], spec: str, seed: int,
                      corrupt_before_restart: int | None = None) -> WorkerProcess:
    """Kill the worker with SIGKILL at three random points of a live stream, restart it each time; return the
    final (running) worker once it has trained every event."""
    rng = random.Random(seed)
    kill_at = sorted(rng.sample(range(1500, N - 2500), 3))
    while any(b - a < 2000 for a, b in itertools.pairwise(kill_at)):
        kill_at = sorted(rng.sample(range(1500, N - 2500), 3))
    env = {**SNAPSHOT_ENV, "DELTA_SNAPSHOT_DIR": str(tmp_path / "snaps"), "DELTA_MODEL": spec}
    feeder = feed(cfg.kafka.bootstrap_servers, cfg.topics.train, items, rate=2500)
    for round_, threshold in enumerate(kill_at):
        with WorkerProcess(cfg, tmp_path / f"worker-{round_}.log", **env) as worker:
            worker.wait_for(lambda m, t=threshold: m["events"]["trained"] >= t, timeout=90)
            worker.kill()
        if corrupt_before_restart == round_:
            newest = max((tmp_path / "snaps").glob("snap-*.delta"))
            newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    feeder.join(60)
    final = WorkerProcess(cfg, tmp_path / "worker-final.log", **env)
    final.wait_for(lambda m: m["events"]["trained"] >= N, timeout=120)
    return final


def test_single_partition_recovery_equals_uninterrupted_run_exactly(bootstrap: str, tmp_path: Path) -> None:
    cfg = make_config(bootstrap, partitions=1)
    rows = list(itertools.islice(itertools.cycle(list(datasets.Phishing())), N))
    items = [(0, dumps({"x": x, "y": y})) for x, y in rows]
    spec = "preprocessing.StandardScaler() | linear_model.LogisticRegression()"
    with crash_and_recover(cfg, tmp_path, items, spec, seed=7, corrupt_before_restart=1) as worker:
        body = worker.wait_for(lambda m: m["events"]["trained"] >= N)
        assert body["events"]["trained"] == N and body["events"]["invalid"] == 0
        reference = ModelHost(spec)
        for x, y in rows:
            reference.learn(TrainEvent(None, x, y))
        assert body["metrics"] == reference.report()["metrics"]
        assert body["rolling"] == reference.report()["rolling"]
        assert "skipping snapshot" in (tmp_path / "worker-2.log").read_text()

        probes = [x for x, _ in rows[:50]]
        produce(bootstrap, cfg.topics.predict, [(f"q{i}".encode(), dumps({"x": x})) for i, x in enumerate(probes)])
        got = {loads(r.value)["id"]: loads(r.value) for r in read_topic(bootstrap, cfg.topics.predictions, 50)}
        for i, x in enumerate(probes):
            expected = reference.predict(PredictEvent(f"q{i}", x), 0)
            assert got[f"q{i}"]["proba"] == {str(k).lower(): v for k, v in (expected.proba or {}).items()}
        assert worker.terminate() == 0


def test_multi_partition_recovery_learns_every_event_once(bootstrap: str, tmp_path: Path) -> None:
    """Order across partitions depends on fetch timing, so use a model whose state is order-free and exact: the
    sum of all labels learned. Any event lost or learned twice changes it."""
    cfg = make_config(bootstrap, partitions=4)
    items = [(i % 4, dumps({"x": {"i": i}, "y": float(i)})) for i in range(N)]
    with crash_and_recover(cfg, tmp_path, items, "dummy.StatisticRegressor(stats.Sum())", seed=11) as worker:
        body = worker.wait_for(lambda m: m["events"]["trained"] >= N)
        assert body["events"]["trained"] == N
        produce(bootstrap, cfg.topics.predict, [(b"sum", dumps({"x": {}}))])
        (prediction,) = read_topic(bootstrap, cfg.topics.predictions, 1)
        assert loads(prediction.value)["y_pred"] == float(sum(range(N)))
        assert worker.terminate() == 0


def test_rollback_restores_a_snapshot_model(bootstrap: str, tmp_path: Path) -> None:
    cfg = make_config(bootstrap)
    rows = list(itertools.islice(datasets.Phishing(), 1000))
    env = {**SNAPSHOT_ENV, "DELTA_SNAPSHOT_DIR": str(tmp_path / "snaps")}
    with WorkerProcess(cfg, tmp_path / "worker.log", **env) as worker:
        produce(bootstrap, cfg.topics.train, [(None, dumps({"x": x, "y": y})) for x, y in rows[:500]])
        worker.wait_for(lambda m: m["events"]["trained"] == 500)
        assert worker.request("POST", "/snapshots")[0] == 401
        status, snap = worker.request("POST", "/snapshots", token="t0ken")
        assert status == 201 and snap["trained"] == 500 and snap["model_version"] == 1
        produce(bootstrap, cfg.topics.train, [(None, dumps({"x": x, "y": y})) for x, y in rows[500:]])
        worker.wait_for(lambda m: m["events"]["trained"] == 1000)
        status, listed = worker.request("GET", "/snapshots")
        assert snap["id"] in [s["id"] for s in listed["snapshots"]]
        assert worker.request("POST", "/model/rollback", {"snapshot": "snap-999999999999"}, "t0ken")[0] == 404
        status, model = worker.request("POST", "/model/rollback", {"snapshot": snap["id"]}, token="t0ken")
        assert status == 200 and model["version"] == 2 and model["trained"] == 500

        reference = ModelHost("preprocessing.StandardScaler() | linear_model.LogisticRegression()")
        for x, y in rows[:500]:
            reference.learn(TrainEvent(None, x, y))
        assert model["metrics"] == reference.report()["metrics"]
        probes = [x for x, _ in rows[:30]]
        produce(bootstrap, cfg.topics.predict, [(None, dumps({"id": f"q{i}", "x": x})) for i, x in enumerate(probes)])
        got = {loads(r.value)["id"]: loads(r.value) for r in read_topic(bootstrap, cfg.topics.predictions, 30)}
        for i, x in enumerate(probes):
            expected = reference.predict(PredictEvent(f"q{i}", x), 0)
            assert got[f"q{i}"]["model_version"] == 2
            assert got[f"q{i}"]["proba"] == {str(k).lower(): v for k, v in (expected.proba or {}).items()}
        assert worker.terminate() == 0


def test_cooperative_rebalancing_restores_positions(bootstrap: str, tmp_path: Path) -> None:
    """With cooperative-sticky assignment the worker must use incremental_assign and still seek the training
    partitions to the snapshot's positions."""
    cfg = make_config(bootstrap, partitions=2)
    items = [(i % 2, dumps({"x": {"i": i}, "y": float(i)})) for i in range(3000)]
    env = {"DELTA_SNAPSHOT_DIR": str(tmp_path / "snaps"), "DELTA_MODEL": "dummy.StatisticRegressor(stats.Sum())",
           "DELTA_SNAPSHOT_EVERY_EVENTS": "1500",
           "DELTA_KAFKA_PROPERTIES": json.dumps({"partition.assignment.strategy": "cooperative-sticky",
                                                 "session.timeout.ms": 6000})}
    feed(bootstrap, cfg.topics.train, items[:2000], rate=100_000).join(60)
    with WorkerProcess(cfg, tmp_path / "first.log", **env) as worker:
        worker.wait_for(lambda m: m["events"]["trained"] == 2000)
        time.sleep(1.5)  # let auto-commit run, so Kafka's committed offsets differ from what the model holds
        worker.kill()
    feed(bootstrap, cfg.topics.train, items[2000:], rate=100_000).join(60)
    with WorkerProcess(cfg, tmp_path / "second.log", **env) as worker:
        worker.wait_for(lambda m: m["events"]["trained"] == 3000)
        produce(bootstrap, cfg.topics.predict, [(b"sum", dumps({"x": {}}))])
        (prediction,) = read_topic(bootstrap, cfg.topics.predictions, 1)
        assert loads(prediction.value)["y_pred"] == float(sum(range(3000)))
        assert worker.terminate() == 0
        assert "restored snapshot" in worker.log() and "Traceback" not in worker.log()
