"""The management API of a running ``delta run``, over real HTTP, while it works on real Kafka."""

from __future__ import annotations

import itertools
from pathlib import Path

from conftest import make_config
from kafkahelp import WorkerProcess, produce, read_topic
from prometheus_client.parser import text_string_to_metric_families
from river import datasets

from delta.events import dumps, loads

TOKEN = "integration-token"


def test_metrics_config_and_live_model_change(bootstrap: str, tmp_path: Path) -> None:
    cfg = make_config(bootstrap)
    rows = list(itertools.islice(datasets.Phishing(), 600))
    with WorkerProcess(cfg, tmp_path / "worker.log", DELTA_API_TOKEN=TOKEN,
                       DELTA_KAFKA_PROPERTIES='{"sasl.password": "hunter2"}',
                       DELTA_SNAPSHOT_DIR=str(tmp_path / "snaps")) as worker:
        worker.wait_ready()
        produce(bootstrap, cfg.topics.train, [(None, dumps({"x": x, "y": y})) for x, y in rows[:500]] +
                [(None, b"{broken")])
        produce(bootstrap, cfg.topics.predict, [(None, dumps({"id": f"a{i}", "x": x})) for i, (x, _) in
                                                enumerate(rows[500:550])])
        body = worker.wait_for(lambda m: m["events"]["trained"] == 500 and m["events"]["predicted"] == 50
                               and m["events"]["invalid"] == 1)
        assert body["model"]["version"] == 1
        assert set(body["metrics"]) == {"Accuracy", "F1", "ROCAUC", "LogLoss"}
        worker.wait_for(lambda m: m["lag"].get(f"{cfg.topics.train}/0") == 0
                        and m["lag"].get(f"{cfg.topics.predict}/0") == 0)

        status, text = worker.request("GET", "/metrics/prometheus")
        families = {f.name: f for f in text_string_to_metric_families(text)}
        assert status == 200 and families["delta_events_trained"].samples[0].value == 500

        status, shown = worker.request("GET", "/config")
        assert status == 200 and "hunter2" not in str(shown) and TOKEN not in str(shown)

        new_spec = "preprocessing.StandardScaler() | linear_model.Perceptron()"
        assert worker.request("PATCH", "/config", {"model": {"spec": new_spec}})[0] == 401
        assert worker.request("PATCH", "/config", {"model": {"spec": new_spec}}, token="wrong")[0] == 401
        status, refused = worker.request("PATCH", "/config", {"model": {"spec": '__import__("os").system("true")'}},
                                         token=TOKEN)
        assert status == 400 and "__import__" in refused["error"]
        assert worker.request("GET", "/model")[1]["version"] == 1

        status, changed = worker.request("PATCH", "/config", {"model": {"spec": new_spec}}, token=TOKEN)
        assert status == 200 and changed["model_version"] == 2
        produce(bootstrap, cfg.topics.predict, [(None, dumps({"id": f"b{i}", "x": x})) for i, (x, _) in
                                                enumerate(rows[550:600])])
        predictions = [loads(r.value) for r in read_topic(bootstrap, cfg.topics.predictions, expect=100)]
        assert {p["model_version"] for p in predictions if p["id"].startswith("b")} == {2}
        assert {p["model_version"] for p in predictions if p["id"].startswith("a")} == {1}
        model = worker.request("GET", "/model")[1]
        assert model["name"] == "Perceptron" and model["history"][0]["trained"] == 500
        assert worker.request("GET", "/ready")[0] == 200
        assert worker.terminate() == 0


def test_changes_are_forbidden_without_a_token(bootstrap: str, tmp_path: Path) -> None:
    cfg = make_config(bootstrap)
    with WorkerProcess(cfg, tmp_path / "worker.log") as worker:
        worker.wait_ready()
        status, body = worker.request("PATCH", "/config", {"training": {"paused": True}}, token="anything")
        assert status == 403 and "DELTA_API_TOKEN" in body["detail"]
        assert worker.request("POST", "/snapshots", token="x")[0] == 403
        assert worker.terminate() == 0


def test_invalid_config_fails_at_start_naming_the_key(bootstrap: str, tmp_path: Path) -> None:
    cfg = make_config(bootstrap)
    for env, key in (({"DELTA_MODEL": "os.system('x')"}, "os.system"),
                     ({"DELTA_METRICS_WINDOW": "-3"}, "metrics.window")):
        worker = WorkerProcess(cfg, tmp_path / "bad.log", **env)
        assert worker.proc.wait(30) == 2
        assert key in worker.log() and "Traceback" not in worker.log()
