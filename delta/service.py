"""Wiring for ``delta run``: the model host, the Kafka worker (in its own thread) and the management server (on the
asyncio loop of the main thread), started together and stopped together.

Why a thread: the worker's loop is blocking C calls and CPU-bound learning; running it beside the event loop keeps
the management server responsive (see delta.api) while the two share the host under its lock.

Signals: the first SIGTERM/SIGINT only asks the worker to stop (it drains, flushes, commits and leaves the group);
a second SIGINT exits at once with code 130.
"""

from __future__ import annotations

import asyncio
import gc
import logging
import os
import signal
import threading
from collections.abc import Callable

from aiohttp import web

from delta.api import ApiContext, make_app
from delta.config import Config
from delta.host import ModelHost
from delta.snapshots import SnapshotStore
from delta.worker import Worker, ensure_topics

__all__ = ["serve"]

log = logging.getLogger(__name__)


class Signals:
    """The first SIGTERM/SIGINT asks the worker to stop (drain, flush, commit, leave); a second SIGINT exits at once
    with 130 — an impatient Ctrl-C must work even if a drain hangs on an unreachable broker."""

    def __init__(self, stop: Callable[[], None], exit_now: Callable[[int], None] = os._exit) -> None:
        self.stop, self.exit_now, self.received = stop, exit_now, 0

    def __call__(self, sig: signal.Signals) -> None:
        self.received += 1
        if self.received > 1 and sig == signal.SIGINT:
            self.exit_now(130)
            return
        log.info("received %s: draining and stopping", sig.name)
        self.stop()


def build_host(cfg: Config) -> ModelHost:
    return ModelHost(cfg.model.spec, cfg.metrics.names, cfg.metrics.window, cfg.events.max_pending_labels)


async def serve(cfg: Config, *, max_events: int | None = None, idle_timeout: float | None = None) -> int:
    """Run until a signal or the finite mode ends; return the process exit code."""
    host = build_host(cfg)
    ensure_topics(cfg)
    store = SnapshotStore(cfg.snapshots.dir, cfg.snapshots.keep) if cfg.snapshots.dir else None
    worker = Worker(cfg, host, snapshots=store, max_events=max_events, idle_timeout=idle_timeout)
    loop = asyncio.get_running_loop()
    on_signal = Signals(worker.stop)
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, on_signal, sig)
    done: asyncio.Future[None] = loop.create_future()

    def run_worker() -> None:
        try:
            worker.run()
        except BaseException as exc:  # noqa: BLE001 - handed to the event loop, which reports it
            loop.call_soon_threadsafe(done.set_exception, exc)
        else:
            loop.call_soon_threadsafe(done.set_result, None)

    runner = web.AppRunner(make_app(ApiContext(cfg, worker)), access_log=None, handle_signals=False)
    await runner.setup()
    await web.TCPSite(runner, cfg.management.host, cfg.management.port).start()
    log.info("management server listening on %s", ", ".join(f"http://{a[0]}:{a[1]}" for a in runner.addresses))
    gc.collect()
    gc.freeze()  # start-up objects (River, numpy, the model) leave the GC's view: full collections stay short
    thread = threading.Thread(target=run_worker, name="delta-worker", daemon=True)
    thread.start()
    try:
        await done
    except Exception as exc:  # noqa: BLE001 - any worker failure ends the process with code 1
        log.error("worker failed: %s", exc)
        return 1
    finally:
        worker.stop()
        await asyncio.to_thread(thread.join)
        await runner.cleanup()
        if store is not None:
            store.close()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.remove_signal_handler(sig)
    return 0
