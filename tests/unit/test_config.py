from __future__ import annotations

from pathlib import Path

import pytest

from delta.config import DEFAULT_SPEC, load_config, redact
from delta.errors import ConfigError


def test_defaults_match_the_design() -> None:
    cfg = load_config(env={})
    assert cfg.kafka.bootstrap_servers == "localhost:9092" and cfg.kafka.group_id == "delta"
    assert (cfg.topics.train, cfg.topics.predict, cfg.topics.predictions, cfg.topics.dead_letter) == (
        "delta.train", "delta.predict", "delta.predictions", "delta.dead-letter")
    assert cfg.model.spec == DEFAULT_SPEC
    assert cfg.metrics.window == 1000 and cfg.management.port == 8080 and cfg.management.token is None
    assert cfg.snapshots.dir is None and cfg.snapshots.every_events == 10_000 and cfg.snapshots.keep == 10


def test_yaml_then_env_wins(tmp_path: Path) -> None:
    path = tmp_path / "delta.yaml"
    path.write_text("kafka:\n  bootstrap_servers: a:1\n  properties:\n    security.protocol: SASL_SSL\n"
                    "metrics:\n  names: [Accuracy]\n  window: 50\n")
    cfg = load_config(path, env={"DELTA_BOOTSTRAP_SERVERS": "b:2", "DELTA_METRICS": "Accuracy, F1"})
    assert cfg.kafka.bootstrap_servers == "b:2"
    assert cfg.kafka.properties == {"security.protocol": "SASL_SSL"}
    assert cfg.metrics.names == ("Accuracy", "F1") and cfg.metrics.window == 50


@pytest.mark.parametrize(("env", "message"), [
    ({"DELTA_PORT": "http"}, "management.port='http': expected an integer from 0 to 65535"),
    ({"DELTA_METRICS_WINDOW": "0"}, "metrics.window='0'"),
    ({"DELTA_METRICS": "Accuracy,Nope"}, "'Nope' is not a River metric"),
    ({"DELTA_KAFKA_PROPERTIES": "{not json"}, "kafka.properties"),
    ({"DELTA_SNAPSHOT_EVERY_SECONDS": "nan"}, "snapshots.every_seconds"),
    ({"DELTA_POLL_TIMEOUT": "3"}, "worker.poll_timeout"),
    ({"DELTA_ALLOW_UNAUTHENTICATED": "maybe"}, "true or false"),
    ({"DELTA_TRAIN_TOPIC": "x", "DELTA_PREDICT_TOPIC": "x"}, "must differ"),
])
def test_invalid_values_name_the_key(env: dict[str, str], message: str) -> None:
    with pytest.raises(ConfigError) as info:
        load_config(env=env)
    assert message in str(info.value)


def test_to_env_reproduces_the_config() -> None:
    cfg = load_config(env={"DELTA_API_TOKEN": "t", "DELTA_METRICS": "Accuracy,F1", "DELTA_TRAINING_PAUSED": "yes",
                           "DELTA_KAFKA_PROPERTIES": '{"security.protocol": "SSL", "linger.ms": 3}',
                           "DELTA_POLL_TIMEOUT": "0.25", "DELTA_SNAPSHOT_DIR": "/tmp/s"})
    assert load_config(env=cfg.to_env()) == cfg
    assert load_config(env=load_config(env={}).to_env()) == load_config(env={})


def test_unknown_yaml_key_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "delta.yaml"
    path.write_text("kafka:\n  bootstrap: a:1\n")
    with pytest.raises(ConfigError, match=r"unknown config key 'kafka\.bootstrap'"):
        load_config(path, env={})


def test_secrets_are_redacted() -> None:
    cfg = load_config(env={"DELTA_API_TOKEN": "s3cret",
                           "DELTA_KAFKA_PROPERTIES": '{"sasl.password": "pw", "sasl.mechanism": "PLAIN"}'})
    shown = redact(cfg)
    assert shown["management"]["token"] == "***"
    assert shown["kafka"]["properties"] == {"sasl.password": "***", "sasl.mechanism": "PLAIN"}
    assert "s3cret" not in repr(shown) and "pw" not in repr(shown["kafka"])
