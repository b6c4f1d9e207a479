"""The real Kafka broker for integration tests (DESIGN.md §5), chosen in this order:

1. ``DELTA_TEST_BOOTSTRAP_SERVERS``: an external broker;
2. testcontainers' Kafka container, when a Docker engine answers;
3. a single-node KRaft broker from Apache Kafka's Maven Central jars (delta.localkafka).

It starts once per session. If none can be had the run fails (never skips) with the reason. Each test gets its own
uuid-named topics and consumer group through the ``cfg`` fixture. A failing test gets the broker log's tail.
"""

from __future__ import annotations

import os
import uuid
from collections.abc import Iterator
from typing import Any

import pytest
from kafkahelp import create_topics

from delta.config import Config, load_config
from delta.localkafka import BrokerError, LocalKafka

_local: LocalKafka | None = None


def _docker_answers() -> bool:
    try:
        import docker

        docker.from_env(timeout=3).ping()
        return True
    except Exception:
        return False


@pytest.fixture(scope="session")
def bootstrap() -> Iterator[str]:
    global _local
    external = os.environ.get("DELTA_TEST_BOOTSTRAP_SERVERS")
    if external:
        yield external
        return
    if _docker_answers():
        from testcontainers.kafka import KafkaContainer

        with KafkaContainer("confluentinc/cp-kafka:7.6.0").with_kraft() as container:
            yield container.get_bootstrap_server()
        return
    _local = LocalKafka()
    try:
        yield _local.start()
    except BrokerError as exc:
        pytest.fail(f"no Kafka broker for integration tests: {exc}", pytrace=False)
    finally:
        _local.stop()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[Any]) -> Iterator[None]:
    outcome = yield
    report = outcome.get_result()
    if report.failed and _local is not None:
        report.sections.append(("kafka broker log (tail)", _local.log_tail()))


def make_config(bootstrap: str, partitions: int = 1, **env: str) -> Config:
    """A config with fresh uuid topics (created with ``partitions``) and group; ``env`` adds DELTA_* overrides."""
    tag = uuid.uuid4().hex[:10]
    cfg = load_config(env={
        "DELTA_BOOTSTRAP_SERVERS": bootstrap,
        "DELTA_GROUP_ID": f"g-{tag}",
        "DELTA_TRAIN_TOPIC": f"train-{tag}",
        "DELTA_PREDICT_TOPIC": f"predict-{tag}",
        "DELTA_PREDICTIONS_TOPIC": f"predictions-{tag}",
        "DELTA_DEAD_LETTER_TOPIC": f"dead-{tag}",
        "DELTA_POLL_TIMEOUT": "0.2",
        **env,
    })
    create_topics(bootstrap, [cfg.topics.train, cfg.topics.predict], partitions)
    create_topics(bootstrap, [cfg.topics.predictions, cfg.topics.dead_letter], 1)
    return cfg


@pytest.fixture
def cfg(bootstrap: str) -> Config:
    return make_config(bootstrap)
