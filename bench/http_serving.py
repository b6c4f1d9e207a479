"""The classic HTTP model server: the same model behind a minimal aiohttp endpoint, one POST per event, with
keep-alive clients. Server and load generator run in separate processes, the server single-process like Delta."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import time
from typing import Any

import aiohttp

from delta.events import dumps

SERVER = r"""
import sys, itertools
from aiohttp import web
from river import datasets
from delta.events import loads, dumps
from delta.spec import build
model = build("preprocessing.StandardScaler() | linear_model.LogisticRegression()")
for x, y in itertools.islice(datasets.Phishing(), 5000):
    model.learn_one(x, y)

async def predict(request):
    body = loads(await request.read())
    proba = model.predict_proba_one(body["x"])
    return web.Response(body=dumps({"id": body.get("id"), "y_pred": max(proba, key=proba.get), "proba": proba}),
                        content_type="application/json")

app = web.Application()
app.add_routes([web.post("/predict", predict)])
web.run_app(app, host="127.0.0.1", port=int(sys.argv[1]), access_log=None, print=None)
"""


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


async def _load(url: str, bodies: list[bytes], concurrency: int) -> float:
    connector = aiohttp.TCPConnector(limit=concurrency)
    async with aiohttp.ClientSession(connector=connector) as session:
        queue = iter(bodies)

        async def client() -> None:
            for body in queue:
                async with session.post(url, data=body, headers={"Content-Type": "application/json"}) as r:
                    await r.read()

        started = time.perf_counter()
        await asyncio.gather(*(client() for _ in range(concurrency)))
        return len(bodies) / (time.perf_counter() - started)


def measure(xs: list[dict[str, Any]], delta_predict_per_s: float, concurrency: int = 8) -> list[dict[str, Any]]:
    port = _free_port()
    server = subprocess.Popen([sys.executable, "-c", SERVER, str(port)])
    try:
        url = f"http://127.0.0.1:{port}/predict"
        deadline = time.monotonic() + 30
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), 0.2).close()
                break
            except OSError:
                assert time.monotonic() < deadline, "HTTP server did not start"
                time.sleep(0.1)
        bodies = [dumps({"id": f"p{i}", "x": x}) for i, x in enumerate(xs)]
        asyncio.run(_load(url, bodies[:2000], concurrency))
        http = asyncio.run(_load(url, bodies, concurrency))
    finally:
        server.terminate()
        server.wait(10)
    ratio = delta_predict_per_s / http
    return [{"what": f"Delta predictions/s vs one HTTP POST per event ({concurrency} keep-alive clients)",
             "delta": delta_predict_per_s, "baseline": http, "ratio": ratio, "target": ">= 10x", "met": ratio >= 10,
             "unit": "events/s"}]
