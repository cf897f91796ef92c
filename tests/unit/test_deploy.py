"""Static checks of the deployment and operations assets (no Docker, no cluster, no network).

Covers deploy/Dockerfile, .dockerignore, docker-compose.yml, deploy/prometheus (config, rules and
their promtool unit tests), deploy/grafana (provisioning and dashboard), deploy/k8s and
docs/operations.md. Everything is cross-checked against the code it describes: environment
variable names against `nervewatch.settings.Settings`, metric names and labels against
`nervewatch.metrics`, topics against `schemas.events.Topics`. When `promtool` is on PATH the rules,
the config and every dashboard query are also checked by Prometheus itself.
"""

from __future__ import annotations

import base64
import fnmatch
import json
import re
import shutil
import subprocess
import tomllib
from functools import cache
from pathlib import Path
from typing import Any

import pytest
import yaml
from prometheus_client.metrics import MetricWrapperBase
from pydantic import AliasChoices

from nervewatch import metrics
from nervewatch.settings import Settings
from schemas.events import Topics

ROOT = Path(__file__).resolve().parents[2]
DEPLOY = ROOT / "deploy"
K8S = DEPLOY / "k8s"
PROM = DEPLOY / "prometheus"
GRAFANA = DEPLOY / "grafana"
COMPOSE_FILE = ROOT / "docker-compose.yml"
DOCKERFILE = DEPLOY / "Dockerfile"
OPERATIONS = ROOT / "docs" / "operations.md"

SERVICES = ("ingest", "scoring", "alerts")
# Which topics each consumer group reads (the services' contract).
CONSUMER_GROUPS = {
    "nervewatch-scoring": {Topics.patients, Topics.checkins, Topics.activity},
    "nervewatch-alerts": {Topics.patients, Topics.trajectories, Topics.billing},
}
# Labels Prometheus attaches to every scraped series.
TARGET_LABELS = {"job", "instance"}
SEVERITIES = {"critical", "warning"}
PROMQL_KEYWORDS = {"by", "without", "on", "ignoring", "group_left", "group_right", "bool", "offset"}

# --------------------------------------------------------------------------------------------
# Helpers
# --------------------------------------------------------------------------------------------


def load_yaml(path: Path) -> Any:
    return yaml.safe_load(path.read_text(encoding="utf-8"))


def load_yaml_docs(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text(encoding="utf-8")) if d is not None]


@cache
def settings_env_names() -> frozenset[str]:
    """Every environment variable name `Settings` reads (prefix plus field name, or its aliases)."""
    prefix = str(Settings.model_config.get("env_prefix", ""))
    names: set[str] = set()
    for field_name, info in Settings.model_fields.items():
        alias = info.validation_alias
        if isinstance(alias, AliasChoices):
            names.update(str(choice).upper() for choice in alias.choices)
        elif isinstance(alias, str):
            names.add(alias.upper())
        else:
            names.add(f"{prefix}{field_name}".upper())
    return frozenset(names)


def env_name_for(field_name: str) -> str:
    """The documented (first) environment name of a Settings field."""
    info = Settings.model_fields[field_name]
    alias = info.validation_alias
    if isinstance(alias, AliasChoices):
        return str(alias.choices[0]).upper()
    return f"{Settings.model_config.get('env_prefix', '')}{field_name}".upper()


DEFAULTS = Settings.model_construct()
SERVICE_PORTS = {
    "ingest": DEFAULTS.ingest_port,
    "scoring": DEFAULTS.scoring_port,
    "alerts": DEFAULTS.alerts_port,
}


@cache
def metric_catalogue() -> dict[str, frozenset[str]]:
    """Exposed sample name -> label names, for every metric in nervewatch.metrics."""
    out: dict[str, frozenset[str]] = {}
    for value in vars(metrics).values():
        if not isinstance(value, MetricWrapperBase):
            continue
        name = str(value._name)  # prometheus_client keeps counters' names without "_total"
        kind = str(value._type)
        labels = frozenset(value._labelnames)
        if kind == "counter":
            out[f"{name}_total"] = labels
            out[f"{name}_created"] = labels
        elif kind == "histogram":
            out[f"{name}_bucket"] = labels | {"le"}
            out[f"{name}_sum"] = labels
            out[f"{name}_count"] = labels
            out[f"{name}_created"] = labels
        else:
            out[name] = labels
    assert out, "no metric found in nervewatch.metrics"
    return out


def rule_files() -> list[Path]:
    files = sorted((PROM / "rules").glob("*.yml"))
    assert files, "no rule files in deploy/prometheus/rules"
    return files


@cache
def rule_groups() -> list[dict[str, Any]]:
    groups: list[dict[str, Any]] = []
    for path in rule_files():
        doc = load_yaml(path)
        assert isinstance(doc, dict) and set(doc) == {"groups"}, path
        groups.extend(doc["groups"])
    return groups


def all_rules() -> list[dict[str, Any]]:
    return [rule for group in rule_groups() for rule in group["rules"]]


@cache
def recording_rules() -> dict[str, str]:
    return {rule["record"]: rule["expr"] for rule in all_rules() if "record" in rule}


def strip_strings(expr: str) -> str:
    return re.sub(r'"(?:[^"\\]|\\.)*"', '""', expr)


def metric_names_in(expr: str) -> set[str]:
    """Metric names and recording-rule names used by a PromQL expression (ours only)."""
    # Label values such as job="nervewatch-ingest" must not be read as names.
    bare = strip_strings(re.sub(r"\{[^}]*\}", "{}", expr, flags=re.S))
    return set(re.findall(r"\bnervewatch(?:_[a-z0-9_]+|:[a-z0-9_:]+)", bare))


def labels_available(expr: str, seen: frozenset[str] = frozenset()) -> set[str]:
    """Label names the series selected by `expr` can carry."""
    catalogue = metric_catalogue()
    labels = set(TARGET_LABELS)
    for name in metric_names_in(expr):
        if name in catalogue:
            labels |= catalogue[name]
        elif name in recording_rules() and name not in seen:
            labels |= labels_available(recording_rules()[name], seen | {name})
    return labels


def labels_used(expr: str) -> set[str]:
    """Label names an expression refers to: matchers and by/without/on/ignoring/group_* lists."""
    used: set[str] = set()
    for body in re.findall(r"\{([^}]*)\}", expr):
        used.update(re.findall(r"([a-zA-Z_][a-zA-Z0-9_]*)\s*(?:=~|!~|!=|=)", strip_strings(body)))
    for clause in re.findall(r"\b(?:by|without|on|ignoring|group_left|group_right)\s*\(([^)]*)\)", strip_strings(expr)):
        used.update(label.strip() for label in clause.split(",") if label.strip())
    return used


def check_expr(expr: str, where: str) -> None:
    names = metric_names_in(expr)
    catalogue = metric_catalogue()
    unknown = {n for n in names if n not in catalogue and n not in recording_rules()}
    assert not unknown, f"{where}: unknown metric or recording rule {sorted(unknown)} in {expr!r}"
    assert names or re.search(r"\bup\b", expr), f"{where}: uses no NerveWatch metric: {expr!r}"
    available = labels_available(expr)
    missing = labels_used(expr) - available
    assert not missing, f"{where}: labels {sorted(missing)} not on the metrics used ({sorted(available)})"


def github_anchor(heading: str) -> str:
    slug = heading.strip().lower()
    slug = re.sub(r"[^\w\- ]", "", slug)
    return slug.replace(" ", "-")


@cache
def operations_anchors() -> frozenset[str]:
    text = OPERATIONS.read_text(encoding="utf-8")
    return frozenset(github_anchor(m.group(1)) for m in re.finditer(r"^#{1,6}\s+(.+?)\s*$", text, flags=re.M))


def image_is_pinned(image: str) -> bool:
    """`name:tag` (or a digest) with a concrete tag: not latest, not a bare major version."""
    if "@sha256:" in image:
        return True
    last = image.rsplit("/", 1)[-1]
    if ":" not in last:
        return False
    tag = last.split(":", 1)[1]
    if tag in {"latest", "stable", "edge", "main", "master"} or "$" in tag:
        return False
    # A release, not a moving major: at least major.minor (PostgreSQL's 16.9 is a patch release),
    # optionally with a suffix such as -slim-bookworm. The Python base is held to major.minor.patch.
    return re.match(r"^v?\d+\.\d+(\.\d+)?([-.][\w.-]+)?$", tag) is not None


@cache
def compose() -> dict[str, Any]:
    doc = load_yaml(COMPOSE_FILE)
    assert isinstance(doc, dict)
    return doc


def compose_services() -> dict[str, dict[str, Any]]:
    services = compose()["services"]
    assert isinstance(services, dict)
    return services


def is_nervewatch_service(svc: dict[str, Any]) -> bool:
    return "build" in svc or str(svc.get("image", "")).startswith("nervewatch")


def compose_env(svc: dict[str, Any]) -> dict[str, Any]:
    env = svc.get("environment") or {}
    if isinstance(env, list):
        pairs = (item.split("=", 1) if "=" in item else (item, None) for item in env)
        return dict(pairs)
    assert isinstance(env, dict)
    return env


@cache
def k8s_docs() -> list[tuple[Path, dict[str, Any]]]:
    out: list[tuple[Path, dict[str, Any]]] = []
    for path in sorted(K8S.glob("*.yaml")):
        out.extend((path, doc) for doc in load_yaml_docs(path))
    assert out
    return out


def k8s_kind(kind: str, *, include_examples: bool = False) -> list[dict[str, Any]]:
    return [
        doc
        for path, doc in k8s_docs()
        if doc.get("kind") == kind and (include_examples or not path.name.endswith(".example.yaml"))
    ]


def k8s_configmap() -> dict[str, str]:
    (cm,) = [d for d in k8s_kind("ConfigMap") if d["metadata"]["name"] == "nervewatch-config"]
    data = cm["data"]
    assert all(isinstance(v, str) for v in data.values()), "ConfigMap values must be strings"
    return dict(data)


def deployments() -> dict[str, dict[str, Any]]:
    return {d["metadata"]["name"]: d for d in k8s_kind("Deployment")}


def dockerfile_lines() -> list[str]:
    text = DOCKERFILE.read_text(encoding="utf-8").replace("\\\n", " ")
    return [line.strip() for line in text.splitlines() if line.strip() and not line.strip().startswith("#")]


def dockerfile_uid() -> int:
    users = [line.split(None, 1)[1] for line in dockerfile_lines() if line.upper().startswith("USER ")]
    assert users, "Dockerfile sets no USER"
    uid = users[-1].split(":")[0]
    assert uid.isdigit(), "final USER must be numeric so runAsNonRoot can verify it"
    return int(uid)


def promtool() -> str | None:
    return shutil.which("promtool")


def run_promtool(*args: str) -> subprocess.CompletedProcess[str]:
    tool = promtool()
    assert tool is not None
    return subprocess.run([tool, *args], capture_output=True, text=True, timeout=60, check=False)


# --------------------------------------------------------------------------------------------
# Settings and metrics sanity (the references the other checks rely on)
# --------------------------------------------------------------------------------------------


def test_settings_env_names_include_unprefixed_aliases() -> None:
    names = settings_env_names()
    assert {"DATABASE_URL", "KAFKA_BOOTSTRAP_SERVERS", "NERVEWATCH_HOST", "NERVEWATCH_SMTP_PORT"} <= names
    assert "NERVEWATCH_HOSTT" not in names


def test_image_pin_checker() -> None:
    for good in ("apache/kafka:3.9.1", "postgres:16.9-bookworm", "prom/prometheus:v3.5.0", "a/b@sha256:" + "0" * 64):
        assert image_is_pinned(good), good
    for bad in ("postgres", "postgres:16", "grafana/grafana:latest", "x:${TAG}", "localhost:5000/app"):
        assert not image_is_pinned(bad), bad


def test_expression_checker_rejects_typos() -> None:
    with pytest.raises(AssertionError):
        check_expr("rate(nervewatch_ingest_event_accepted_total[5m])", "self-test")
    with pytest.raises(AssertionError):
        check_expr("sum by (knd) (rate(nervewatch_ingest_events_accepted_total[5m]))", "self-test")
    with pytest.raises(AssertionError):
        check_expr('rate(nervewatch_notifications_total{result="ok"}[5m])', "self-test")
    check_expr('sum by (le, stage) (rate(nervewatch_end_to_end_latency_seconds_bucket{origin="x"}[5m]))', "self-test")


# --------------------------------------------------------------------------------------------
# Dockerfile and .dockerignore
# --------------------------------------------------------------------------------------------


def test_dockerfile_base_images_pinned_python_311() -> None:
    lines = dockerfile_lines()
    args: dict[str, str] = {}
    for line in lines:
        if match := re.match(r"ARG\s+(\w+)=(\S+)", line):
            args[match.group(1)] = match.group(2)
    stages: set[str] = set()
    froms = [line for line in lines if line.upper().startswith("FROM ")]
    assert len(froms) >= 2, "expected a multi-stage build"
    for line in froms:
        parts = line.split()
        ref = re.sub(r"\$\{?(\w+)\}?", lambda m: args.get(m.group(1), m.group(0)), parts[1])
        if ref not in stages:
            assert image_is_pinned(ref), f"base image not pinned: {ref}"
            assert ref.startswith("python:3.11."), f"base image must be Python 3.11: {ref}"
            assert "slim" in ref
        if len(parts) >= 4 and parts[2].upper() == "AS":
            stages.add(parts[3])


def test_dockerfile_runtime_contract() -> None:
    lines = dockerfile_lines()
    text = "\n".join(lines)
    assert dockerfile_uid() != 0
    exposed = {int(p) for line in lines if line.upper().startswith("EXPOSE ") for p in line.split()[1:]}
    assert exposed == set(SERVICE_PORTS.values())
    cmds = [line for line in lines if line.upper().startswith("CMD ")]
    assert cmds and json.loads(cmds[-1][4:]) == ["nervewatch", "serve", "ingest"]
    assert not any(line.upper().startswith("ENTRYPOINT") for line in lines), "services override CMD"
    assert "NERVEWATCH_HOST=0.0.0.0" in text
    assert "pip install" in text and "embedded" not in text.replace("[embedded] extra", "")
    # Every package the wheel includes is copied into the build stage.
    pyproject = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    includes = pyproject["tool"]["setuptools"]["packages"]["find"]["include"]
    copied = {p for line in lines if line.upper().startswith("COPY ") for p in line.split()[1:-1]}
    assert "pyproject.toml" in copied
    for pattern in includes:
        package = pattern.rstrip("*").rstrip(".")
        assert package in copied, f"Dockerfile does not COPY package {package}"
        assert (ROOT / package).is_dir()
    assert (DEPLOY / "healthcheck.py").is_file()


def test_healthcheck_script_defaults_follow_settings() -> None:
    text = (DEPLOY / "healthcheck.py").read_text(encoding="utf-8")
    for service, port in SERVICE_PORTS.items():
        assert f'("{env_name_for(service + "_port")}", {port})' in text


def dockerignore_excludes(path: str, patterns: list[str]) -> bool:
    excluded = False
    for raw in patterns:
        negate = raw.startswith("!")
        pattern = raw[1:] if negate else raw
        pattern = pattern.removeprefix("**/")
        parts = path.split("/")
        prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
        if any(fnmatch.fnmatch(p, pattern) for p in prefixes) or fnmatch.fnmatch(parts[-1], pattern):
            excluded = not negate
    return excluded


def test_dockerignore() -> None:
    patterns = [
        line.strip()
        for line in (ROOT / ".dockerignore").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    ]
    for path in (
        ".venv/bin/python",
        ".nervewatch/pg/data",
        ".git/HEAD",
        ".mypy_cache/x",
        ".ruff_cache/x",
        ".pytest_cache/x",
        "nervewatch/__pycache__/x.pyc",
        "nervewatch.egg-info/PKG-INFO",
    ):
        assert dockerignore_excludes(path, patterns), f"{path} should be excluded"
    copied = [
        p
        for line in dockerfile_lines()
        if line.upper().startswith("COPY ") and "--from" not in line
        for p in line.split()[1:-1]
        if "*" not in p
    ]
    for path in [*copied, "nervewatch/settings.py", "services/__init__.py", "schemas/events.py"]:
        assert not dockerignore_excludes(path, patterns), f"{path} is copied but excluded by .dockerignore"


# --------------------------------------------------------------------------------------------
# docker-compose.yml
# --------------------------------------------------------------------------------------------


def test_compose_images_pinned() -> None:
    for name, svc in compose_services().items():
        if "build" in svc:
            assert svc["build"]["dockerfile"] == "deploy/Dockerfile"
            assert svc["build"]["context"] == "."
            assert svc.get("image") == "nervewatch:dev", name
            continue
        assert "image" in svc, f"{name}: no image"
        assert image_is_pinned(svc["image"]), f"{name}: image not pinned: {svc['image']}"
    images = {svc["image"].split(":")[0] for svc in compose_services().values()}
    assert {"apache/kafka", "postgres", "prom/prometheus", "grafana/grafana", "axllent/mailpit"} <= images
    (pg,) = [s for s in compose_services().values() if s.get("image", "").startswith("postgres:")]
    assert pg["image"].startswith("postgres:16.")


def test_compose_nervewatch_env_vars_are_settings() -> None:
    names = settings_env_names()
    seen = 0
    for name, svc in compose_services().items():
        if not is_nervewatch_service(svc):
            continue
        env = compose_env(svc)
        unknown = set(env) - names
        assert not unknown, f"{name}: environment variables not in Settings: {sorted(unknown)}"
        assert env.get("NERVEWATCH_HOST") == "0.0.0.0", name
        assert env.get("KAFKA_BOOTSTRAP_SERVERS") == "kafka:9092", name
        assert str(env.get("NERVEWATCH_KAFKA_ENABLE_IDEMPOTENCE")).lower() == "true", name
        assert str(env.get("NERVEWATCH_TOPIC_REPLICATION_FACTOR")) == "1", "single broker"
        seen += 1
    assert seen >= 4


def test_compose_interpolations_are_well_formed() -> None:
    text = COMPOSE_FILE.read_text(encoding="utf-8")
    for match in re.finditer(r"\$\{([^}]*)\}", text):
        assert re.fullmatch(r"[A-Z_][A-Z0-9_]*(?::?[-?][^}]*)?", match.group(1)), match.group(0)


def test_compose_services_commands_ports_and_health() -> None:
    services = compose_services()
    shutdown = float(DEFAULTS.shutdown_timeout_s)
    for service, port in SERVICE_PORTS.items():
        svc = services[service]
        assert svc["command"] == ["nervewatch", "serve", service]
        assert svc["depends_on"]["kafka"]["condition"] == "service_healthy"
        assert svc["depends_on"]["postgres"]["condition"] == "service_healthy"
        assert svc["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
        env = compose_env(svc)
        port_var = env_name_for(f"{service}_port")
        assert int(env.get(port_var, port)) == port
        assert any(str(p).endswith(f":{port}:{port}") for p in svc.get("ports", [])), service
        health = svc["healthcheck"]["test"]
        assert health[:2] == ["CMD", "nervewatch-healthcheck"] and health[2] == str(port), service
        shutdown = float(env.get(env_name_for("shutdown_timeout_s"), shutdown))
        grace = svc["stop_grace_period"]
        assert grace.endswith("s") and float(grace[:-1]) > shutdown, f"{service}: stop_grace_period too short"
        assert svc.get("restart") == "unless-stopped"


def test_compose_one_shots() -> None:
    services = compose_services()
    migrate = services["migrate"]
    assert migrate["command"] == ["nervewatch", "migrate"]
    assert migrate["depends_on"]["postgres"]["condition"] == "service_healthy"
    assert migrate["restart"] == "no"
    seed = services["seed"]
    assert seed["command"] == ["nervewatch", "seed-dev"]
    assert seed["depends_on"]["migrate"]["condition"] == "service_completed_successfully"
    env = compose_env(seed)
    # Passed through from the host shell (no value in the file), never a committed key.
    assert "NERVEWATCH_DEV_API_KEY" in env and env["NERVEWATCH_DEV_API_KEY"] is None
    assert "NERVEWATCH_DEV_WEBHOOK_SECRET" in env and env["NERVEWATCH_DEV_WEBHOOK_SECRET"] is None


def test_compose_kafka_kraft_single_node() -> None:
    kafka = compose_services()["kafka"]
    assert kafka["image"].startswith("apache/kafka:")
    env = {k: str(v) for k, v in kafka["environment"].items()}
    assert set(env["KAFKA_PROCESS_ROLES"].split(",")) == {"broker", "controller"}
    node = env["KAFKA_NODE_ID"]
    assert env["KAFKA_CONTROLLER_QUORUM_VOTERS"] == f"{node}@kafka:9093"
    assert "PLAINTEXT://kafka:9092" in env["KAFKA_ADVERTISED_LISTENERS"].split(",")
    listeners = dict(item.split("://") for item in env["KAFKA_LISTENERS"].split(","))
    assert listeners["PLAINTEXT"] == ":9092" and listeners["CONTROLLER"] == ":9093"
    protocol_map = dict(item.split(":") for item in env["KAFKA_LISTENER_SECURITY_PROTOCOL_MAP"].split(","))
    assert set(listeners) <= set(protocol_map)
    assert env["KAFKA_CONTROLLER_LISTENER_NAMES"] in listeners
    assert env["KAFKA_INTER_BROKER_LISTENER_NAME"] in listeners
    assert env["KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR"] == "1"
    assert env["KAFKA_AUTO_CREATE_TOPICS_ENABLE"] == "false"
    cluster_id = env["CLUSTER_ID"]
    assert len(base64.urlsafe_b64decode(cluster_id + "==")) == 16, "CLUSTER_ID must be a base64 UUID"
    data_dir = env["KAFKA_LOG_DIRS"]
    assert any(str(v).endswith(f":{data_dir}") for v in kafka["volumes"])
    assert "healthcheck" in kafka


def test_compose_postgres_and_database_url() -> None:
    services = compose_services()
    pg = services["postgres"]
    env = pg["environment"]
    assert "pg_isready" in " ".join(pg["healthcheck"]["test"])
    assert any(str(v).endswith(":/var/lib/postgresql/data") for v in pg["volumes"])
    url = compose_env(services["ingest"])["DATABASE_URL"]
    match = re.fullmatch(r"postgresql://([^:]+):(.+)@postgres:5432/(\w+)", url)
    assert match, url
    assert match.group(1) == env["POSTGRES_USER"]
    assert match.group(2) == env["POSTGRES_PASSWORD"]
    assert match.group(3) == env["POSTGRES_DB"]


def test_compose_alerts_smtp_points_to_mailpit() -> None:
    services = compose_services()
    env = compose_env(services["alerts"])
    host = env[env_name_for("smtp_host")]
    assert host in services and services[host]["image"].startswith("axllent/mailpit:")
    assert str(env[env_name_for("smtp_port")]) == "1025"
    assert host in services["alerts"]["depends_on"]


def test_compose_mounts_and_volumes_exist() -> None:
    declared = set(compose().get("volumes") or {})
    for name, svc in compose_services().items():
        for volume in svc.get("volumes", []):
            source = str(volume).split(":", 1)[0]
            if source.startswith("./"):
                assert (ROOT / source).exists(), f"{name}: {source} does not exist"
            else:
                assert source in declared, f"{name}: volume {source} not declared"
    prom = compose_services()["prometheus"]
    assert "./deploy/prometheus/prometheus.yml:/etc/prometheus/prometheus.yml:ro" in prom["volumes"]
    assert "--config.file=/etc/prometheus/prometheus.yml" in prom["command"]


# --------------------------------------------------------------------------------------------
# Prometheus
# --------------------------------------------------------------------------------------------


def test_prometheus_scrapes_the_three_services() -> None:
    config = load_yaml(PROM / "prometheus.yml")
    jobs = {job["job_name"]: job for job in config["scrape_configs"]}
    for service, port in SERVICE_PORTS.items():
        job = jobs[f"nervewatch-{service}"]
        assert job.get("metrics_path", "/metrics") == "/metrics"
        targets = [t for sc in job["static_configs"] for t in sc["targets"]]
        assert targets == [f"{service}:{port}"]
        assert service in compose_services()
    # The relative rule glob resolves to our rule files, here and in the container.
    (pattern,) = config["rule_files"]
    assert sorted((PROM).glob(pattern)) == rule_files()


def test_rules_structure() -> None:
    names: set[str] = set()
    for group in rule_groups():
        assert set(group) <= {"name", "interval", "rules", "limit"}, group.get("name")
        assert group["rules"], group["name"]
        for rule in group["rules"]:
            assert ("alert" in rule) != ("record" in rule), rule
            assert isinstance(rule["expr"], str) and rule["expr"].strip()
            if "record" in rule:
                assert re.fullmatch(r"nervewatch:[a-z0-9_]+:[a-z0-9_]+", rule["record"]), rule["record"]
                assert set(rule) <= {"record", "expr", "labels"}
                continue
            assert set(rule) <= {"alert", "expr", "for", "keep_firing_for", "labels", "annotations"}
            assert rule["alert"] not in names, f"duplicate alert {rule['alert']}"
            names.add(rule["alert"])
            if "for" in rule:
                assert re.fullmatch(r"\d+[smh]", rule["for"]), rule["alert"]
            assert rule["labels"]["severity"] in SEVERITIES, rule["alert"]
            annotations = rule["annotations"]
            assert {"summary", "description", "runbook_url"} <= set(annotations), rule["alert"]
            page, _, anchor = annotations["runbook_url"].partition("#")
            assert page == "docs/operations.md" and anchor, rule["alert"]
            assert anchor in operations_anchors(), f"{rule['alert']}: no section #{anchor} in {page}"
            for text in annotations.values():
                for label in re.findall(r"\$labels\.(\w+)", text):
                    assert label in labels_available(rule["expr"]), f"{rule['alert']}: $labels.{label}"


def test_required_alerts_present() -> None:
    exprs = {rule["alert"]: rule["expr"] for rule in all_rules() if "alert" in rule}
    joined = "\n".join(exprs.values())

    def uses(*needles: str) -> bool:
        return any(all(n in e or n in recording_rules().get(_rec(e), "") for n in needles) for e in exprs.values())

    assert uses("nervewatch_consumer_lag_messages", "deriv") or "consumer_lag_messages:group_sum" in joined
    assert uses("nervewatch_dead_letters_total")
    assert uses("nervewatch_notifications_total") or "notifications_failed" in joined
    assert uses("nervewatch_outbox_backlog") and uses("nervewatch_outbox_oldest_age_seconds")
    assert uses("nervewatch_ingest_events_accepted_total", "hour()")
    assert "5xx" in joined or 'status=~"5..' in joined
    assert uses("nervewatch_consumer_stalled") and uses("nervewatch_consumer_last_progress_timestamp_seconds")


def _rec(expr: str) -> str:
    found = [n for n in metric_names_in(expr) if n in recording_rules()]
    return found[0] if found else ""


def test_rule_expressions_use_defined_metrics_and_labels() -> None:
    for rule in all_rules():
        check_expr(rule["expr"], rule.get("alert") or rule["record"])


def test_prometheusrule_matches_rule_files() -> None:
    (doc,) = k8s_kind("PrometheusRule")
    assert doc["apiVersion"] == "monitoring.coreos.com/v1"
    assert doc["spec"]["groups"] == rule_groups(), "deploy/k8s/prometheusrule.yaml is out of date"


@pytest.mark.skipif(promtool() is None, reason="promtool not installed")
def test_promtool_accepts_config_rules_and_rule_tests() -> None:
    result = run_promtool("check", "config", str(PROM / "prometheus.yml"))
    assert result.returncode == 0, result.stdout + result.stderr
    result = run_promtool("check", "rules", *map(str, rule_files()))
    assert result.returncode == 0, result.stdout + result.stderr
    tests = sorted((PROM / "tests").glob("*.test.yml"))
    assert tests
    result = run_promtool("test", "rules", *map(str, tests))
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# Grafana
# --------------------------------------------------------------------------------------------


def datasource_uid() -> str:
    doc = load_yaml(GRAFANA / "provisioning" / "datasources" / "prometheus.yml")
    assert doc["apiVersion"] == 1
    (ds,) = doc["datasources"]
    assert ds["type"] == "prometheus"
    assert ds["url"] == "http://prometheus:9090" and "prometheus" in compose_services()
    return str(ds["uid"])


def dashboards() -> list[tuple[Path, dict[str, Any]]]:
    paths = sorted((GRAFANA / "dashboards").glob("*.json"))
    assert paths
    return [(p, json.loads(p.read_text(encoding="utf-8"))) for p in paths]


def dashboard_targets() -> list[tuple[str, dict[str, Any]]]:
    out: list[tuple[str, dict[str, Any]]] = []
    for _, dash in dashboards():
        for panel in dash["panels"]:
            out.extend((panel["title"], target) for target in panel.get("targets", []))
    return out


def test_grafana_provisioning_matches_compose_mounts() -> None:
    provider_doc = load_yaml(GRAFANA / "provisioning" / "dashboards" / "nervewatch.yml")
    assert provider_doc["apiVersion"] == 1
    (provider,) = provider_doc["providers"]
    assert provider["type"] == "file"
    grafana = compose_services()["grafana"]
    mounts = dict(str(v).split(":")[:2] for v in grafana["volumes"] if str(v).startswith("./"))
    assert mounts["./deploy/grafana/provisioning"] == "/etc/grafana/provisioning"
    assert mounts["./deploy/grafana/dashboards"] == provider["options"]["path"]
    home = grafana["environment"].get("GF_DASHBOARDS_DEFAULT_HOME_DASHBOARD_PATH")
    if home:
        assert (GRAFANA / "dashboards" / Path(home).name).is_file()


def test_dashboard_structure() -> None:
    uid = datasource_uid()
    for path, dash in dashboards():
        assert isinstance(dash["schemaVersion"], int) and dash["schemaVersion"] >= 36, path
        assert dash["uid"] and dash["title"]
        ids = [p["id"] for p in dash["panels"]]
        assert len(ids) == len(set(ids)), f"{path}: duplicate panel ids"
        cells: set[tuple[int, int]] = set()
        for panel in dash["panels"]:
            grid = panel["gridPos"]
            assert all(isinstance(grid[k], int) for k in ("h", "w", "x", "y")), panel["title"]
            assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24, panel["title"]
            area = {
                (x, y) for x in range(grid["x"], grid["x"] + grid["w"]) for y in range(grid["y"], grid["y"] + grid["h"])
            }
            assert not cells & area, f"{path}: panel {panel['title']!r} overlaps another"
            cells |= area
            if panel["type"] == "row":
                continue
            assert panel["datasource"]["uid"] == uid, panel["title"]
            assert panel["targets"], panel["title"]
            for target in panel["targets"]:
                assert target["expr"].strip() and target["refId"]
                assert target.get("datasource", panel["datasource"])["uid"] == uid


def test_dashboard_queries_use_defined_metrics_and_labels() -> None:
    for title, target in dashboard_targets():
        expr = target["expr"]
        check_expr(expr, f"dashboard panel {title!r}")
        for label in re.findall(r"\{\{\s*(\w+)\s*\}\}", target.get("legendFormat", "")):
            assert label in labels_used(expr) | TARGET_LABELS, f"{title!r}: legend label {label} not kept"


def test_dashboard_covers_the_operational_signals() -> None:
    exprs = "\n".join(t["expr"] for _, t in dashboard_targets())
    for needle in (
        "nervewatch_ingest_events_accepted_total",
        "nervewatch_http_requests_total",
        "nervewatch_validation_rejections_total",
        "nervewatch_consumer_lag_messages",
        "histogram_quantile(0.99, sum by (le, stage, origin) (rate(nervewatch_end_to_end_latency_seconds_bucket",
        "nervewatch_processing_duration_seconds_bucket",
        "sum by (severity) (increase(nervewatch_alerts_opened_total",
        "nervewatch_notifications_total",
        "nervewatch_outbox_backlog",
        "nervewatch_outbox_oldest_age_seconds",
        "nervewatch_db_pool_connections",
        "nervewatch_dead_letters_total",
    ):
        assert needle in exprs, f"dashboard lacks {needle}"


@pytest.mark.skipif(promtool() is None, reason="promtool not installed")
def test_promtool_parses_dashboard_queries(tmp_path: Path) -> None:
    rules = []
    for i, (_, target) in enumerate(dashboard_targets()):
        expr = target["expr"].replace("$__rate_interval", "5m").replace("$__range", "1h")
        expr = expr.replace("$__interval", "1m")
        rules.append({"record": f"dashboard:query_{i}:check", "expr": expr})
    path = tmp_path / "dashboard-queries.yml"
    path.write_text(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}), encoding="utf-8")
    result = run_promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr


# --------------------------------------------------------------------------------------------
# Kubernetes
# --------------------------------------------------------------------------------------------


def test_kustomization_lists_every_manifest() -> None:
    kustomization = load_yaml(K8S / "kustomization.yaml")
    resources = kustomization["resources"]
    for resource in resources:
        assert (K8S / resource).is_file(), resource
    expected = {
        p.name for p in K8S.glob("*.yaml") if p.name != "kustomization.yaml" and not p.name.endswith(".example.yaml")
    }
    assert set(resources) == expected
    assert kustomization["namespace"] == "nervewatch"
    for image in kustomization.get("images", []):
        assert image.get("newTag") not in (None, "latest")


def test_k8s_manifests_basic_shape_and_pinned_images() -> None:
    for path, doc in k8s_docs():
        if path.name == "kustomization.yaml":
            continue
        assert {"apiVersion", "kind", "metadata"} <= set(doc), path
        if doc["kind"] != "Namespace":
            assert doc["metadata"].get("namespace") == "nervewatch", f"{path}: {doc['metadata']['name']}"
        spec = doc.get("spec", {}).get("template", {}).get("spec", {})
        for container in spec.get("containers", []) + spec.get("initContainers", []):
            assert image_is_pinned(container["image"]), f"{path}: {container['image']}"


def test_k8s_config_and_secret_keys_are_settings() -> None:
    names = settings_env_names()
    config = k8s_configmap()
    assert set(config) <= names, sorted(set(config) - names)
    assert config["NERVEWATCH_HOST"] == "0.0.0.0"
    assert config["NERVEWATCH_KAFKA_ENABLE_IDEMPOTENCE"] == "true"
    assert int(config["NERVEWATCH_TOPIC_REPLICATION_FACTOR"]) >= 3
    (secret,) = k8s_kind("Secret", include_examples=True)
    assert set(secret["stringData"]) <= names
    assert "DATABASE_URL" in secret["stringData"]
    assert all("CHANGE-ME" in v for v in secret["stringData"].values()), "example secret must hold placeholders"
    assert not k8s_kind("Secret"), "real Secrets do not belong in the repository"
    Settings.model_validate({k.lower().removeprefix("nervewatch_"): v for k, v in config.items()})


def test_k8s_deployments() -> None:
    deps = deployments()
    assert set(deps) == {f"nervewatch-{s}" for s in SERVICES}
    config = k8s_configmap()
    shutdown = float(config.get(env_name_for("shutdown_timeout_s"), DEFAULTS.shutdown_timeout_s))
    uid = dockerfile_uid()
    for service in SERVICES:
        dep = deps[f"nervewatch-{service}"]
        spec = dep["spec"]
        assert "replicas" not in spec, "the autoscaler owns replicas"
        selector = spec["selector"]["matchLabels"]
        template_labels = spec["template"]["metadata"]["labels"]
        assert selector.items() <= template_labels.items()
        assert template_labels["app.kubernetes.io/component"] == service
        pod = spec["template"]["spec"]
        assert pod["securityContext"]["runAsNonRoot"] is True
        assert pod["securityContext"]["runAsUser"] == uid
        (container,) = pod["containers"]
        assert container["command"] == ["nervewatch", "serve", service]
        (port,) = container["ports"]
        assert port["containerPort"] == SERVICE_PORTS[service] and port["name"] == "http"
        assert container["livenessProbe"]["httpGet"] == {"path": "/healthz", "port": "http"}
        assert container["readinessProbe"]["httpGet"] == {"path": "/readyz", "port": "http"}
        resources = container["resources"]
        assert {"cpu", "memory"} <= set(resources["requests"])
        limit = resources["limits"]["memory"]
        assert limit.endswith("Mi") and 200 <= int(limit[:-2]) <= 512
        csc = container["securityContext"]
        assert csc["allowPrivilegeEscalation"] is False and csc["capabilities"]["drop"] == ["ALL"]
        refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
        assert refs == {"nervewatch-config", "nervewatch-secrets"}
        pre_stop = container.get("lifecycle", {}).get("preStop", {}).get("exec", {}).get("command", [])
        pre_stop_s = float(pre_stop[1]) if pre_stop[:1] == ["sleep"] else 0.0
        assert pod["terminationGracePeriodSeconds"] > shutdown + pre_stop_s


def test_k8s_services_pdbs_and_servicemonitor() -> None:
    deps = deployments()
    services = {s["metadata"]["name"]: s for s in k8s_kind("Service")}
    pdbs = {p["metadata"]["name"]: p for p in k8s_kind("PodDisruptionBudget")}
    (monitor,) = k8s_kind("ServiceMonitor")
    assert monitor["apiVersion"] == "monitoring.coreos.com/v1"
    (endpoint,) = monitor["spec"]["endpoints"]
    for service in SERVICES:
        name = f"nervewatch-{service}"
        template_labels = deps[name]["spec"]["template"]["metadata"]["labels"]
        svc = services[name]
        assert svc["spec"]["selector"].items() <= template_labels.items()
        (port,) = svc["spec"]["ports"]
        assert port["port"] == SERVICE_PORTS[service] and port["targetPort"] == "http"
        assert port["name"] == endpoint["port"]
        assert monitor["spec"]["selector"]["matchLabels"].items() <= svc["metadata"]["labels"].items()
        pdb = pdbs[name]
        assert pdb["spec"]["selector"]["matchLabels"].items() <= template_labels.items()
        assert "maxUnavailable" in pdb["spec"] or "minAvailable" in pdb["spec"]
    assert endpoint["path"] == "/metrics"


def test_k8s_autoscaling() -> None:
    partitions = int(k8s_configmap()["NERVEWATCH_TOPIC_PARTITIONS"])
    bootstrap = k8s_configmap()["KAFKA_BOOTSTRAP_SERVERS"]
    (hpa,) = k8s_kind("HorizontalPodAutoscaler")
    assert hpa["apiVersion"] == "autoscaling/v2"
    assert hpa["spec"]["scaleTargetRef"]["name"] == "nervewatch-ingest"
    (metric,) = hpa["spec"]["metrics"]
    assert metric["resource"]["name"] == "cpu"
    scaled = {s["spec"]["scaleTargetRef"]["name"]: s for s in k8s_kind("ScaledObject")}
    assert set(scaled) == {"nervewatch-scoring", "nervewatch-alerts"}
    deps = deployments()
    for name, obj in scaled.items():
        assert obj["apiVersion"] == "keda.sh/v1alpha1"
        assert name in deps
        spec = obj["spec"]
        assert 1 <= spec["minReplicaCount"] <= spec["maxReplicaCount"] <= partitions
        group = name  # the consumer group is named like the deployment
        topics = set()
        for trigger in spec["triggers"]:
            assert trigger["type"] == "kafka"
            meta = trigger["metadata"]
            assert meta["bootstrapServers"] == bootstrap
            assert meta["consumerGroup"] == group
            assert int(meta["lagThreshold"]) > 0 and isinstance(meta["lagThreshold"], str)
            topics.add(meta["topic"])
        assert topics == CONSUMER_GROUPS[group], name
    assert set(Topics.all()) >= set().union(*CONSUMER_GROUPS.values())


def test_migrate_job() -> None:
    (job,) = k8s_kind("Job")
    pod = job["spec"]["template"]["spec"]
    (container,) = pod["containers"]
    assert container["command"] == ["nervewatch", "migrate"]
    assert pod["restartPolicy"] in {"OnFailure", "Never"}
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert pod["securityContext"]["runAsUser"] == dockerfile_uid()
    refs = {next(iter(ref.values()))["name"] for ref in container["envFrom"]}
    assert refs == {"nervewatch-config", "nervewatch-secrets"}


# --------------------------------------------------------------------------------------------
# docs/operations.md
# --------------------------------------------------------------------------------------------


def test_operations_doc_documents_every_setting_topic_and_group() -> None:
    text = OPERATIONS.read_text(encoding="utf-8")
    for field in Settings.model_fields:
        assert f"`{env_name_for(field)}`" in text, f"operations.md lacks {env_name_for(field)}"
    for topic in Topics.all():
        assert topic in text
    for group in CONSUMER_GROUPS:
        assert group in text
    for needle in ("docker compose", "kubectl", "runbook", "backup", "TLS", "Secret"):
        assert needle.lower() in text.lower(), needle
