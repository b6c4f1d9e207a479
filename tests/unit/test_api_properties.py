"""Property-based API test: schemathesis generates requests from ``/openapi.json`` (valid and invalid bodies) and
checks that no response is a server error and every response matches the documented status codes, content types and
schemas. The server is the real aiohttp app on a real socket, with a real model host (snapshots on).

The one 5xx the API means is a documented 503 (``/ready`` while the worker loop is not running, which is the case
here, and "the worker did not take the request in time"); anything else in the 5xx range fails the test."""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from aiohttp import web
from hypothesis import HealthCheck, settings
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from delta.api import ApiContext, make_app
from delta.config import load_config
from delta.openapi import openapi
from delta.service import build_host
from delta.snapshots import SnapshotStore
from delta.worker import Worker

TOKEN = "prop-token"


@schemathesis.check
def no_server_error_but_documented_503(ctx: schemathesis.CheckContext, response: schemathesis.Response,
                                       case: schemathesis.Case) -> bool | None:
    if response.status_code >= 500:
        documented = case.operation.definition.raw.get("responses", {})
        assert response.status_code == 503 and "503" in documented, (
            f"server error {response.status_code}: {response.text[:300]}")
    return None

schema = schemathesis.openapi.from_dict(openapi())


@pytest.fixture(scope="module")
def api_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    snaps: Path = tmp_path_factory.mktemp("snaps")
    cfg = load_config(env={"DELTA_API_TOKEN": TOKEN, "DELTA_SNAPSHOT_DIR": str(snaps)})
    worker = Worker(cfg, build_host(cfg), snapshots=SnapshotStore(snaps, keep=3))
    loop = asyncio.new_event_loop()
    runner = web.AppRunner(make_app(ApiContext(cfg, worker)), access_log=None)
    loop.run_until_complete(runner.setup())
    site = web.TCPSite(runner, "127.0.0.1", 0)
    loop.run_until_complete(site.start())
    port = runner.addresses[0][1]
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{port}"
    asyncio.run_coroutine_threadsafe(runner.cleanup(), loop).result(10)
    loop.call_soon_threadsafe(loop.stop)
    thread.join(10)
    assert worker.snapshots is not None
    worker.snapshots.close()


@schema.parametrize()
@settings(max_examples=int(os.environ.get("DELTA_API_EXAMPLES", "40")), deadline=None,
          suppress_health_check=list(HealthCheck))
def test_api_conforms_to_its_openapi(case: schemathesis.Case, api_url: str) -> None:
    case.call_and_validate(
        base_url=api_url,
        headers={"Authorization": f"Bearer {TOKEN}"},
        checks=[no_server_error_but_documented_503, status_code_conformance, content_type_conformance,
                response_schema_conformance],
    )
