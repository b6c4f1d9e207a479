"""The OpenAPI 3 description of the management API, served at ``/openapi.json``.

Kept beside the handlers by a test that compares it with the application's routes both ways, and exercised by a
property-based test (schemathesis) that checks every response against it.
"""

from __future__ import annotations

from typing import Any

__all__ = ["openapi"]

_NUM = {"type": "number"}
_INT = {"type": "integer"}
_STR = {"type": "string"}
_NUM_MAP = {"type": "object", "additionalProperties": {"type": ["number", "null"]}}

ERROR = {
    "type": "object",
    "required": ["error", "detail"],
    "properties": {"error": _STR, "detail": {}},
}

METRICS = {
    "type": "object",
    "required": ["model", "events", "metrics", "rolling", "throughput", "lag", "drift", "uptime_s"],
    "properties": {
        "model": {"type": "object", "required": ["name", "spec", "version"],
                  "properties": {"name": _STR, "spec": _STR, "version": _INT}},
        "events": {"type": "object", "required": ["trained", "predicted", "invalid", "labels_joined"],
                   "properties": {k: _INT for k in ("trained", "predicted", "invalid", "labels_joined")}},
        "metrics": _NUM_MAP,
        "rolling": _NUM_MAP,
        "throughput": {"type": "object", "required": ["train_per_s", "predict_per_s"],
                       "properties": {"train_per_s": _NUM, "predict_per_s": _NUM}},
        "lag": {"type": "object", "additionalProperties": _INT},
        "drift": {"type": "object", "required": ["detector", "detections", "last_at_event"],
                  "properties": {"detector": _STR, "detections": _INT,
                                 "last_at_event": {"type": ["integer", "null"]}}},
        "errors": {"type": "object", "additionalProperties": _INT},
        "training": {"type": "object", "properties": {"paused": {"type": "boolean"}}},
        "uptime_s": _NUM,
    },
}

CONFIG = {
    "type": "object",
    "required": ["kafka", "topics", "model", "metrics", "management", "snapshots"],
    "additionalProperties": {"type": "object"},
}

CONFIG_PATCH = {
    "type": "object",
    "minProperties": 1,
    "additionalProperties": False,
    "properties": {
        "model": {"type": "object", "additionalProperties": False, "properties": {"spec": _STR}},
        "metrics": {"type": "object", "additionalProperties": False,
                    "properties": {"names": {"type": "array", "items": _STR, "minItems": 1}}},
        "training": {"type": "object", "additionalProperties": False, "properties": {"paused": {"type": "boolean"}}},
        "snapshots": {"type": "object", "additionalProperties": False,
                      "properties": {"every_events": _INT, "every_seconds": _NUM, "keep": _INT}},
    },
}

MODEL = {
    "type": "object",
    "required": ["version", "spec", "name", "params", "trained", "created", "history"],
    "properties": {
        "version": _INT, "spec": _STR, "name": _STR, "task": _STR, "params": {"type": "object"},
        "trained": _INT, "created": _STR, "metrics": _NUM_MAP,
        "history": {"type": "array", "items": {"type": "object"}},
    },
}

SNAPSHOT = {
    "type": "object",
    "required": ["id", "model_version", "created", "trained", "size"],
    "properties": {"id": _STR, "model_version": _INT, "created": _STR, "trained": _INT, "size": _INT,
                   "spec": _STR, "offsets": {"type": "object"}},
}


def _json(schema: dict[str, Any], description: str) -> dict[str, Any]:
    return {"description": description, "content": {"application/json": {"schema": schema}}}


def _err(description: str) -> dict[str, Any]:
    return _json({"$ref": "#/components/schemas/Error"}, description)


_AUTH_ERRORS = {"401": _err("missing or wrong token"), "403": _err("no token configured; changes disabled")}


def openapi() -> dict[str, Any]:
    secured: list[dict[str, list[str]]] = [{"bearer": []}]
    return {
        "openapi": "3.0.3",
        "info": {"title": "Delta management API", "version": "1",
                 "description": "Health, metrics, configuration and model lifecycle of one Delta worker."},
        "paths": {
            "/health": {"get": {"summary": "liveness", "responses": {
                "200": _json({"type": "object", "required": ["status"], "properties": {"status": _STR}}, "alive")}}},
            "/ready": {"get": {"summary": "readiness: model loaded, partitions assigned, loop not stalled",
                               "responses": {"200": _json({"type": "object"}, "ready"),
                                             "503": _err("not ready, with the reason")}}},
            "/metrics": {"get": {"summary": "figures as JSON", "responses": {"200": _json(METRICS, "figures")}}},
            "/metrics/prometheus": {"get": {"summary": "figures in Prometheus text format", "responses": {
                "200": {"description": "text exposition format", "content": {"text/plain": {"schema": _STR}}}}}},
            "/config": {
                "get": {"summary": "effective config, secrets redacted",
                        "responses": {"200": _json(CONFIG, "config")}},
                "patch": {
                    "summary": "change model spec, metrics, paused training or snapshot cadence",
                    "security": secured,
                    "requestBody": {"required": True, "content": {"application/json": {"schema": CONFIG_PATCH}}},
                    "responses": {
                        "200": _json({"type": "object", "required": ["config", "model_version"],
                                      "properties": {"config": CONFIG, "model_version": _INT}}, "applied"),
                        "400": _err("malformed JSON or a model spec the safe parser refuses"),
                        "422": _err("a value of the wrong type or range, or a key not changeable at run time"),
                        "503": _err("the worker did not take the change in time"),
                        **_AUTH_ERRORS,
                    },
                },
            },
            "/model": {"get": {"summary": "the hosted model and its history", "responses": {
                "200": _json(MODEL, "model"), "503": _err("the worker did not answer in time")}}},
            "/snapshots": {
                "get": {"summary": "list snapshots, newest first", "responses": {
                    "200": _json({"type": "object", "required": ["snapshots"],
                                  "properties": {"snapshots": {"type": "array", "items": SNAPSHOT}}}, "snapshots")}},
                "post": {"summary": "take a snapshot now", "security": secured, "responses": {
                    "201": _json(SNAPSHOT, "written"), "409": _err("snapshots are off (no snapshots.dir)"),
                    "503": _err("the worker did not answer in time"), **_AUTH_ERRORS}},
            },
            "/model/rollback": {"post": {
                "summary": "restore the model of a snapshot as a new version", "security": secured,
                "requestBody": {"required": True, "content": {"application/json": {"schema": {
                    "type": "object", "required": ["snapshot"], "properties": {"snapshot": _STR}}}}},
                "responses": {"200": _json(MODEL, "restored"), "400": _err("malformed request"),
                              "404": _err("no such snapshot"), "409": _err("snapshots are off"),
                              "422": _err("the snapshot is unreadable or of another kind of model"),
                              "503": _err("the worker did not answer in time"), **_AUTH_ERRORS}}},
            "/openapi.json": {"get": {"summary": "this description",
                                      "responses": {"200": _json({"type": "object"}, "OpenAPI 3")}}},
            "/dashboard": {"get": {"summary": "live charts", "responses": {
                "200": {"description": "HTML page", "content": {"text/html": {"schema": _STR}}}}}},
        },
        "components": {
            "schemas": {"Error": ERROR},
            "securitySchemes": {"bearer": {"type": "http", "scheme": "bearer"}},
        },
    }
