"""The management API over real HTTP (aiohttp's test server), with a real model host and no Kafka: the worker
loop is not running, so changes run inline exactly as they would between two batches."""

from __future__ import annotations

import itertools
from collections.abc import AsyncIterator, Callable
from typing import Any

import pytest
from aiohttp import web
from aiohttp.test_utils import TestClient, TestServer
from prometheus_client.parser import text_string_to_metric_families
from river import datasets

from delta.api import ApiContext, make_app
from delta.config import load_config
from delta.events import PredictEvent, TrainEvent
from delta.openapi import openapi
from delta.service import build_host
from delta.worker import Worker

MakeClient = Callable[..., Any]


@pytest.fixture
async def make_client() -> AsyncIterator[MakeClient]:
    clients: list[TestClient[Any, Any]] = []

    async def make(**env: str) -> TestClient[Any, Any]:
        cfg = load_config(env=env)
        host = build_host(cfg)
        for x, y in itertools.islice(datasets.Phishing(), 100):
            host.learn(TrainEvent(None, x, y))
        worker = Worker(cfg, host)
        worker._publish()
        client: TestClient[Any, Any] = TestClient(TestServer(make_app(ApiContext(cfg, worker))))
        await client.start_server()
        clients.append(client)
        return client

    yield make
    for c in clients:
        await c.close()


AUTH = {"Authorization": "Bearer s3cret"}


async def test_health_ready_metrics(make_client: MakeClient) -> None:
    client = await make_client()
    assert (await client.get("/health")).status == 200
    r = await client.get("/ready")
    assert r.status == 503
    assert (await r.json())["detail"] == "the worker loop is not running"
    body = await (await client.get("/metrics")).json()
    assert body["events"] == {"trained": 100, "predicted": 0, "invalid": 0, "labels_joined": 0,
                              "labels_waiting": 0}
    assert set(body["metrics"]) == {"Accuracy", "F1", "ROCAUC", "LogLoss"} == set(body["rolling"])
    assert body["model"] == {"name": "LogisticRegression", "version": 1,
                             "spec": "preprocessing.StandardScaler() | linear_model.LogisticRegression()"}
    for key in ("throughput", "lag", "drift", "uptime_s"):
        assert key in body


async def test_prometheus_exposition_parses(make_client: MakeClient) -> None:
    client = await make_client()
    text = await (await client.get("/metrics/prometheus")).text()
    families = {f.name: f for f in text_string_to_metric_families(text)}
    assert families["delta_events_trained"].samples[0].value == 100
    accuracy = [s for s in families["delta_model_metric"].samples if s.labels["metric"] == "Accuracy"]
    assert accuracy[0].labels["model_version"] == "1" and 0 < accuracy[0].value <= 1
    assert "delta_model_version" in families and "delta_throughput_events_per_second" in families


async def test_config_is_redacted(make_client: MakeClient) -> None:
    client = await make_client(DELTA_API_TOKEN="s3cret", DELTA_KAFKA_PROPERTIES='{"sasl.password": "pw"}')
    text = await (await client.get("/config")).text()
    assert "s3cret" not in text and '"pw"' not in text and "***" in text


async def test_changes_refused_without_configured_token(make_client: MakeClient) -> None:
    client = await make_client()
    r = await client.patch("/config", json={"training": {"paused": True}}, headers=AUTH)
    assert r.status == 403
    assert "DELTA_API_TOKEN" in (await r.json())["detail"]
    open_client = await make_client(DELTA_ALLOW_UNAUTHENTICATED="true")
    assert (await open_client.patch("/config", json={"training": {"paused": True}})).status == 200


async def test_wrong_or_missing_token_is_401(make_client: MakeClient) -> None:
    client = await make_client(DELTA_API_TOKEN="s3cret")
    for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": "s3cret"}):
        r = await client.patch("/config", json={"training": {"paused": True}}, headers=headers)
        assert r.status == 401
        assert set(await r.json()) == {"error", "detail"}


async def test_patch_spec_bumps_version_and_predictions_carry_it(make_client: MakeClient) -> None:
    client = await make_client(DELTA_API_TOKEN="s3cret")
    spec = "preprocessing.StandardScaler() | linear_model.Perceptron()"
    r = await client.patch("/config", json={"model": {"spec": spec}}, headers=AUTH)
    assert r.status == 200, await r.text()
    assert (await r.json())["model_version"] == 2
    model = await (await client.get("/model")).json()
    assert model["version"] == 2 and model["name"] == "Perceptron" and model["spec"] == spec
    assert model["history"][0]["version"] == 1 and model["history"][0]["trained"] == 100
    host = client.server.app[next(iter(client.server.app))].worker.host  # type: ignore[union-attr]
    x, _ = next(iter(datasets.Phishing()))
    assert host.predict(PredictEvent("p", x), 0).model_version == 2


@pytest.mark.parametrize(("body", "status", "text"), [
    ({"model": {"spec": '__import__("os").system("true")'}}, 400, 'refused at `__import__('),
    ({"model": {"spec": "linear_model.Nope()"}}, 400, "Nope"),
    ({"model": {"spec": 42}}, 422, "model.spec"),
    ({"training": {"paused": "yes"}}, 422, "training.paused"),
    ({"metrics": {"names": ["MAE"]}}, 422, "MAE does not work"),
    ({"metrics": {"names": "Accuracy"}}, 422, "metrics.names"),
    ({"kafka": {"bootstrap_servers": "x:1"}}, 422, "cannot be changed at run time"),
    ({"model": "x"}, 422, "'model' must be an object"),
    ({}, 422, "nothing to change"),
])
async def test_bad_patches_change_nothing(make_client: MakeClient, body: dict[str, Any], status: int,
                                          text: str) -> None:
    client = await make_client(DELTA_API_TOKEN="s3cret")
    r = await client.patch("/config", json=body, headers=AUTH)
    assert r.status == status, await r.text()
    assert text in (await r.text())
    model = await (await client.get("/model")).json()
    assert model["version"] == 1 and model["name"] == "LogisticRegression"


async def test_malformed_json_unknown_path_wrong_method(make_client: MakeClient) -> None:
    client = await make_client(DELTA_API_TOKEN="s3cret")
    r = await client.patch("/config", data=b"{not json", headers=AUTH)
    assert r.status == 400 and (await r.json())["error"] == "request body is not valid JSON"
    r = await client.patch("/config", data=b"[1]", headers=AUTH)
    assert r.status == 400
    r = await client.get("/nope")
    assert r.status == 404 and set(await r.json()) == {"error", "detail"}
    r = await client.delete("/config")
    assert r.status == 405 and set(await r.json()) == {"error", "detail"}


async def test_pause_via_patch(make_client: MakeClient) -> None:
    client = await make_client(DELTA_API_TOKEN="s3cret")
    r = await client.patch("/config", json={"training": {"paused": True}}, headers=AUTH)
    assert r.status == 200
    assert (await (await client.get("/metrics")).json())["training"] == {"paused": True}
    assert (await (await client.get("/config")).json())["training"] == {"paused": True}


async def test_openapi_describes_exactly_the_routes(make_client: MakeClient) -> None:
    client = await make_client()
    app: web.Application = client.server.app  # type: ignore[assignment]
    routes = {(r.resource.canonical, r.method.lower()) for r in app.router.routes()
              if r.resource is not None and r.method != "HEAD"}
    spec = await (await client.get("/openapi.json")).json()
    described = {(path, method) for path, ops in spec["paths"].items() for method in ops}
    assert routes == described
    assert spec == openapi()


async def test_dashboard_is_html(make_client: MakeClient) -> None:
    client = await make_client()
    r = await client.get("/dashboard")
    assert r.status == 200 and "text/html" in r.headers["Content-Type"] and "fetch(\"metrics\")" in await r.text()
