"""deploy/ and docker-compose.yml are correct by construction: Docker cannot
run here, so every file is parsed and checked against the code it names."""

from __future__ import annotations

import json
import re
import shlex

import pytest

from arwx.cli import _parser
from arwx.config import OPTIONS
from tests.helpers import ROOT

yaml = pytest.importorskip("yaml")

DEPLOY = ROOT / "deploy"
ENV_NAMES = {o.env for o in OPTIONS}
ARWX_SERVICES = {"gateway-1", "gateway-2", "consumer-1", "consumer-2", "query"}


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def _k8s_docs() -> list[dict]:
    docs = []
    for path in sorted((DEPLOY / "k8s").glob("*.yaml")):
        docs += [d for d in yaml.safe_load_all(path.read_text()) if d]
    return docs


def _check_cli(argv: list[str]) -> None:
    """The command parses with arwx's own argparse parser (exit 2 fails the test)."""
    args = _parser().parse_args(argv)
    assert args.command in {"server", "gateway", "consumer", "query"}


def test_compose_brings_up_the_whole_pipeline(compose: dict) -> None:
    services = compose["services"]
    assert ARWX_SERVICES | {"kafka", "clickhouse", "lb", "prometheus", "grafana"} <= set(services)
    assert services["kafka"]["image"].startswith("apache/kafka:")
    assert services["kafka"]["environment"]["KAFKA_PROCESS_ROLES"] == "broker,controller"  # KRaft
    assert services["clickhouse"]["image"].startswith("clickhouse/clickhouse-server:")
    weed = services["seaweedfs"]
    assert weed["image"].startswith("chrislusf/seaweedfs:") and "-s3" in weed["command"]
    # The catalog: PostgreSQL, named by every gateway and query service.
    assert services["postgres"]["image"].startswith("postgres:")
    for name in ("gateway-1", "gateway-2", "query"):
        url = services[name]["environment"]["ARWX_CATALOG_URL"]
        assert url.startswith("postgresql://") and "@postgres:5432/" in url
        assert "postgres" in services[name]["depends_on"]
    assert "grafana-clickhouse-datasource" in services["grafana"]["environment"]["GF_INSTALL_PLUGINS"]
    for name in ARWX_SERVICES:
        svc = services[name]
        assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
        _check_cli(svc["command"])
        assert svc["command"][0] == name.split("-")[0]
        env = svc["environment"]
        assert env["ARWX_METRICS_PORT"] == "9464" and env["ARWX_KAFKA_BOOTSTRAP"] and env["ARWX_CLICKHOUSE_URL"]
        # Blobs in the SeaweedFS service, with the keys its S3 config accepts.
        assert env["ARWX_BLOBS_URL"].startswith("s3://") and env["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
        ident = json.loads((ROOT / "deploy/seaweedfs/s3.json").read_text())["identities"][0]["credentials"][0]
        assert (env["AWS_ACCESS_KEY_ID"], env["AWS_SECRET_ACCESS_KEY"]) == (ident["accessKey"], ident["secretKey"])
    # Mounted config files exist.
    for svc in services.values():
        for vol in svc.get("volumes", []):
            src = vol.split(":")[0]
            if src.startswith("./"):
                assert (ROOT / src).exists(), src


def test_every_arwx_variable_is_a_real_setting(compose: dict) -> None:
    used: set[str] = set()
    for svc in compose["services"].values():
        used |= {k for k in svc.get("environment", {}) if k.startswith("ARWX_")}
    for doc in _k8s_docs():
        data = doc.get("data") or doc.get("stringData") or {}
        used |= {k for k in data if k.startswith("ARWX_")}
    text = "\n".join(p.read_text() for p in [ROOT / "docker-compose.yml", *(DEPLOY / "k8s").glob("*.yaml")])
    used |= set(re.findall(r"\bARWX_[A-Z_]+\b", text))
    assert used and used <= ENV_NAMES, used - ENV_NAMES


def test_nginx_routes_to_both_gateways_and_the_query_service(compose: dict) -> None:
    conf = (DEPLOY / "nginx" / "nginx.conf").read_text()
    assert conf.count("{") == conf.count("}")
    for host in ("gateway-1:8090", "gateway-2:8090", "query:8090"):
        assert host in conf and host.split(":")[0] in compose["services"]
    assert compose["services"]["lb"]["ports"] == ["8090:8090"]


def test_prometheus_scrapes_every_ops_listener() -> None:
    cfg = yaml.safe_load((DEPLOY / "prometheus" / "prometheus.yml").read_text())
    targets = {t for job in cfg["scrape_configs"] for sc in job["static_configs"] for t in sc["targets"]}
    assert targets == {f"{s}:9464" for s in ARWX_SERVICES}


def test_grafana_provisioning_and_dashboard() -> None:
    ds = yaml.safe_load((DEPLOY / "grafana/provisioning/datasources/arwx.yml").read_text())
    uids = {d["uid"]: d["type"] for d in ds["datasources"]}
    assert uids == {"arwx-prometheus": "prometheus", "arwx-clickhouse": "grafana-clickhouse-datasource"}
    prov = yaml.safe_load((DEPLOY / "grafana/provisioning/dashboards/arwx.yml").read_text())
    assert prov["providers"][0]["options"]["path"] == "/etc/grafana/dashboards"
    dash = json.loads((DEPLOY / "grafana/dashboards/arwx.json").read_text())
    exprs, sqls = [], []
    for panel in dash["panels"]:
        for t in panel.get("targets", []):
            assert t["datasource"]["uid"] in uids
            (exprs if "expr" in t else sqls).append(t.get("expr") or t["rawSql"])
    assert any("FROM points" in s for s in sqls)  # training curves from ClickHouse
    # Every Prometheus series the dashboard reads is one the services export.
    from prometheus_client import REGISTRY

    from arwx import metrics  # noqa: F401 - registers the collectors

    suffixes = {"counter": ["_total"], "histogram": ["_bucket", "_count", "_sum"], "gauge": [""]}
    exported = {m.name + sfx for m in REGISTRY.collect() for sfx in suffixes.get(m.type, [""])}
    for expr in exprs:
        for name in re.findall(r"\barwx_\w+", expr):
            assert name in exported, name


def test_dockerfile_runs_the_console_script() -> None:
    text = (DEPLOY / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim\b", text, re.M)
    assert re.search(r"^RUN pip install \.", text, re.M)
    entry = re.search(r"^ENTRYPOINT (\[.*\])$", text, re.M)
    assert json.loads(entry.group(1)) == ["arwx"]
    assert "arwx.cli:main" in (ROOT / "pyproject.toml").read_text()
    _check_cli(json.loads(re.search(r"^CMD (\[.*\])$", text, re.M).group(1)))


def test_kubernetes_manifests() -> None:
    docs = _k8s_docs()
    kinds = {(d["kind"], d["metadata"]["name"]) for d in docs}
    assert ("ConfigMap", "arwx") in kinds
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert {d["metadata"]["name"] for d in deployments} == {"arwx-gateway", "arwx-consumer", "arwx-query"}
    assert {("Service", "arwx-gateway"), ("Service", "arwx-query")} <= kinds
    # Blobs: a SeaweedFS S3 store, and the gateways and query services read its keys.
    assert {("StatefulSet", "seaweedfs"), ("Service", "seaweedfs")} <= kinds
    config = next(d for d in docs if d["kind"] == "ConfigMap" and d["metadata"]["name"] == "arwx")["data"]
    assert config["ARWX_BLOBS_URL"].startswith("s3://") and config["AWS_ENDPOINT_URL"] == "http://seaweedfs:8333"
    secrets = {d["metadata"]["name"]: d["stringData"] for d in docs if d["kind"] == "Secret"}
    assert {"AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"} <= set(secrets["arwx-blobs"])
    assert "identities" in json.loads(secrets["seaweedfs-s3"]["s3.json"])
    for d in deployments:
        spec = d["spec"]["template"]["spec"]
        (c,) = spec["containers"]
        _check_cli(c["args"])
        assert c["livenessProbe"]["httpGet"]["path"] == "/health"
        assert c["readinessProbe"]["httpGet"]["path"] == "/ready"
        assert c["resources"]["requests"]["cpu"] and c["resources"]["requests"]["memory"]
        assert d["spec"]["selector"]["matchLabels"].items() <= d["spec"]["template"]["metadata"]["labels"].items()
        assert spec["terminationGracePeriodSeconds"] >= 30
        if c["args"][0] in ("gateway", "query"):
            assert {"secretRef": {"name": "arwx-blobs"}} in c["envFrom"]
        secrets = {ref["secretRef"]["name"] for ref in c["envFrom"] if "secretRef" in ref}
        if d["metadata"]["name"] != "arwx-consumer":  # the consumer needs no catalog
            assert "arwx-catalog" in secrets, d["metadata"]["name"]
    assert ("StatefulSet", "arwx-postgres") in kinds and ("Service", "arwx-postgres") in kinds
    catalog = next(d for d in docs if d["kind"] == "Secret" and d["metadata"]["name"] == "arwx-catalog")
    assert catalog["stringData"]["ARWX_CATALOG_URL"].startswith("postgresql://")


def _ddl(text: str) -> dict[str, str]:
    """``{name: statement}`` of the CREATE statements in a DDL text."""
    lines = [ln for ln in text.splitlines() if not ln.lstrip().startswith("--")]
    out = {}
    for stmt in "\n".join(lines).split("\n;"):
        m = re.search(r"CREATE (?:TABLE|MATERIALIZED VIEW) IF NOT EXISTS (\w+)", stmt)
        if m:
            out[m.group(1)] = stmt
    return out


def _order_by(stmt: str) -> str:
    return re.search(r"^ORDER BY (.+)$", stmt, re.M).group(1).strip()


def test_cluster_ddl_mirrors_the_schema() -> None:
    """Every table of schemas/clickhouse.sql is in the cluster DDL: a Distributed
    table of the same name over a Replicated local one with the same ORDER BY."""
    schema = _ddl((ROOT / "schemas" / "clickhouse.sql").read_text())
    cluster = _ddl((DEPLOY / "clickhouse" / "cluster.sql").read_text())
    for name, stmt in schema.items():
        assert name in cluster, f"{name} is missing from deploy/clickhouse/cluster.sql"
        if "MATERIALIZED VIEW" in stmt:
            assert re.search(r"\bTO \w+_local\b", cluster[name]), name
            continue
        local = cluster[f"{name}_local"]
        assert "ENGINE = Replicated" in local, name
        assert _order_by(local) == _order_by(stmt), name
        dist = re.search(r"ENGINE = Distributed\(arwx, currentDatabase\(\), (\w+), (.+)\)$", cluster[name], re.M)
        assert dist and dist.group(1) == f"{name}_local", name
    # FINAL and the receipt need a run's rows on one shard.
    for name in ("points", "ledger", "runs"):
        assert "cityHash64(org, run_id)" in cluster[name]
    assert "ReplicatedReplacingMergeTree" in cluster["points_local"]


def test_operations_doc_commands_parse() -> None:
    """The arwx commands shown in docs/operations.md are real."""
    text = (ROOT / "docs" / "operations.md").read_text()
    cmds = re.findall(r"^\s*(?:docker compose exec \w[\w-]* )?arwx ((?:server|gateway|consumer|query)\b[^\n#]*)", text, re.M)
    assert cmds
    for cmd in cmds:
        _check_cli(shlex.split(cmd))


def test_every_role_is_deployed_with_the_shared_parts_it_needs(compose: dict) -> None:
    """From the roles registry, so a new role or a new shared part fails here until the
    files carry it: every role runs in compose and in Kubernetes, and each of its
    processes is given every setting it refuses to start without (``Role.alone_needs``),
    the settings tests/test_topology.py starts the same processes with."""
    from arwx.roles import ROLES

    env_name = {o.name: o.env for o in OPTIONS}
    need = {role: {env_name[s] for shared in r.alone_needs for s in shared.settings} for role, r in ROLES.items()}
    services = {n: s for n, s in compose["services"].items() if n in ARWX_SERVICES}
    assert {s["command"][0] for s in services.values()} == set(ROLES)
    for name, svc in services.items():
        missing = need[svc["command"][0]] - {k for k, v in svc["environment"].items() if v}
        assert not missing, (name, missing)
    docs = _k8s_docs()
    data = {(d["kind"], d["metadata"]["name"]): d.get("data") or d.get("stringData") or {} for d in docs}
    deployments = [d for d in docs if d["kind"] == "Deployment"]
    assert {d["spec"]["template"]["spec"]["containers"][0]["args"][0] for d in deployments} == set(ROLES)
    for d in deployments:
        (c,) = d["spec"]["template"]["spec"]["containers"]
        given = {e["name"] for e in c.get("env", [])}
        for ref in c.get("envFrom", []):
            kind, src = ("ConfigMap", ref["configMapRef"]) if "configMapRef" in ref else ("Secret", ref["secretRef"])
            given |= set(data[(kind, src["name"])])
        missing = need[c["args"][0]] - given
        assert not missing, (d["metadata"]["name"], missing)
