"""``make demo``: a local Kafka broker, a worker and a replayed dataset; watch the model learn, then clean up.

Runs without Docker: the broker is Apache Kafka's own jars (delta.localkafka). With ``DELTA_BOOTSTRAP_SERVERS``
set, that broker is used instead. Everything started here is stopped on exit, including on Ctrl-C.
"""

from __future__ import annotations

import contextlib
import json
import os
import secrets
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid
from pathlib import Path
from typing import Any

from delta.localkafka import LocalKafka

__all__ = ["main"]

DATASET, REPEAT, RATE, PREDICT_FRACTION = "Phishing", 3, 800, 0.2


def _port(preferred: int = 8080) -> int:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", preferred))
        except OSError:
            s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _get(url: str) -> dict[str, Any] | None:
    try:
        with urllib.request.urlopen(url, timeout=2) as resp:  # noqa: S310 - our own local server
            return dict(json.loads(resp.read()))
    except (OSError, ValueError):
        return None


def _line(m: dict[str, Any]) -> str:
    acc = m["metrics"].get("Accuracy", 0.0)
    roll = m["rolling"].get("Accuracy", 0.0)
    return (f"  trained {m['events']['trained']:>6}  predicted {m['events']['predicted']:>5}  "
            f"joined {m['events']['labels_joined']:>5}  accuracy {acc:.4f} (last 1000: {roll:.4f})  "
            f"{m['throughput']['train_per_s']:>8,.0f} train/s  model v{m['model']['version']}")


def main() -> int:
    work = Path(tempfile.mkdtemp(prefix="delta-demo-"))
    tag = uuid.uuid4().hex[:6]
    token = secrets.token_urlsafe(16)
    port = _port()
    base = f"http://127.0.0.1:{port}"
    broker: LocalKafka | None = None
    procs: list[subprocess.Popen[bytes]] = []
    print("Delta demo: a River model learning from Kafka, live.\n")
    try:
        bootstrap = os.environ.get("DELTA_BOOTSTRAP_SERVERS")
        if not bootstrap:
            print("• starting a local Apache Kafka broker (jars from Maven Central, cached after the first run)...")
            started = time.monotonic()
            broker = LocalKafka(workdir=work / "kafka")
            (work / "kafka").mkdir()
            bootstrap = broker.start()
            print(f"  broker up at {bootstrap} in {time.monotonic() - started:.1f}s")
        env = {**os.environ, "DELTA_BOOTSTRAP_SERVERS": bootstrap, "DELTA_API_TOKEN": token,
               "DELTA_HOST": "127.0.0.1", "DELTA_PORT": str(port), "DELTA_GROUP_ID": f"demo-{tag}",
               "DELTA_TRAIN_TOPIC": f"demo-{tag}.train", "DELTA_PREDICT_TOPIC": f"demo-{tag}.predict",
               "DELTA_PREDICTIONS_TOPIC": f"demo-{tag}.predictions", "DELTA_DEAD_LETTER_TOPIC": f"demo-{tag}.dlq",
               "DELTA_SNAPSHOT_DIR": str(work / "snapshots")}
        worker_log = open(work / "worker.log", "wb")  # noqa: SIM115 - closed with the process below
        procs.append(subprocess.Popen([sys.executable, "-m", "delta", "run"], env=env, stdout=worker_log,
                                      stderr=subprocess.STDOUT))
        deadline = time.monotonic() + 60
        while _get(f"{base}/ready") is None:
            if procs[0].poll() is not None or time.monotonic() > deadline:
                print((work / "worker.log").read_text(), file=sys.stderr)
                print("the worker did not become ready", file=sys.stderr)
                return 1
            time.sleep(0.2)
        print(f"• worker ready: dashboard {base}/dashboard  metrics {base}/metrics  (API token: {token})")
        print(f"• replaying {DATASET} x{REPEAT} at {RATE} events/s; {PREDICT_FRACTION:.0%} of rows are prediction "
              "events whose labels arrive 0.5 s later\n")
        producer = subprocess.Popen(
            [sys.executable, "-m", "delta", "--log-level", "WARNING", "produce", "--source", DATASET,
             "--repeat", str(REPEAT), "--rate", str(RATE), "--predict-fraction", str(PREDICT_FRACTION),
             "--label-delay", "0.5", "--quiet"], env=env)
        procs.append(producer)
        rows = 1250 * REPEAT
        last: dict[str, Any] | None = None
        learning_since: float | None = None
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            time.sleep(1.0)
            last = _get(f"{base}/metrics") or last
            if last is not None:
                print(_line(last), flush=True)
                if learning_since is None and last["events"]["trained"]:
                    learning_since = time.monotonic() - 1.0
                if producer.poll() is not None and last["events"]["trained"] >= rows:
                    break
        if producer.returncode not in (0, None) or last is None:
            print("the producer failed", file=sys.stderr)
            return 1
        model = _get(f"{base}/model") or {}
        print("\nSummary")
        print(f"  model            {model.get('spec')} (version {last['model']['version']})")
        print(f"  events           {last['events']['trained']} trained, {last['events']['predicted']} predicted, "
              f"{last['events']['labels_joined']} delayed labels joined, {last['events']['invalid']} invalid")
        print("  progressive      " + ", ".join(f"{k} {v:.4f}" for k, v in last["metrics"].items()))
        took = time.monotonic() - (learning_since or time.monotonic() - 1.0)
        print(f"  throughput       {last['events']['trained'] / took:,.0f} training events/s on average over "
              f"{took:.0f}s (paced by the producer at {RATE}/s; see docs/benchmarks.md for the ceiling)")
        print(f"  dashboard        {base}/dashboard (gone when the demo exits; `delta run` keeps it up)")
        print(f"  logs             {work / 'worker.log'}")
        return 0
    except KeyboardInterrupt:
        return 130
    finally:
        for proc in reversed(procs):
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                with contextlib.suppress(subprocess.TimeoutExpired):
                    proc.wait(15)
            if proc.poll() is None:
                proc.kill()
                proc.wait()
        if broker is not None:
            broker.stop()
        print("• stopped the worker and the broker")


if __name__ == "__main__":
    sys.exit(main())
