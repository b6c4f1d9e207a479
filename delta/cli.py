"""The ``delta`` command: ``run`` the worker, ``produce`` a dataset into Kafka, ``tail`` a topic.

Only this module configures logging. Exit codes: 0 done, 1 runtime failure, 2 invalid config or arguments.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
import time
from typing import Any

from delta.config import Config, load_config, redact
from delta.errors import ConfigError, DeltaError, SpecError

__all__ = ["main"]

log = logging.getLogger("delta")


def _run(args: argparse.Namespace) -> int:
    from delta.service import serve

    cfg = load_config(args.config)
    log.info("config: %s", redact(cfg))
    return asyncio.run(serve(cfg, max_events=args.max_events, idle_timeout=args.idle_timeout))


def _kafka_cfg(args: argparse.Namespace) -> Config:
    cfg = load_config(args.config)
    if args.bootstrap_servers:
        cfg = cfg.replace({"kafka.bootstrap_servers": args.bootstrap_servers})
    return cfg


def _produce(args: argparse.Namespace) -> int:
    from confluent_kafka import Producer
    from tqdm import tqdm

    from delta.produce import plan, read_rows, replay
    from delta.worker import ensure_topics, kafka_settings

    if not 0 <= args.predict_fraction <= 1:
        raise ConfigError(f"--predict-fraction {args.predict_fraction}: expected a number from 0 to 1")
    cfg = _kafka_cfg(args)
    rows: Any = read_rows(args.source, args.target)
    if args.repeat > 1:
        first = list(rows)
        rows = (row for _ in range(args.repeat) for row in first)
    if args.limit is not None:
        rows = (row for _, row in zip(range(args.limit), rows, strict=False))
    ensure_topics(cfg)
    producer = Producer(kafka_settings(cfg, **{"linger.ms": 5, "enable.idempotence": True}))
    topics = {"train": cfg.topics.train, "predict": cfg.topics.predict}
    messages = plan(rows, rate=args.rate, predict_fraction=args.predict_fraction, label_delay=args.label_delay,
                    seed=args.seed, prefix=args.id_prefix)
    started = time.monotonic()
    with tqdm(desc=f"producing {args.source}", unit="ev", disable=args.quiet, mininterval=0.5) as bar:
        sent = replay(messages, producer, topics, bar)
    elapsed = time.monotonic() - started
    print(f"produced {sent} events to {topics['train']} / {topics['predict']} in {elapsed:.1f}s "
          f"({sent / max(elapsed, 1e-9):,.0f} events/s)", file=sys.stderr)
    return 0


def _tail(args: argparse.Namespace) -> int:
    from confluent_kafka import Consumer

    from delta.events import dumps, loads
    from delta.worker import kafka_settings

    cfg = _kafka_cfg(args)
    topic = {"train": cfg.topics.train, "predict": cfg.topics.predict, "predictions": cfg.topics.predictions,
             "dead-letter": cfg.topics.dead_letter}.get(args.topic, args.topic)
    consumer = Consumer(kafka_settings(cfg, **{"group.id": f"delta-tail-{time.time_ns()}", "enable.auto.commit": False,
                                               "auto.offset.reset": "earliest" if args.from_beginning else "latest"}))
    consumer.subscribe([topic])
    shown = 0
    try:
        while args.max is None or shown < args.max:
            for msg in consumer.consume(100, 0.5):
                if msg.error():
                    print(f"# error: {msg.error()}", file=sys.stderr)
                    continue
                try:
                    value: Any = loads(msg.value() or b"")
                except ValueError:
                    value = (msg.value() or b"").decode("utf-8", "replace")
                line: dict[str, Any] = {"partition": msg.partition(), "offset": msg.offset(),
                                        "key": (msg.key() or b"").decode("utf-8", "replace") or None, "value": value}
                if msg.headers():
                    line["headers"] = {str(h[0]): h[1].decode("utf-8", "replace") if isinstance(h[1], bytes)
                                       else h[1] for h in msg.headers() or []}
                print(dumps(line).decode(), flush=True)
                shown += 1
                if args.max is not None and shown >= args.max:
                    break
    except KeyboardInterrupt:
        pass
    finally:
        consumer.close()
    return 0


def parser() -> argparse.ArgumentParser:
    from delta.produce import DATASETS

    p = argparse.ArgumentParser(prog="delta", description="Delta: online machine learning on Kafka with River.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"],
                   help="log verbosity (default INFO)")
    sub = p.add_subparsers(dest="command", required=True)

    run = sub.add_parser("run", help="run the worker (config: YAML file and DELTA_* environment variables)",
                         description="Run the worker until SIGTERM/SIGINT (a second SIGINT exits at once).")
    run.add_argument("--config", "-c", help="YAML config file (docs/DESIGN.md §3); DELTA_* variables override it")
    run.add_argument("--max-events", type=int, default=None, help="stop after this many events (finite mode)")
    run.add_argument("--idle-timeout", type=float, default=None,
                     help="stop after this many seconds without a message (finite mode)")
    run.set_defaults(func=_run)

    def kafka_args(sp: argparse.ArgumentParser) -> None:
        sp.add_argument("--config", "-c", help="YAML config file for topics and Kafka settings (as for `run`)")
        sp.add_argument("--bootstrap-servers", "-b", help="Kafka bootstrap servers (default: config, then "
                        "DELTA_BOOTSTRAP_SERVERS, then localhost:9092)")

    prod = sub.add_parser(
        "produce", help="replay a dataset or file into Kafka as Delta events",
        description="Replay a River dataset or a CSV/JSONL file into the training (and prediction) topic as "
                    "DESIGN.md §1 events. Topics and Kafka settings come from --config / DELTA_* as for `run`.")
    kafka_args(prod)
    prod.add_argument("--source", "-s", default="Phishing",
                      help=f"a bundled River dataset ({', '.join(DATASETS)}) or a .csv/.jsonl file "
                           "(default Phishing)")
    prod.add_argument("--target", help="label column of a CSV file")
    prod.add_argument("--rate", type=float, default=0.0,
                      help="events per second to send (default 0: as fast as possible)")
    prod.add_argument("--predict-fraction", type=float, default=0.0,
                      help="fraction of rows sent first as prediction events, their labels following later as "
                           "label-only training events (default 0)")
    prod.add_argument("--label-delay", type=float, default=1.0,
                      help="seconds between a prediction event and its label (default 1.0)")
    prod.add_argument("--repeat", type=int, default=1, help="replay the source this many times (default 1)")
    prod.add_argument("--limit", type=int, default=None, help="send at most this many rows")
    prod.add_argument("--seed", type=int, default=42, help="seed choosing which rows become predictions")
    prod.add_argument("--id-prefix", default="e", help="event ids are <prefix>-<row number> (default e)")
    prod.add_argument("--quiet", "-q", action="store_true", help="no progress bar")
    prod.set_defaults(func=_produce)

    tail = sub.add_parser("tail", help="print the events of a Delta topic as JSON lines",
                          description="Consume a topic (without joining the worker's group) and print each message "
                                      "as a JSON line with its key, headers and decoded value.")
    kafka_args(tail)
    tail.add_argument("topic", nargs="?", default="predictions",
                      help="train, predict, predictions, dead-letter (names from the config) or any topic name "
                           "(default predictions)")
    tail.add_argument("--from-beginning", action="store_true", help="start at the earliest offset")
    tail.add_argument("--max", "-n", type=int, default=None, help="stop after this many messages")
    tail.set_defaults(func=_tail)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except (ConfigError, SpecError) as exc:
        print(f"delta: error: {exc}", file=sys.stderr)
        return 2
    except DeltaError as exc:
        print(f"delta: error: {exc}", file=sys.stderr)
        return 1
    return code


if __name__ == "__main__":
    sys.exit(main())
