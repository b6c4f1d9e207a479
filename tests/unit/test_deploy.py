"""The Dockerfile, compose file and Kubernetes manifests agree with the CLI, the config keys and the API.

No Docker engine runs here, so these files are checked by reading them; GitHub's runners build and run them
(.github/workflows/image.yml)."""

from __future__ import annotations

import json
import re
import tomllib
from pathlib import Path
from typing import Any

import yaml

from delta.api import ApiContext, make_app
from delta.cli import parser
from delta.config import FIELDS, Config, load_config
from delta.service import build_host
from delta.worker import Worker

ROOT = Path(__file__).resolve().parents[2]
ENV_NAMES = {f.env for f in FIELDS.values()}


def routes() -> set[str]:
    cfg = Config()
    app = make_app(ApiContext(cfg, Worker(cfg, build_host(cfg))))
    return {r.resource.canonical for r in app.router.routes() if r.resource is not None}


def dockerfile() -> dict[str, str]:
    text = (ROOT / "Dockerfile").read_text().replace("\\\n", " ")
    final_stage = text.split("\nFROM ")[-1]
    return {m.group(1): m.group(2).strip() for m in re.finditer(r"^([A-Z]+) (.*)$", final_stage, re.M)}


def test_image_runs_the_cli_as_non_root_with_a_health_check() -> None:
    d = dockerfile()
    scripts = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]["scripts"]
    assert json.loads(d["ENTRYPOINT"]) == ["delta"] and "delta" in scripts
    parser().parse_args(json.loads(d["CMD"]))
    assert d["USER"] != "root"
    assert d["EXPOSE"] == str(Config().management.port)
    health = d["HEALTHCHECK"]
    assert "/health" in health and "/health" in routes()
    assert "DELTA_PORT" in health


def test_compose_services_ports_and_env() -> None:
    compose = yaml.safe_load((ROOT / "deploy/docker-compose.yml").read_text())
    services = compose["services"]
    assert set(services) >= {"kafka", "topics", "delta", "producer", "prometheus"}
    assert services["kafka"]["image"].startswith("apache/kafka:") and "healthcheck" in services["kafka"]
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"
    delta = services["delta"]
    assert set(delta["environment"]) <= ENV_NAMES
    assert "8080:8080" in delta["ports"]
    cfg = load_config(env={k: str(v) for k, v in delta["environment"].items()})
    assert cfg.kafka.bootstrap_servers == "kafka:9092"
    topics_cmd = services["topics"]["command"][0]
    for topic in (cfg.topics.train, cfg.topics.predict, cfg.topics.predictions, cfg.topics.dead_letter):
        assert topic in topics_cmd
    assert set(services["producer"]["environment"]) <= ENV_NAMES
    args = parser().parse_args(services["producer"]["command"])
    assert args.command == "produce"
    prometheus = yaml.safe_load((ROOT / "deploy/prometheus.yml").read_text())
    job = prometheus["scrape_configs"][0]
    assert job["metrics_path"] == "/metrics/prometheus" in routes()
    assert job["static_configs"][0]["targets"] == ["delta:8080"]


def test_kubernetes_manifests(tmp_path: Path) -> None:
    docs = {d["kind"]: d for d in yaml.safe_load_all((ROOT / "deploy/k8s/delta.yaml").read_text())}
    assert set(docs) >= {"Deployment", "Service", "ConfigMap", "Secret"}
    pod: dict[str, Any] = docs["Deployment"]["spec"]["template"]["spec"]
    container = pod["containers"][0]
    assert pod["terminationGracePeriodSeconds"] >= 10
    assert container["livenessProbe"]["httpGet"]["path"] == "/health"
    assert container["readinessProbe"]["httpGet"]["path"] == "/ready"
    assert {"/health", "/ready"} <= routes()
    assert {e["name"] for e in container["env"]} <= ENV_NAMES
    secret_ref = next(e for e in container["env"] if e["name"] == "DELTA_API_TOKEN")["valueFrom"]["secretKeyRef"]
    assert secret_ref["name"] == docs["Secret"]["metadata"]["name"]
    assert secret_ref["key"] in docs["Secret"]["stringData"]
    args = parser().parse_args(container["args"])
    config_file = tmp_path / "delta.yaml"
    config_file.write_text(docs["ConfigMap"]["data"]["delta.yaml"])
    assert args.config == "/etc/delta/delta.yaml"
    cfg = load_config(config_file, env={})
    assert cfg.snapshots.dir == "/var/lib/delta/snapshots"
    mounts = {m["mountPath"] for m in container["volumeMounts"]}
    assert "/etc/delta" in mounts and "/var/lib/delta" in mounts
    service_port = docs["Service"]["spec"]["ports"][0]
    assert service_port["port"] == container["ports"][0]["containerPort"] == cfg.management.port


def test_workflows_run_the_readme_commands() -> None:
    ci = yaml.safe_load((ROOT / ".github/workflows/ci.yml").read_text())
    steps = [s.get("run", "") for s in ci["jobs"]["test"]["steps"]]
    assert "make test" in steps
    assert "make test" in (ROOT / ".ci/run").read_text()
    image = (ROOT / ".github/workflows/image.yml").read_text()
    assert "docker build" in image and "deploy/docker-compose.yml" in image
    assert "make demo" in (ROOT / "README.md").read_text()
