"""The management server (DESIGN.md §4), an aiohttp application on the main thread's event loop.

It never touches the model directly: reads come from the report the worker publishes (``Worker.published``) and
from :class:`~delta.worker.WorkerStats`; changes and full views (``/model``) are functions handed to
``Worker.submit``, which the worker runs between two batches. So a request never sees a half-updated model, and
a busy model never blocks the event loop.

Every error is JSON ``{"error": ..., "detail": ...}`` with a 4xx code (a bug gives a 500 with no traceback in the
body). Mutating calls need ``Authorization: Bearer <management.token>``: 401 for a missing or wrong token, 403 when
no token is configured and ``management.allow_unauthenticated`` is false. Tokens are compared in constant time.
"""

from __future__ import annotations

import asyncio
import hmac
import logging
import time
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass, field
from importlib import resources
from typing import Any

from aiohttp import web
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from delta.config import Config, redact
from delta.errors import ConfigError, DeltaError, SpecError
from delta.events import dumps, loads
from delta.openapi import openapi
from delta.snapshots import SnapshotError, SnapshotStore
from delta.spec import build
from delta.worker import Worker

__all__ = ["ApiContext", "make_app"]

log = logging.getLogger(__name__)

STALLED_AFTER_S = 30.0
SUBMIT_TIMEOUT_S = 60.0
RUNTIME_KEYS = ("model.spec", "metrics.names", "training.paused",
                "snapshots.every_events", "snapshots.every_seconds", "snapshots.keep")

CTX: web.AppKey[ApiContext] = web.AppKey("ctx")
REGISTRY: web.AppKey[CollectorRegistry] = web.AppKey("registry")


@dataclass
class ApiContext:
    """What the handlers share: the live config, the worker (and through it the host and snapshots)."""

    cfg: Config
    worker: Worker
    started: float = field(default_factory=time.monotonic)


class ApiError(web.HTTPException):
    """An HTTP error with Delta's JSON body."""

    def __init__(self, status: int, error: str, detail: Any = None) -> None:
        self.status_code = status
        super().__init__(text=dumps({"error": error, "detail": detail}).decode(), content_type="application/json")


def _json(data: Any, status: int = 200) -> web.Response:
    return web.Response(body=dumps(data), status=status, content_type="application/json")


@web.middleware
async def errors(request: web.Request, handler: Callable[[web.Request], Awaitable[web.StreamResponse]]
                 ) -> web.StreamResponse:
    try:
        return await handler(request)
    except ApiError:
        raise
    except web.HTTPException as exc:
        if exc.status_code < 400:
            raise
        detail = {"path": request.path, "method": request.method}
        raise ApiError(exc.status_code, exc.reason.lower(), detail) from None
    except Exception:
        log.exception("management request %s %s failed", request.method, request.path)
        raise ApiError(500, "internal error", "the worker logged the cause") from None


def _authorize(request: web.Request) -> None:
    mgmt = request.app[CTX].cfg.management
    if mgmt.token is None:
        if mgmt.allow_unauthenticated:
            return
        raise ApiError(403, "changes are disabled: no API token is configured",
                       "set management.token (DELTA_API_TOKEN) and send 'Authorization: Bearer <token>', or set "
                       "management.allow_unauthenticated: true (DELTA_ALLOW_UNAUTHENTICATED) on a trusted network")
    header = request.headers.get("Authorization", "")
    scheme, _, given = header.partition(" ")
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), mgmt.token.encode()):
        raise ApiError(401, "missing or wrong API token", "send 'Authorization: Bearer <management.token>'")


async def _body(request: web.Request) -> dict[str, Any]:
    raw = await request.read()
    try:
        body = loads(raw) if raw else None
    except ValueError as exc:
        raise ApiError(400, "request body is not valid JSON", str(exc)) from None
    if not isinstance(body, dict):
        raise ApiError(400, "request body must be a JSON object", None)
    return body


async def _on_worker(request: web.Request, fn: Callable[[], Any]) -> Any:
    fut = request.app[CTX].worker.submit(fn)
    try:
        return await asyncio.wait_for(asyncio.wrap_future(fut), SUBMIT_TIMEOUT_S)
    except TimeoutError:
        raise ApiError(503, "the worker did not take the request in time", "retry; see /ready") from None


# --- handlers ------------------------------------------------------------------------------------------------------

async def health(request: web.Request) -> web.Response:
    return _json({"status": "ok"})


async def ready(request: web.Request) -> web.Response:
    stats = request.app[CTX].worker.stats
    with stats.lock:
        running, assigned, last_loop = stats.running, list(stats.assigned), stats.last_loop
    reason = None
    if not running:
        reason = "the worker loop is not running"
    elif not assigned:
        reason = "no partitions assigned yet (joining the consumer group)"
    elif time.monotonic() - last_loop > STALLED_AFTER_S:
        reason = f"the consumer loop has not polled for {time.monotonic() - last_loop:.0f}s"
    if reason is not None:
        raise ApiError(503, "not ready", reason)
    return _json({"status": "ready", "partitions": assigned})


def _metrics_body(ctx: ApiContext) -> dict[str, Any]:
    report = dict(ctx.worker.published)
    stats = ctx.worker.stats
    with stats.lock:
        report["throughput"] = {"train_per_s": stats.train_per_s, "predict_per_s": stats.predict_per_s}
        report["lag"] = dict(stats.lag)
        report["errors"] = {"delivery_failures": stats.delivery_failures, "consume_errors": stats.consume_errors}
    report["training"] = {"paused": ctx.worker.paused}
    store = ctx.worker.snapshots
    if store is not None:
        report["snapshots"] = {"written": store.written, "last_pause_ms": round(store.last_pause_ms, 3),
                               "last_write_ms": round(store.last_write_ms, 3), "last_size": store.last_size,
                               "restored_from": ctx.worker.restored_from}
    report["uptime_s"] = round(time.monotonic() - ctx.started, 3)
    return report


async def metrics_json(request: web.Request) -> web.Response:
    return _json(_metrics_body(request.app[CTX]))


class _Collector:
    """Turns the JSON figures into Prometheus families at scrape time."""

    def __init__(self, ctx: ApiContext) -> None:
        self.ctx = ctx

    def collect(self) -> Iterator[Metric]:
        body = _metrics_body(self.ctx)
        version = str(body["model"]["version"])
        model = body["model"]["name"]
        yield _gauge("delta_model_version", "Version of the hosted model (increments on every change).",
                     [([model], body["model"]["version"])], ["model"])
        events = body["events"]
        for name, help_text in (("trained", "Training events learned (across restarts with snapshots)."),
                                ("predicted", "Prediction events answered."),
                                ("invalid", "Bad-input events sent to the dead-letter topic."),
                                ("labels_joined", "Label-only events joined to an earlier prediction.")):
            yield _counter(f"delta_events_{name}", help_text, events[name])
        for kind in ("metrics", "rolling"):
            family = "delta_model_metric" if kind == "metrics" else "delta_model_metric_rolling"
            yield _gauge(family, f"{'Progressive' if kind == 'metrics' else 'Rolling-window'} validation metric.",
                         [([version, name], value) for name, value in body[kind].items()],
                         ["model_version", "metric"])
        yield _gauge("delta_throughput_events_per_second", "Events per second over the last interval.",
                     [(["train"], body["throughput"]["train_per_s"]),
                      (["predict"], body["throughput"]["predict_per_s"])], ["kind"])
        yield _gauge("delta_consumer_lag_messages", "Messages behind the end of each assigned partition.",
                     [(k.rsplit("/", 1), v) for k, v in body["lag"].items()], ["topic", "partition"])
        yield _counter("delta_drift_detections", "Concept drifts detected (ADWIN on the error).",
                       body["drift"]["detections"])
        for name, value in body["errors"].items():
            yield _counter(f"delta_{name}", f"Kafka {name.replace('_', ' ')}.", value)
        yield _gauge("delta_training_paused", "1 while training is paused.", [([], int(body["training"]["paused"]))])
        yield _gauge("delta_uptime_seconds", "Seconds since the worker started.", [([], body["uptime_s"])])


def _counter(name: str, help_text: str, value: float) -> CounterMetricFamily:
    c = CounterMetricFamily(name, help_text)
    c.add_metric([], value)
    return c


def _gauge(name: str, help_text: str, samples: list[tuple[list[str], float]], labels: list[str] | None = None
           ) -> GaugeMetricFamily:
    g = GaugeMetricFamily(name, help_text, labels=labels or [])
    for values, value in samples:
        g.add_metric(values, value)
    return g


async def metrics_prometheus(request: web.Request) -> web.Response:
    return web.Response(body=generate_latest(request.app[REGISTRY]),
                        headers={"Content-Type": "text/plain; version=0.0.4"})


async def config_get(request: web.Request) -> web.Response:
    return _json(redact(request.app[CTX].cfg))


def _flatten_patch(body: dict[str, Any]) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, values in body.items():
        if not isinstance(values, dict):
            raise ApiError(422, f"'{section}' must be an object of keys", {"field": section})
        for name, value in values.items():
            key = f"{section}.{name}"
            if key not in RUNTIME_KEYS:
                raise ApiError(422, f"'{key}' cannot be changed at run time",
                               {"field": key, "changeable": list(RUNTIME_KEYS)})
            flat[key] = value
    if not flat:
        raise ApiError(422, "nothing to change", {"changeable": list(RUNTIME_KEYS)})
    return flat


async def config_patch(request: web.Request) -> web.Response:
    _authorize(request)
    ctx = request.app[CTX]
    flat = _flatten_patch(await _body(request))
    try:
        new_cfg = ctx.cfg.replace(flat)
    except ConfigError as exc:
        raise ApiError(422, str(exc), {"field": next(iter(flat))}) from None
    model = None
    if "model.spec" in flat:
        try:
            model = await asyncio.to_thread(build, new_cfg.model.spec)
        except SpecError as exc:
            raise ApiError(400, str(exc), {"field": "model.spec"}) from None

    def apply() -> int:
        host, worker = ctx.worker.host, ctx.worker
        if "metrics.names" in flat:
            host.set_metrics(new_cfg.metrics.names)
        if model is not None:
            host.replace(new_cfg.model.spec, model)
        worker.reconfigure(new_cfg)
        return int(host.version)

    try:
        version = await _on_worker(request, apply)
    except DeltaError as exc:
        raise ApiError(422, str(exc), {"field": next(iter(flat))}) from None
    ctx.cfg = new_cfg
    log.info("config changed: %s (model version %d)", ", ".join(sorted(flat)), version)
    return _json({"config": redact(new_cfg), "model_version": version})


async def model_get(request: web.Request) -> web.Response:
    host = request.app[CTX].worker.host
    return _json(await _on_worker(request, host.describe))


def _store(request: web.Request) -> SnapshotStore:
    store = request.app[CTX].worker.snapshots
    if store is None:
        raise ApiError(409, "snapshots are off", "set snapshots.dir (DELTA_SNAPSHOT_DIR) to a directory only the "
                                                 "worker can write, and restart")
    return store


async def snapshots_list(request: web.Request) -> web.Response:
    store = request.app[CTX].worker.snapshots
    listed = [] if store is None else [s.listing() for s in await asyncio.to_thread(store.list)]
    return _json({"snapshots": listed})


async def snapshots_take(request: web.Request) -> web.Response:
    _authorize(request)
    _store(request)
    worker = request.app[CTX].worker
    written = await _on_worker(request, worker.snapshot)
    snap = await asyncio.wrap_future(written)
    return _json(snap.listing(), status=201)


async def model_rollback(request: web.Request) -> web.Response:
    _authorize(request)
    store = _store(request)
    body = await _body(request)
    snap_id = body.get("snapshot")
    if not isinstance(snap_id, str):
        raise ApiError(400, "body must be {\"snapshot\": \"<id>\"}", {"field": "snapshot"})
    try:
        _, state = await asyncio.to_thread(store.load, snap_id)
    except SnapshotError as exc:
        status = 404 if str(exc).startswith("no snapshot") else 422
        raise ApiError(status, str(exc), {"field": "snapshot"}) from None
    host = request.app[CTX].worker.host

    def apply() -> dict[str, Any]:
        host.rollback(state)
        return host.describe()

    try:
        described = await _on_worker(request, apply)
    except DeltaError as exc:
        raise ApiError(422, str(exc), {"field": "snapshot"}) from None
    log.info("rolled back to snapshot %s as model version %d", snap_id, described["version"])
    return _json(described)


async def openapi_json(request: web.Request) -> web.Response:
    return _json(openapi())


async def dashboard(request: web.Request) -> web.Response:
    page = resources.files("delta").joinpath("dashboard.html").read_text()
    return web.Response(text=page, content_type="text/html")


def make_app(ctx: ApiContext) -> web.Application:
    app = web.Application(middlewares=[errors], client_max_size=1 << 20)
    app[CTX] = ctx
    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Collector(ctx))
    app[REGISTRY] = registry
    app.add_routes([
        web.get("/health", health, allow_head=False),
        web.get("/ready", ready, allow_head=False),
        web.get("/metrics", metrics_json, allow_head=False),
        web.get("/metrics/prometheus", metrics_prometheus, allow_head=False),
        web.get("/config", config_get, allow_head=False),
        web.patch("/config", config_patch),
        web.get("/model", model_get, allow_head=False),
        web.get("/openapi.json", openapi_json, allow_head=False),
        web.get("/dashboard", dashboard, allow_head=False),
        web.get("/snapshots", snapshots_list, allow_head=False),
        web.post("/snapshots", snapshots_take),
        web.post("/model/rollback", model_rollback),
    ])
    return app
