"""produce -> worker -> predictions / metrics / dead-letter, against the real broker."""

from __future__ import annotations

import itertools
import math
import threading
import time
from collections.abc import Callable

import pytest
from confluent_kafka.admin import AdminClient, NewTopic
from conftest import make_config
from kafkahelp import committed, produce, read_topic, run_worker
from river import datasets, evaluate, linear_model, metrics, preprocessing

from delta.config import Config
from delta.events import dumps, loads
from delta.service import build_host
from delta.worker import DeliveryError, Worker


def test_training_metrics_equal_progressive_val_score(cfg: Config, bootstrap: str) -> None:
    data = list(datasets.Phishing())
    produce(bootstrap, cfg.topics.train, ((None, dumps({"x": x, "y": y})) for x, y in data))
    host = build_host(cfg)
    run_worker(Worker(cfg, host, max_events=len(data)))
    report = host.report()
    assert report["events"]["trained"] == 1250
    assert report["events"]["invalid"] == 0
    expected = metrics.Accuracy() + metrics.F1() + metrics.ROCAUC() + metrics.LogLoss()
    evaluate.progressive_val_score(data, preprocessing.StandardScaler() | linear_model.LogisticRegression(), expected)
    assert report["metrics"] == {type(m).__name__: float(m.get()) for m in expected}


def test_every_prediction_event_gets_one_prediction(cfg: Config, bootstrap: str) -> None:
    rows = list(itertools.islice(datasets.Phishing(), 400))
    produce(bootstrap, cfg.topics.train, ((None, dumps({"x": x, "y": y})) for x, y in rows[:300]))
    keyed = [(f"k-{i}".encode(), dumps({"id": f"p-{i}", "x": x})) for i, (x, _) in enumerate(rows[300:350])]
    unkeyed = [(None, dumps({"x": x})) for x, _ in rows[350:400]]
    produce(bootstrap, cfg.topics.predict, keyed + unkeyed)
    host = build_host(cfg)
    run_worker(Worker(cfg, host, max_events=400))
    out = read_topic(bootstrap, cfg.topics.predictions, expect=100)
    assert len(out) == 100
    by_id = {loads(r.value)["id"]: (r.key, loads(r.value)) for r in out}
    assert len(by_id) == 100
    for i in range(50):
        key, p = by_id[f"p-{i}"]
        assert key == f"k-{i}".encode()
        assert set(p) == {"id", "y_pred", "proba", "model_version", "ts"}
        assert p["model_version"] == 1 and isinstance(p["y_pred"], bool)
        assert math.isclose(sum(p["proba"].values()), 1.0)
        assert set(p["proba"]) == {"true", "false"}
    defaulted = sorted(i for i in by_id if not i.startswith("p-"))
    assert defaulted == sorted(f"{cfg.topics.predict}:0:{offset}" for offset in range(50, 100))
    for i in defaulted:
        assert by_id[i][0] == i.encode()
    assert host.report()["events"]["predicted"] == 100


BAD = [
    (b"not json at all", "not valid JSON"),
    (b"[1, 2, 3]", "expected a JSON object"),
    (b'{"x": "a string", "y": true}', '"x" must be an object'),
    (b'{"x": {"a": 1}}', 'no label "y"'),
    (b'{"x": {"a": 1}, "y": 0.25}', "a classifier takes"),
    (b'{"x": {"a": 1e999}, "y": true}', "non-finite number"),
    (b'{"x": {"a": NaN}, "y": true}', "non-finite number"),
    (b'{"x": {"a": [1, 2]}, "y": true}', 'feature "a" is an array'),
    (b'{"id": {"no": 1}, "x": {}, "y": true}', '"id" must be'),
    (b'{"id": "never-predicted", "y": true}', "no earlier prediction event to join"),
    (b'{"x": {"pad": "' + b"z" * 2000 + b'"}, "y": true}', "over the limit"),
    (b"\xff\xfe\x00garbage", "not valid JSON"),
]


def test_bad_input_goes_to_dead_letter_unchanged_with_headers(bootstrap: str) -> None:
    cfg = make_config(bootstrap, DELTA_MAX_EVENT_BYTES="1024", DELTA_LABEL_WAIT_SECONDS="0")
    good = [dumps({"x": x, "y": y}) for x, y in itertools.islice(datasets.Phishing(), len(BAD) + 1)]
    stream: list[tuple[bytes | None, bytes | None]] = []
    for i, (value, _) in enumerate(BAD):
        stream += [(None, good[i]), (f"bad-{i}".encode(), value)]
    stream.append((None, good[-1]))
    produce(bootstrap, cfg.topics.train, stream)
    produce(bootstrap, cfg.topics.predict, [(b"bp", b'{"id": "p"}'), (b"gp", dumps({"x": {"a": 1.0}}))])
    host = build_host(cfg)
    run_worker(Worker(cfg, host, max_events=len(stream) + 2))
    dead = read_topic(bootstrap, cfg.topics.dead_letter, expect=len(BAD) + 1)
    assert len(dead) == len(BAD) + 1
    train_dead = [d for d in dead if d.headers["delta.source.topic"] == cfg.topics.train.encode()]
    assert [d.value for d in train_dead] == [value for value, _ in BAD]
    for i, (d, (_, reason)) in enumerate(zip(train_dead, BAD, strict=True)):
        assert d.key == f"bad-{i}".encode()
        assert reason in d.headers["delta.error"].decode()
        assert d.headers["delta.source.partition"] == b"0"
        assert d.headers["delta.source.offset"] == str(2 * i + 1).encode()
    predict_dead = [d for d in dead if d.headers["delta.source.topic"] == cfg.topics.predict.encode()]
    assert [(d.key, d.value) for d in predict_dead] == [(b"bp", b'{"id": "p"}')]
    report = host.report()["events"]
    assert report == {"trained": len(BAD) + 1, "predicted": 1, "invalid": len(BAD) + 1, "labels_joined": 0,
                      "labels_waiting": 0}
    assert len(read_topic(bootstrap, cfg.topics.predictions, expect=1)) == 1


def test_delayed_label_joins_prediction_features(cfg: Config, bootstrap: str) -> None:
    rows = list(itertools.islice(datasets.Phishing(), 20))
    produce(bootstrap, cfg.topics.predict, [(f"p-{i}".encode(), dumps({"x": x})) for i, (x, _) in enumerate(rows)])
    host = build_host(cfg)
    run_worker(Worker(cfg, host, max_events=20))
    produce(bootstrap, cfg.topics.train, [(None, dumps({"id": f"p-{i}", "y": y})) for i, (_, y) in enumerate(rows)])
    run_worker(Worker(cfg, host, max_events=20))
    assert host.report()["events"] == {"trained": 20, "predicted": 20, "invalid": 0, "labels_joined": 20,
                                       "labels_waiting": 0}


def wait_until(condition: Callable[[], bool], timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "condition not met in time"
        time.sleep(0.05)


def test_label_read_before_its_prediction_waits_for_it(bootstrap: str) -> None:
    """After a backlog, labels may be read before their prediction events (different topics): they wait, join
    when the prediction arrives, and one whose prediction never comes goes to the dead-letter topic in time."""
    cfg = make_config(bootstrap, DELTA_LABEL_WAIT_SECONDS="2")
    rows = list(itertools.islice(datasets.Phishing(), 30))
    produce(bootstrap, cfg.topics.train, [(f"p-{i}".encode(), dumps({"id": f"p-{i}", "y": y}))
                                          for i, (_, y) in enumerate(rows)] + [(b"lost", b'{"id": "lost", "y": true}')])
    host = build_host(cfg)
    worker = Worker(cfg, host)
    thread = threading.Thread(target=worker.run, daemon=True)
    thread.start()
    try:
        wait_until(lambda: worker.published["events"]["labels_waiting"] == 31)
        produce(bootstrap, cfg.topics.predict, [(f"p-{i}".encode(), dumps({"x": x}))
                                                for i, (x, _) in enumerate(rows)])
        wait_until(lambda: worker.published["events"]["invalid"] == 1)
    finally:
        worker.stop()
        thread.join(30)
    assert host.report()["events"] == {"trained": 30, "predicted": 30, "invalid": 1, "labels_joined": 30,
                                       "labels_waiting": 0}
    (dead,) = read_topic(bootstrap, cfg.topics.dead_letter, expect=1)
    assert dead.key == b"lost" and b"no prediction event with that id arrived within 2s" in dead.headers["delta.error"]
    assert dead.headers["delta.source.offset"] == b"30"
    assert committed(bootstrap, cfg.kafka.group_id, cfg.topics.train)[0] == 31


def test_paused_training_keeps_predicting_and_loses_nothing(bootstrap: str) -> None:
    cfg = make_config(bootstrap, DELTA_TRAINING_PAUSED="true")
    rows = list(itertools.islice(datasets.Phishing(), 30))
    produce(bootstrap, cfg.topics.train, ((None, dumps({"x": x, "y": y})) for x, y in rows))
    produce(bootstrap, cfg.topics.predict, ((None, dumps({"x": x})) for x, _ in rows[:5]))
    host = build_host(cfg)
    run_worker(Worker(cfg, host, max_events=5))
    assert host.report()["events"]["trained"] == 0 and host.report()["events"]["predicted"] == 5
    resumed = Worker(cfg.replace({"training.paused": False}), host, max_events=30)
    run_worker(resumed)
    assert host.report()["events"]["trained"] == 30


def test_undeliverable_output_stops_the_worker_without_committing(bootstrap: str) -> None:
    """The broker refuses the predictions (topic max.message.bytes too small): the failure is counted and raised,
    and the inputs stay uncommitted so a healthy worker answers them later."""
    cfg = make_config(bootstrap)
    admin = AdminClient({"bootstrap.servers": bootstrap})
    tiny = f"{cfg.topics.predictions}-tiny"
    admin.create_topics([NewTopic(tiny, 1, 1, config={"max.message.bytes": "64"})])[tiny].result(30)
    cfg = cfg.replace({"topics.predictions": tiny})
    produce(bootstrap, cfg.topics.predict, [(f"k{i}".encode(), dumps({"id": f"p{i}", "x": {"a": 1.0}}))
                                            for i in range(5)])
    worker = Worker(cfg, build_host(cfg), max_events=5)
    with pytest.raises(DeliveryError, match="not delivered"):
        run_worker(worker)
    assert worker.stats.delivery_failures >= 1
    assert committed(bootstrap, cfg.kafka.group_id, cfg.topics.predict)[0] < 0
