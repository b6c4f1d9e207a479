"""``delta produce`` and ``delta tail`` against the real broker, as a user runs them."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from conftest import make_config
from kafkahelp import produce, read_topic, run_worker

from delta.config import Config
from delta.events import dumps, loads
from delta.service import build_host
from delta.worker import Worker


def delta(cfg: Config, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "delta", *args], env={**os.environ, **cfg.to_env()},
                          capture_output=True, text=True, timeout=120, check=False)


def test_produce_with_delayed_labels_then_worker_joins_them(bootstrap: str) -> None:
    cfg = make_config(bootstrap)
    done = delta(cfg, "produce", "--source", "Phishing", "--predict-fraction", "0.25", "--label-delay", "0.2",
                 "--quiet")
    assert done.returncode == 0, done.stderr
    train = read_topic(bootstrap, cfg.topics.train, expect=1250)
    predict = read_topic(bootstrap, cfg.topics.predict, expect=1)
    assert len(train) == 1250 and 200 < len(predict) < 450
    first_label = next(i for i, m in enumerate(train) if "x" not in loads(m.value))
    label = loads(train[first_label].value)
    assert set(label) == {"id", "y"} and label["id"] in {loads(m.value)["id"] for m in predict}
    host = build_host(cfg)
    run_worker(Worker(cfg, host, max_events=1250 + len(predict)))
    events = host.report()["events"]
    assert events == {"trained": 1250, "predicted": len(predict), "invalid": 0, "labels_joined": len(predict),
                      "labels_waiting": 0}


def test_produce_csv_and_bad_arguments(bootstrap: str, tmp_path: Path) -> None:
    cfg = make_config(bootstrap)
    csv_file = tmp_path / "rows.csv"
    csv_file.write_text("a,b,label\n1,x,true\n2.5,y,false\n,z,true\n")
    done = delta(cfg, "produce", "--source", str(csv_file), "--target", "label", "--quiet")
    assert done.returncode == 0, done.stderr
    values = [loads(m.value) for m in read_topic(bootstrap, cfg.topics.train, expect=3)]
    assert [v["x"] for v in values] == [{"a": 1, "b": "x"}, {"a": 2.5, "b": "y"}, {"a": None, "b": "z"}]
    assert [v["y"] for v in values] == [True, False, True]
    missing = delta(cfg, "produce", "--source", str(csv_file), "--quiet")
    assert missing.returncode == 2 and "--target is required" in missing.stderr
    unknown = delta(cfg, "produce", "--source", "NoSuchDataset", "--quiet")
    assert unknown.returncode == 2 and "neither a bundled dataset" in unknown.stderr


def test_tail_prints_predictions_and_dead_letters(bootstrap: str) -> None:
    cfg = make_config(bootstrap)
    produce(bootstrap, cfg.topics.predict, [(b"k1", dumps({"id": "p1", "x": {"a": 1.0}})), (b"k2", b"oops")])
    run_worker(Worker(cfg, build_host(cfg), max_events=2))
    out = delta(cfg, "tail", "predictions", "--from-beginning", "--max", "1")
    assert out.returncode == 0, out.stderr
    (line,) = [json.loads(x) for x in out.stdout.splitlines()]
    assert line["key"] == "k1" and line["value"]["id"] == "p1" and line["value"]["model_version"] == 1
    dead = delta(cfg, "tail", "dead-letter", "--from-beginning", "--max", "1")
    (line,) = [json.loads(x) for x in dead.stdout.splitlines()]
    assert line["value"] == "oops" and "not valid JSON" in line["headers"]["delta.error"]
