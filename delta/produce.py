"""``delta produce``: replay a dataset into Kafka as DESIGN.md §1 events, for demos, load tests and backfills.

Each row becomes a training event ``{"id", "x", "y"}``. With ``predict_fraction`` > 0, that fraction of rows is
first sent as a prediction event ``{"id", "x"}`` and its label follows ``label_delay`` seconds later as a label-only
training event ``{"id", "y"}``, the way delayed ground truth arrives in production. Prediction and label events
share the row id as their Kafka key, so they land on the same partition number of their topics (and on the same
worker, which joins them).

Sources: River's bundled datasets (no download needed; :data:`DATASETS`), a CSV file (``target`` names the label
column; numbers are parsed, everything else stays a string) or a JSONL file of ``{"x": {...}, "y": ...}`` objects.
The planning (:func:`plan`) is pure; :func:`replay` is the Kafka adapter.
"""

from __future__ import annotations

import collections
import csv
import datetime as dt
import random
import time
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from delta.errors import ConfigError, DeltaError
from delta.events import dumps, loads

__all__ = ["DATASETS", "Outgoing", "plan", "read_rows", "replay"]

DATASETS = ("Phishing", "Bananas", "TrumpApproval", "ChickWeights", "ImageSegments", "WaterFlow", "Shuttle",
            "AirlinePassengers")


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One message to send: topic kind (``train`` or ``predict``), key, value, and the earliest time to send it."""

    kind: str
    key: bytes
    value: bytes
    due: float


def _plain(v: Any) -> Any:
    if isinstance(v, dt.datetime | dt.date):
        return v.isoformat()
    return v


def _number(text: str) -> Any:
    for cast in (int, float):
        try:
            return cast(text)
        except ValueError:
            pass
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    return None if text == "" else text


def read_rows(source: str, target: str | None = None) -> Iterator[tuple[dict[str, Any], Any]]:
    """(features, label) pairs from a River dataset name, a ``.csv`` file (with ``target``) or a ``.jsonl`` file."""
    if source in DATASETS:
        from river import datasets

        for x, y in getattr(datasets, source)():
            yield {k: _plain(v) for k, v in x.items()}, y
        return
    path = Path(source)
    if not path.is_file():
        raise ConfigError(f"--source {source!r} is neither a bundled dataset ({', '.join(DATASETS)}) nor a file")
    if path.suffix == ".csv":
        if not target:
            raise ConfigError("--target is required for a CSV file: name the label column")
        with path.open(newline="") as f:
            reader = csv.DictReader(f)
            if reader.fieldnames is None or target not in reader.fieldnames:
                raise ConfigError(f"--target {target!r} is not a column of {path} ({reader.fieldnames})")
            for row in reader:
                y = _number(row.pop(target))
                yield {k: _number(v) for k, v in row.items()}, y
        return
    if path.suffix in (".jsonl", ".ndjson"):
        with path.open("rb") as f:
            for n, line in enumerate(f, 1):
                if line.strip():
                    obj = loads(line)
                    if not isinstance(obj, dict) or not isinstance(obj.get("x"), dict) or "y" not in obj:
                        raise ConfigError(f"{path}:{n}: expected a JSON object {{\"x\": {{...}}, \"y\": ...}}")
                    yield obj["x"], obj["y"]
        return
    raise ConfigError(f"--source {path}: use a .csv or .jsonl file, or a bundled dataset")


def plan(rows: Iterable[tuple[dict[str, Any], Any]], *, rate: float, predict_fraction: float, label_delay: float,
         seed: int = 42, start: float = 0.0, prefix: str = "e") -> Iterator[Outgoing]:
    """The messages of a replay in send order, each with the time (relative to ``start``) it is due."""
    rng = random.Random(seed)
    step = 1.0 / rate if rate > 0 else 0.0
    delayed: collections.deque[Outgoing] = collections.deque()
    for i, (x, y) in enumerate(rows):
        now = start + i * step
        while delayed and delayed[0].due <= now:
            yield delayed.popleft()
        event_id = f"{prefix}-{i}"
        key = event_id.encode()
        if predict_fraction > 0 and rng.random() < predict_fraction:
            yield Outgoing("predict", key, dumps({"id": event_id, "x": x}), now)
            delayed.append(Outgoing("train", key, dumps({"id": event_id, "y": y}), now + label_delay))
        else:
            yield Outgoing("train", key, dumps({"id": event_id, "x": x, "y": y}), now)
    yield from delayed


def replay(messages: Iterable[Outgoing], producer: Any, topics: dict[str, str], progress: Any = None) -> int:
    """Send planned messages on time through a confluent-kafka producer; returns how many were acknowledged."""
    errors: list[str] = []
    started = time.monotonic()

    def on_delivery(err: Any, _msg: Any) -> None:
        if err is not None:
            errors.append(str(err))

    sent = 0
    for m in messages:
        wait = started + m.due - time.monotonic()
        if wait > 0:
            time.sleep(wait)
        while True:
            try:
                producer.produce(topics[m.kind], m.value, m.key, on_delivery=on_delivery)
                break
            except BufferError:
                producer.poll(0.1)
        sent += 1
        if sent % 100 == 0:
            producer.poll(0)
            if progress is not None:
                progress.update(100)
    if progress is not None:
        progress.update(sent % 100)
    producer.flush(30)
    if errors:
        raise DeltaError(f"{len(errors)} message(s) were not delivered, first: {errors[0]}")
    return sent
