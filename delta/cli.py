"""The ``delta`` command. Only this module configures logging."""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys

from delta.config import load_config, redact
from delta.errors import DeltaError

__all__ = ["main"]

log = logging.getLogger("delta")


def _run(args: argparse.Namespace) -> int:
    from delta.service import serve

    cfg = load_config(args.config)
    log.info("config: %s", redact(cfg))
    return asyncio.run(serve(cfg, max_events=args.max_events, idle_timeout=args.idle_timeout))


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="delta", description="Delta: online machine learning on Kafka with River.")
    p.add_argument("--log-level", default="INFO", choices=["DEBUG", "INFO", "WARNING", "ERROR"])
    sub = p.add_subparsers(dest="command", required=True)
    run = sub.add_parser("run", help="run the worker (config: YAML file and DELTA_* environment variables)")
    run.add_argument("--config", "-c", help="YAML config file (DESIGN.md §3); DELTA_* variables override it")
    run.add_argument("--max-events", type=int, default=None, help="stop after this many events (finite mode)")
    run.add_argument("--idle-timeout", type=float, default=None,
                     help="stop after this many seconds without a message (finite mode)")
    run.set_defaults(func=_run)
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    logging.basicConfig(level=args.log_level, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        code: int = args.func(args)
    except DeltaError as exc:
        print(f"delta: error: {exc}", file=sys.stderr)
        return 2
    return code


if __name__ == "__main__":
    sys.exit(main())
