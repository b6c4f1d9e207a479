"""The broker the suite runs against is a real Kafka: a JSON event makes a round trip through a topic."""

from __future__ import annotations

import uuid

from kafkahelp import create_topics, produce, read_topic

from delta.events import dumps, loads


def test_json_event_round_trip_through_real_kafka(bootstrap: str) -> None:
    topic = f"roundtrip-{uuid.uuid4().hex[:8]}"
    create_topics(bootstrap, [topic], 1)
    event = {"id": "e-1", "x": {"amount": 12.5, "country": "FR"}, "y": True}
    produce(bootstrap, topic, [(b"e-1", dumps(event))])
    got = read_topic(bootstrap, topic, expect=1)
    assert len(got) == 1
    assert got[0].key == b"e-1"
    assert loads(got[0].value) == event
