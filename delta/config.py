"""Configuration (DESIGN.md §3): a YAML file plus ``DELTA_*`` environment variables (env wins), validated once at
start-up into a frozen :class:`Config`.

Every key is declared once in :data:`FIELDS` with its env variable, default and parser, so the YAML reader, the env
reader, ``GET /config`` and the docs cannot drift apart. An invalid value raises :class:`ConfigError` naming the key,
the value and what is allowed; ``delta run`` turns it into exit code 2.

Keys beyond the design's table (decisions, documented here and in the README):
``management.allow_unauthenticated`` (``DELTA_ALLOW_UNAUTHENTICATED``, default false),
``training.paused`` (``DELTA_TRAINING_PAUSED``, default false),
``events.max_bytes`` (``DELTA_MAX_EVENT_BYTES``, default 1 MiB: larger values go to the dead-letter topic),
``events.max_pending_labels`` (``DELTA_MAX_PENDING_LABELS``, default 100000: predictions remembered for delayed
labels, oldest forgotten first; also the most labels held waiting for their prediction event),
``events.label_wait_seconds`` (``DELTA_LABEL_WAIT_SECONDS``, default 30: how long a label read before its
prediction event waits for it before going to the dead-letter topic; 0 dead-letters it at once),
``worker.batch_size`` (``DELTA_BATCH_SIZE``, default 500: messages per ``consume`` call) and
``worker.poll_timeout`` (``DELTA_POLL_TIMEOUT``, seconds, default 0.5, at most 1).
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from delta.errors import ConfigError
from delta.events import DEFAULT_MAX_BYTES, dumps, loads

__all__ = ["FIELDS", "Config", "load_config", "redact"]

DEFAULT_SPEC = "preprocessing.StandardScaler() | linear_model.LogisticRegression()"
SECRET_WORDS = ("password", "secret", "token", "key")  # "ssl.key.location" is a path; redacting it costs nothing


@dataclass(frozen=True)
class KafkaConfig:
    bootstrap_servers: str = "localhost:9092"
    group_id: str = "delta"
    properties: Mapping[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class TopicsConfig:
    train: str = "delta.train"
    predict: str = "delta.predict"
    predictions: str = "delta.predictions"
    dead_letter: str = "delta.dead-letter"


@dataclass(frozen=True)
class ModelConfig:
    spec: str = DEFAULT_SPEC


@dataclass(frozen=True)
class MetricsConfig:
    names: tuple[str, ...] | None = None  # None: the task's defaults (see delta.host)
    window: int = 1000


@dataclass(frozen=True)
class ManagementConfig:
    host: str = "0.0.0.0"  # noqa: S104 - a container-friendly default, as DESIGN.md §3 says
    port: int = 8080
    token: str | None = None
    allow_unauthenticated: bool = False


@dataclass(frozen=True)
class SnapshotsConfig:
    dir: str | None = None
    every_events: int = 10_000
    every_seconds: float = 60.0
    keep: int = 10


@dataclass(frozen=True)
class TrainingConfig:
    paused: bool = False


@dataclass(frozen=True)
class EventsConfig:
    max_bytes: int = DEFAULT_MAX_BYTES
    max_pending_labels: int = 100_000
    label_wait_seconds: float = 30.0


@dataclass(frozen=True)
class WorkerConfig:
    batch_size: int = 500
    poll_timeout: float = 0.5


@dataclass(frozen=True)
class Config:
    kafka: KafkaConfig = field(default_factory=KafkaConfig)
    topics: TopicsConfig = field(default_factory=TopicsConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    metrics: MetricsConfig = field(default_factory=MetricsConfig)
    management: ManagementConfig = field(default_factory=ManagementConfig)
    snapshots: SnapshotsConfig = field(default_factory=SnapshotsConfig)
    training: TrainingConfig = field(default_factory=TrainingConfig)
    events: EventsConfig = field(default_factory=EventsConfig)
    worker: WorkerConfig = field(default_factory=WorkerConfig)

    def get(self, key: str) -> Any:
        section, name = key.split(".")
        return getattr(getattr(self, section), name)

    def replace(self, updates: Mapping[str, Any]) -> Config:
        """A copy with ``{"section.name": raw value}`` applied, each value parsed and validated like YAML input."""
        for key in updates:
            if key not in FIELDS:
                raise ConfigError(f"unknown config key {key!r}; known keys: {', '.join(FIELDS)}")
        return self._with({key: FIELDS[key].parse(key, raw, False) for key, raw in updates.items()})

    def _with(self, values: Mapping[str, Any]) -> Config:
        """A copy with ``{"section.name": typed value}`` set, checked across keys."""
        sections: dict[str, dict[str, Any]] = {}
        for key, value in values.items():
            section, name = key.split(".")
            sections.setdefault(section, {})[name] = value
        changed = {s: dataclasses.replace(getattr(self, s), **v) for s, v in sections.items()}
        return _check(dataclasses.replace(self, **changed))

    def to_env(self) -> dict[str, str]:
        """The ``DELTA_*`` variables that reproduce this config in another process (``load_config(env=...)``)."""
        out = {}
        for key, spec in FIELDS.items():
            value = self.get(key)
            if value is None:
                out[spec.env] = ""
            elif isinstance(value, bool):
                out[spec.env] = "true" if value else "false"
            elif isinstance(value, tuple):
                out[spec.env] = ",".join(value)
            elif isinstance(value, Mapping):
                out[spec.env] = dumps(dict(value)).decode()
            else:
                out[spec.env] = str(value)
        return out

    def as_dict(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for key in FIELDS:
            section, name = key.split(".")
            value = self.get(key)
            out.setdefault(section, {})[name] = list(value) if isinstance(value, tuple) else value
        return out


def redact(cfg: Config) -> dict[str, dict[str, Any]]:
    """The config as plain data with secrets replaced by ``"***"`` (for ``GET /config`` and logs)."""
    out = cfg.as_dict()
    if out["management"]["token"] is not None:
        out["management"]["token"] = "***"  # noqa: S105 - the mask, not a password
    out["kafka"]["properties"] = {
        k: ("***" if any(w in k.lower() for w in SECRET_WORDS) else v) for k, v in cfg.kafka.properties.items()
    }
    if "@" in cfg.kafka.bootstrap_servers:
        out["kafka"]["bootstrap_servers"] = "***"
    return out


# --- parsers: (key, raw value, came from an env string?) -> typed value ---------------------------------------------

def _bad(key: str, raw: Any, allowed: str) -> ConfigError:
    return ConfigError(f"invalid config {key}={raw!r}: expected {allowed}")


def _str(key: str, raw: Any, from_env: bool) -> str:
    if not isinstance(raw, str) or not raw.strip():
        raise _bad(key, raw, "a non-empty string")
    return raw.strip()


def _opt_str(key: str, raw: Any, from_env: bool) -> str | None:
    if raw is None or (from_env and raw == ""):
        return None
    return _str(key, raw, from_env)


def _bool(key: str, raw: Any, from_env: bool) -> bool:
    if isinstance(raw, bool):
        return raw
    words = raw.strip().lower() if from_env and isinstance(raw, str) else None
    if words in ("1", "true", "yes", "on", "0", "false", "no", "off"):
        return words in ("1", "true", "yes", "on")
    raise _bad(key, raw, "true or false")


def _number_range(kind: type[int] | type[float], lo: float, hi: float) -> Callable[[str, Any, bool], Any]:
    """A parser for an integer (``kind=int``) or a finite number in ``[lo, hi]``; env strings are converted."""
    allowed = f"an integer from {int(lo)} to {int(hi)}" if kind is int else f"a number from {lo:g} to {hi:g}"
    accepted = (int,) if kind is int else (int, float)

    def parse(key: str, raw: Any, from_env: bool) -> Any:
        value = raw
        if from_env and isinstance(raw, str):
            try:
                value = kind(raw.strip())
            except ValueError:
                raise _bad(key, raw, allowed) from None
        if isinstance(value, bool) or not isinstance(value, accepted) or not math.isfinite(value) \
                or not lo <= value <= hi:
            raise _bad(key, raw, allowed)
        return kind(value)
    return parse


def _int_range(lo: int, hi: int) -> Callable[[str, Any, bool], int]:
    return _number_range(int, lo, hi)


def _float_range(lo: float, hi: float) -> Callable[[str, Any, bool], float]:
    return _number_range(float, lo, hi)


def _properties(key: str, raw: Any, from_env: bool) -> dict[str, Any]:
    if from_env and isinstance(raw, str):
        try:
            raw = loads(raw) if raw.strip() else {}
        except ValueError:
            raise _bad(key, "<not shown>", "a JSON object of librdkafka settings") from None
    if not isinstance(raw, Mapping) or not all(isinstance(k, str) for k in raw):
        raise _bad(key, "<not shown>", "a mapping of librdkafka settings, e.g. {security.protocol: SASL_SSL}")
    for k, v in raw.items():
        if not isinstance(v, str | int | float | bool):
            raise ConfigError(f"invalid config {key}.{k}: expected a string, number or boolean")
    return dict(raw)


def _metric_names(key: str, raw: Any, from_env: bool) -> tuple[str, ...] | None:
    from river import metrics

    if raw is None or (from_env and raw == ""):
        return None
    if from_env and isinstance(raw, str):
        raw = [n for n in (p.strip() for p in raw.split(",")) if n]
    if not isinstance(raw, list | tuple) or not raw or not all(isinstance(n, str) for n in raw):
        raise _bad(key, raw, "a non-empty list of River metric names, e.g. [Accuracy, F1]")
    known = set(metrics.__all__) - {"base", "multioutput", "Metrics", "Rolling"}
    for name in raw:
        if name not in known:
            raise ConfigError(
                f"invalid config {key}: {name!r} is not a River metric; choose from {', '.join(sorted(known))}"
            )
    if len(set(raw)) != len(raw):
        raise _bad(key, raw, "each metric at most once")
    return tuple(raw)


@dataclass(frozen=True)
class Field:
    env: str
    parse: Callable[[str, Any, bool], Any]


FIELDS: dict[str, Field] = {
    "kafka.bootstrap_servers": Field("DELTA_BOOTSTRAP_SERVERS", _str),
    "kafka.group_id": Field("DELTA_GROUP_ID", _str),
    "kafka.properties": Field("DELTA_KAFKA_PROPERTIES", _properties),
    "topics.train": Field("DELTA_TRAIN_TOPIC", _str),
    "topics.predict": Field("DELTA_PREDICT_TOPIC", _str),
    "topics.predictions": Field("DELTA_PREDICTIONS_TOPIC", _str),
    "topics.dead_letter": Field("DELTA_DEAD_LETTER_TOPIC", _str),
    "model.spec": Field("DELTA_MODEL", _str),
    "metrics.names": Field("DELTA_METRICS", _metric_names),
    "metrics.window": Field("DELTA_METRICS_WINDOW", _int_range(1, 10_000_000)),
    "management.host": Field("DELTA_HOST", _str),
    "management.port": Field("DELTA_PORT", _int_range(0, 65535)),
    "management.token": Field("DELTA_API_TOKEN", _opt_str),
    "management.allow_unauthenticated": Field("DELTA_ALLOW_UNAUTHENTICATED", _bool),
    "snapshots.dir": Field("DELTA_SNAPSHOT_DIR", _opt_str),
    "snapshots.every_events": Field("DELTA_SNAPSHOT_EVERY_EVENTS", _int_range(1, 1 << 40)),
    "snapshots.every_seconds": Field("DELTA_SNAPSHOT_EVERY_SECONDS", _float_range(0.1, 86_400 * 7)),
    "snapshots.keep": Field("DELTA_SNAPSHOT_KEEP", _int_range(1, 100_000)),
    "training.paused": Field("DELTA_TRAINING_PAUSED", _bool),
    "events.max_bytes": Field("DELTA_MAX_EVENT_BYTES", _int_range(64, 1 << 30)),
    "events.max_pending_labels": Field("DELTA_MAX_PENDING_LABELS", _int_range(0, 100_000_000)),
    "events.label_wait_seconds": Field("DELTA_LABEL_WAIT_SECONDS", _float_range(0.0, 86_400.0)),
    "worker.batch_size": Field("DELTA_BATCH_SIZE", _int_range(1, 100_000)),
    "worker.poll_timeout": Field("DELTA_POLL_TIMEOUT", _float_range(0.01, 1.0)),
}


def _check(cfg: Config) -> Config:
    """Rules that span keys."""
    names = [cfg.topics.train, cfg.topics.predict, cfg.topics.predictions, cfg.topics.dead_letter]
    if len(set(names)) != 4:
        raise ConfigError(f"invalid config topics: train, predict, predictions and dead_letter must differ: {names}")
    if "bootstrap.servers" in cfg.kafka.properties or "group.id" in cfg.kafka.properties:
        raise ConfigError("invalid config kafka.properties: set kafka.bootstrap_servers and kafka.group_id instead "
                          "of bootstrap.servers/group.id")
    return cfg


def _flatten(doc: Mapping[str, Any], source: str) -> dict[str, Any]:
    flat: dict[str, Any] = {}
    for section, body in doc.items():
        if not isinstance(body, Mapping):
            raise ConfigError(f"invalid config in {source}: {section!r} must be a mapping of keys")
        for name, value in body.items():
            key = f"{section}.{name}"
            if key not in FIELDS:
                raise ConfigError(f"unknown config key {key!r} in {source}; known keys: {', '.join(FIELDS)}")
            flat[key] = value
    return flat


def load_config(path: str | Path | None = None, env: Mapping[str, str] | None = None) -> Config:
    """Read the YAML file (if any), apply ``DELTA_*`` variables from ``env`` (default ``os.environ``), validate."""
    env = os.environ if env is None else env
    flat: dict[str, Any] = {}
    if path is not None:
        try:
            doc = yaml.safe_load(Path(path).read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror}") from None
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from None
        if doc is not None:
            if not isinstance(doc, Mapping):
                raise ConfigError(f"config file {path} must hold a mapping of sections (kafka:, topics:, ...)")
            flat = _flatten(doc, str(path))
    parsed = {key: FIELDS[key].parse(key, raw, False) for key, raw in flat.items()}
    for key, spec in FIELDS.items():
        if spec.env in env:
            parsed[key] = spec.parse(key, env[spec.env], True)
    return Config()._with(parsed)
