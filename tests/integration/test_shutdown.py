"""SIGTERM during a stream: exit 0, every consumed prediction event answered, a restart skips nothing."""

from __future__ import annotations

import threading
import time
from pathlib import Path

from conftest import make_config
from kafkahelp import WorkerProcess, committed, paced, produce, read_topic, run_worker

from delta.events import dumps, loads
from delta.service import build_host
from delta.worker import Worker


def test_sigterm_drains_and_restart_continues(bootstrap: str, tmp_path: Path) -> None:
    cfg = make_config(bootstrap)
    stop_feeding = threading.Event()
    fed: list[int] = []
    feeder = threading.Thread(target=lambda: fed.append(produce(
        bootstrap, cfg.topics.predict,
        ((f"k{i}".encode(), dumps({"id": f"p-{i}", "x": {"a": float(i % 7), "b": "c"}}))
         for i in paced(2000, stop_feeding)),
    )))
    with WorkerProcess(cfg, tmp_path / "worker.log") as worker:
        feeder.start()
        worker.wait_ready()
        worker.wait_for(lambda m: m["events"]["predicted"] >= 500)
        sent = time.monotonic()
        code = worker.terminate()
        elapsed = time.monotonic() - sent
        log = worker.log()
    stop_feeding.set()
    feeder.join()
    n = fed[0]
    assert code == 0, log
    assert elapsed < 10, f"shutdown took {elapsed:.1f}s"
    assert "draining" in log and "Traceback" not in log

    consumed = committed(bootstrap, cfg.kafka.group_id, cfg.topics.predict)[0]
    assert 0 < consumed < n, "SIGTERM should land mid-stream"
    answered = {loads(r.value)["id"] for r in read_topic(bootstrap, cfg.topics.predictions, expect=consumed)}
    assert {f"p-{i}" for i in range(consumed)} <= answered

    host = build_host(cfg)
    run_worker(Worker(cfg, host, max_events=n - consumed))
    assert host.report()["events"]["predicted"] == n - consumed, "the restart resumed at the committed offset"
    final = {loads(r.value)["id"] for r in read_topic(bootstrap, cfg.topics.predictions, expect=n)}
    assert final == {f"p-{i}" for i in range(n)}

