"""Event codec (DESIGN.md §1): Kafka message bytes in, plain frozen events out, and predictions back to bytes.

Every JSON encode and decode in Delta goes through this module, so orjson is imported here only.

Decisions where the design is silent:
- ``id`` may be a string or an integer (turned into its decimal string); anything else is bad input.
- Feature names are strings (JSON guarantees it); values are numbers, booleans or strings. ``null`` drops the key;
  a list or object as a value is bad input, because River's estimators take flat dicts.
- Labels: classifiers take bool, int or string (not float: a float label almost always means a regression target
  sent to a classifier); regressors take int or float (not bool). Non-finite numbers anywhere are bad input.
- A label-only training event (``{"id": .., "y": ..}``, no ``x``) needs an ``id`` to join on.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Any, Literal, NamedTuple

import orjson

from delta.errors import EventError

__all__ = [
    "Features",
    "Incoming",
    "Label",
    "PredictEvent",
    "Prediction",
    "Task",
    "TrainEvent",
    "decode_predict",
    "decode_train",
    "dumps",
    "encode_prediction",
    "loads",
]

Task = Literal["classification", "regression"]
Label = bool | int | float | str
Features = dict[str, float | int | bool | str]

DEFAULT_MAX_BYTES = 1 << 20


class TrainEvent(NamedTuple):
    """A labeled event; ``x is None`` for a label-only event that joins an earlier prediction by ``id``.

    Hot-path records are named tuples: immutable plain data, built in a quarter of a frozen dataclass's time."""

    id: str | None
    x: Features | None
    y: Label


class PredictEvent(NamedTuple):
    id: str
    x: Features


@dataclass(frozen=True, slots=True)
class Incoming:
    """A Kafka message as plain data, kept when an event must outlive its batch (a label waiting for its
    prediction) and for dead letters, which repeat the original bytes and name where they came from."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: tuple[tuple[str, bytes | None], ...] = ()


class Prediction(NamedTuple):
    id: str
    y_pred: Label | None
    proba: dict[Any, float] | None
    model_version: int
    ts: int


def loads(data: bytes | str) -> Any:
    return orjson.loads(data)


def dumps(obj: Any) -> bytes:
    """Encode ``obj`` as JSON; non-string dict keys (class labels) become JSON strings (``True`` -> ``"true"``)."""
    return orjson.dumps(obj, option=orjson.OPT_NON_STR_KEYS | orjson.OPT_SERIALIZE_NUMPY)


def _parse_object(value: bytes | None, max_bytes: int) -> dict[str, Any]:
    if value is None:
        raise EventError("empty message value (tombstone); expected a JSON object")
    if len(value) > max_bytes:
        raise EventError(f"value is {len(value)} bytes, over the limit of {max_bytes} (events.max_bytes)")
    try:
        obj = orjson.loads(value)
    except orjson.JSONDecodeError as exc:
        text = str(exc)
        if "infinity" in text or b"NaN" in value or b"Infinity" in value:
            raise EventError(f"non-finite number in event (NaN/Infinity are not allowed): {text}") from None
        raise EventError(f"not valid JSON: {text}") from None
    if type(obj) is not dict:
        raise EventError(f"expected a JSON object, got {_kind(obj)}")
    return obj


def _kind(v: Any) -> str:
    return {dict: "an object", list: "an array", str: "a string", bool: "a boolean", int: "an integer",
            float: "a number", type(None): "null"}.get(type(v), type(v).__name__)


_PLAIN = frozenset({int, float, str, bool})


def _features(raw: Any) -> Features:
    """Validate features. orjson never yields NaN/Infinity, so a dict of plain values is returned as is (the hot
    path: one C-level pass over the value types); only ``null`` values or bad types take the slow path."""
    if type(raw) is not dict:
        raise EventError(f'"x" must be an object of features, got {_kind(raw)}')
    if _PLAIN.issuperset(map(type, raw.values())):
        return raw
    out: Features = {}
    for k, v in raw.items():
        t = type(v)
        if t is float:
            if not math.isfinite(v):
                raise EventError(f'feature "{k}" is not a finite number')
            out[k] = v
        elif t is int or t is str or t is bool:
            out[k] = v
        elif v is None:
            continue
        else:
            raise EventError(f'feature "{k}" is {_kind(v)}; allowed: number, boolean, string or null')
    return out


def _id(obj: dict[str, Any]) -> str | None:
    raw = obj.get("id")
    if raw is None or type(raw) is str:
        return raw
    if type(raw) is int:
        return str(raw)
    raise EventError(f'"id" must be a string or an integer, got {_kind(raw)}')


def _label(raw: Any, task: Task) -> Label:
    t = type(raw)
    if task == "classification":
        if t is bool or t is int or t is str:
            return raw  # type: ignore[no-any-return]
        raise EventError(f'label "y" is {_kind(raw)}; a classifier takes a boolean, integer or string label')
    if t is int or (t is float and math.isfinite(raw)):
        return raw  # type: ignore[no-any-return]
    raise EventError(f'label "y" is {_kind(raw)}; a regressor takes a finite number')


def decode_train(value: bytes | None, task: Task, max_bytes: int = DEFAULT_MAX_BYTES) -> TrainEvent:
    obj = _parse_object(value, max_bytes)
    y: Any = obj.get("y")
    t: type = type(y)
    if not ((t is bool or t is int or t is str) if task == "classification" else (t is float or t is int)):
        if y is None:
            raise EventError('training event has no label "y"')
        y = _label(y, task)
    event_id = obj.get("id")
    if event_id is not None and type(event_id) is not str:
        event_id = _id(obj)
    raw_x = obj.get("x")
    if raw_x is None:
        if event_id is None:
            raise EventError('training event has neither "x" nor an "id" to join an earlier prediction on')
        return TrainEvent(event_id, None, y)
    return TrainEvent(event_id, _features(raw_x), y)


def decode_predict(value: bytes | None, default_id: str, max_bytes: int = DEFAULT_MAX_BYTES) -> PredictEvent:
    """Decode a prediction request; ``default_id`` (the message key, else topic:partition:offset) fills a missing id."""
    obj = _parse_object(value, max_bytes)
    if "x" not in obj:
        raise EventError('prediction event has no features "x"')
    event_id = _id(obj)
    return PredictEvent(default_id if event_id is None else event_id, _features(obj["x"]))


def encode_prediction(p: Prediction) -> bytes:
    out: dict[str, Any] = {"id": p.id, "y_pred": p.y_pred}
    if p.proba is not None:
        out["proba"] = p.proba
    out["model_version"] = p.model_version
    out["ts"] = p.ts
    return dumps(out)
