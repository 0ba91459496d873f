"""Deployment files are checked by machines, not by eye: infra/compose/compose.yaml against the compose
specification's JSON schema (as vendored by check-jsonschema), infra/k8s/*.yaml against the Kubernetes OpenAPI
schemas (kubernetes-validate, strict: unknown fields are errors), plus the project's own rules: pinned image
tags, mounted files that exist, probes on the worker's /healthz and /readyz, dashboard queries that name real
metrics."""

from __future__ import annotations

import json
import re
from importlib.resources import files
from pathlib import Path

import jsonschema
import kubernetes_validate
import pytest
import yaml
from prometheus_client import REGISTRY

import tern.metrics  # noqa: F401 - registers Tern's metrics
from worker.sdk_metrics import ALERTED_SDK_METRICS

INFRA = Path(__file__).resolve().parent.parent / "infra"
COMPOSE = INFRA / "compose" / "compose.yaml"
K8S_VERSION = "1.30.0"
METRIC = re.compile(r"\b((?:tern|temporal)_[a-z0-9_]+)\b")


def compose_doc() -> dict:
    return yaml.safe_load(COMPOSE.read_text())


def test_compose_file_follows_the_compose_specification() -> None:
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    jsonschema.validate(compose_doc(), schema)


def test_compose_rejects_what_the_schema_forbids() -> None:
    """The schema check can fail: a misspelt service key is refused."""
    schema = json.loads(files("check_jsonschema.builtin_schemas.vendor").joinpath("compose-spec.json").read_text())
    doc = compose_doc()
    doc["services"]["tern-worker"]["enviroment"] = {}
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, schema)


def test_compose_images_are_pinned_and_mounted_files_exist() -> None:
    doc = compose_doc()
    for name, svc in doc["services"].items():
        image = svc["image"]
        if image.startswith("${TERN_WORKER_IMAGE"):
            continue  # the locally built worker image (tern image build worker)
        repo, _, tag = image.rpartition(":")
        assert repo and tag and tag != "latest" and "/" not in tag, f"{name}: image {image} is not pinned"
        for vol in svc.get("volumes", []):
            source = vol.split(":", 1)[0]
            if source.startswith("."):
                assert (COMPOSE.parent / source).exists(), f"{name}: mounts missing {source}"
    expected = {"temporal", "temporal-ui", "opensearch", "tern-postgresql", "tern-worker", "ariel-api"}
    assert expected | {"otel-collector", "prometheus", "grafana"} <= set(doc["services"])
    temporal = doc["services"]["temporal"]["environment"]
    assert temporal["DB"] == "postgres12" and temporal["ENABLE_ES"] == "true"


def test_prometheus_config_loads_the_alert_rules_and_scrapes_the_workers() -> None:
    prom = yaml.safe_load((INFRA / "compose" / "prometheus.yml").read_text())
    mounts = dict(v.split(":")[:2][::-1] for v in compose_doc()["services"]["prometheus"]["volumes"])
    for rule_file in prom["rule_files"]:
        assert (COMPOSE.parent / mounts[rule_file]).resolve() == INFRA / "prometheus" / "alerts.yml"
    assert [j["job_name"] for j in prom["scrape_configs"]] == ["tern-worker"]


def test_grafana_dashboard_queries_name_real_metrics() -> None:
    dash = json.loads((INFRA / "grafana" / "dashboards" / "tern.json").read_text())
    exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
    known = {s.name for fam in REGISTRY.collect() for s in fam.samples} | {
        fam.name + suffix for fam in REGISTRY.collect() for suffix in ("", "_total", "_count", "_sum", "_bucket")
    }
    used = {m for e in exprs for m in METRIC.findall(e)}
    assert used and used <= known | set(ALERTED_SDK_METRICS), used - known


def k8s_resources() -> list[tuple[str, dict]]:
    return [
        (path.name, doc)
        for path in sorted((INFRA / "k8s").glob("*.yaml"))
        for doc in yaml.safe_load_all(path.read_text())
        if doc
    ]


@pytest.mark.parametrize("name,resource", k8s_resources(), ids=lambda v: v if isinstance(v, str) else v["kind"])
def test_k8s_manifest_is_valid(name: str, resource: dict) -> None:
    kubernetes_validate.validate(resource, K8S_VERSION, strict=True)


def test_k8s_validation_can_fail() -> None:
    deployment = next(r for _, r in k8s_resources() if r["kind"] == "Deployment")
    bad = json.loads(json.dumps(deployment))
    bad["spec"]["template"]["spec"]["containers"][0]["livenessProbe"]["httpGet"]["pathh"] = "/x"
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(bad, K8S_VERSION, strict=True)


def test_worker_deployment_probes_drains_and_keeps_one_up() -> None:
    resources = {(r["kind"], r["metadata"]["name"]): r for _, r in k8s_resources()}
    pod = resources[("Deployment", "tern-worker")]["spec"]["template"]["spec"]
    worker = pod["containers"][0]
    assert worker["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert worker["readinessProbe"]["httpGet"]["path"] == "/readyz"
    from tern.config_sections import WorkerSettings
    from worker.main import GRACEFUL_SHUTDOWN, WRITE_TIMEOUT

    default = WorkerSettings().graceful_shutdown_s
    assert default == GRACEFUL_SHUTDOWN.total_seconds() > WRITE_TIMEOUT.total_seconds()
    assert pod["terminationGracePeriodSeconds"] > default
    grace = compose_doc()["services"]["tern-worker"]["stop_grace_period"]
    assert grace.endswith("s") and float(grace[:-1]) > default
    assert pod["securityContext"]["runAsNonRoot"] is True
    assert resources[("PodDisruptionBudget", "tern-worker")]["spec"]["minAvailable"] >= 1
    assert ("Secret", "tern-credentials") in resources


def test_a_worker_whose_graceful_shutdown_would_cut_a_write_off_is_refused() -> None:
    from tern.config import TernSettings
    from worker.main import build_worker

    s = TernSettings(worker={"graceful_shutdown_s": 10})
    with pytest.raises(ValueError, match=r"worker.graceful_shutdown_s .* is 10 s: it must exceed .* \(60 s\)"):
        build_worker(None, s, None)  # type: ignore[arg-type]  # refused before either is used


# Proven identity on Kubernetes (tern-config sets TERN_APPROVAL__IDENTITY=proven): which Deployment signs for users
# (a service principal with its SSH key from a Secret), which verifies (the worker, against the mounted policy), and
# which does neither. A Deployment added to infra/k8s must be placed here.
SIGNERS = {  # Deployment -> (what its command runs, the surfaces its proofs name)
    "chat-bridge": ("bridge webhook", {"webhook", "trigger"}),  # relayed decisions; POST /triggers/{name} starts
    "trigger-monitor": ("starters.trigger_monitor", {"trigger"}),
}
VERIFIERS = {"tern-worker": "worker.main"}  # the verify_proof activity
NEITHER = {"ariel-api": "ariel serve"}


def _by_kind(resources: list[dict], kind: str) -> dict[str, dict]:
    return {r["metadata"]["name"]: r for r in resources if r["kind"] == kind}


def _mount_of(pod: dict, container: dict, path: str) -> tuple[dict, dict] | None:
    """The volume mount of ``container`` that holds the file ``path``, and its pod volume."""
    volumes = {v["name"]: v for v in pod.get("volumes", [])}
    for m in container.get("volumeMounts", []):
        if Path(path).parent == Path(m["mountPath"]) and m["name"] in volumes:
            return m, volumes[m["name"]]
    return None


def _policy_toml(resources: list[dict]) -> dict:
    """The approval policy of the tern-approval-policy ConfigMap, parsed by Tern's own model with each placeholder
    key replaced by a real ed25519 public key (the worker refuses placeholders, as it should)."""
    import tomllib

    from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
    from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

    from tern.approval.policy import ApprovalPolicy

    text = _by_kind(resources, "ConfigMap")["tern-approval-policy"]["data"]["approval-policy.toml"]
    raw = tomllib.loads(text)
    for p in raw.get("principals", {}).values():
        p["ssh_keys"] = [
            Ed25519PrivateKey.generate().public_key().public_bytes(Encoding.OpenSSH, PublicFormat.OpenSSH).decode()
            if k.startswith("REPLACE")
            else k
            for k in p.get("ssh_keys", [])
        ]
    return ApprovalPolicy.model_validate(raw).principals


def identity_problems(resources: list[dict]) -> list[str]:
    """What keeps a Deployment from signing or verifying proofs (module comment above); empty when nothing does."""
    problems = []
    deployments = _by_kind(resources, "Deployment")
    config = _by_kind(resources, "ConfigMap")["tern-config"]["data"]
    principals = _policy_toml(resources)
    placed = {**{n: c for n, (c, _) in SIGNERS.items()}, **VERIFIERS, **NEITHER}
    problems += [f"{n}: not placed as signer, verifier or neither" for n in set(deployments) - set(placed)]
    for name, runs in placed.items():
        command = " ".join(deployments[name]["spec"]["template"]["spec"]["containers"][0]["command"])
        if runs not in command:
            problems.append(f"{name}: placed for {runs!r}, but runs {command!r}")
    for name, (_, surfaces) in SIGNERS.items():
        pod = deployments[name]["spec"]["template"]["spec"]
        container = pod["containers"][0]
        env = {e["name"]: e.get("value") for e in container.get("env", [])}
        service, key = env.get("TERN_APPROVAL__SERVICE_NAME"), env.get("TERN_APPROVAL__SERVICE_KEY_PATH")
        if not service or not key:
            problems.append(f"{name}: no TERN_APPROVAL__SERVICE_NAME / TERN_APPROVAL__SERVICE_KEY_PATH")
            continue
        found = _mount_of(pod, container, key)
        if found is None:
            problems.append(f"{name}: nothing mounted at {Path(key).parent} for its service key")
            continue
        mount, volume = found
        secret = volume.get("secret")
        if secret is None or not mount.get("readOnly"):
            problems.append(f"{name}: the service key must come from a Secret, mounted read-only")
            continue
        mode = secret.get("defaultMode", 0o644)  # Kubernetes' default
        readable = pod["securityContext"].get("fsGroup") is not None and mode & 0o040
        if mode & 0o007 or not readable:
            problems.append(f"{name}: key mode {mode:o}: must be group-readable through fsGroup, not by others")
        principal = principals.get(service)
        if principal is None or principal.kind != "service" or not principal.users:
            problems.append(f"{name}: the policy has no service principal {service} vouching for users")
        elif not surfaces <= set(principal.surfaces):
            problems.append(f"{name}: principal {service} lacks surfaces {sorted(surfaces - set(principal.surfaces))}")
    for name in VERIFIERS:
        pod = deployments[name]["spec"]["template"]["spec"]
        found = _mount_of(pod, pod["containers"][0], config["TERN_APPROVAL__POLICY_PATH"])
        if found is None or found[1].get("configMap", {}).get("name") != "tern-approval-policy":
            problems.append(f"{name}: the approval policy is not mounted at {config['TERN_APPROVAL__POLICY_PATH']}")
    return problems


def test_every_deployment_that_signs_or_verifies_proofs_has_its_key_or_policy_mounted() -> None:
    resources = [r for _, r in k8s_resources()]
    assert _by_kind(resources, "ConfigMap")["tern-config"]["data"]["TERN_APPROVAL__IDENTITY"] == "proven"
    assert identity_problems(resources) == []


@pytest.mark.parametrize(
    ("deployment", "break_it", "expected"),
    [
        ("chat-bridge", lambda pod: pod["containers"][0].pop("volumeMounts"), "nothing mounted"),
        ("trigger-monitor", lambda pod: pod["containers"][0].pop("env"), "no TERN_APPROVAL__SERVICE_NAME"),
        ("trigger-monitor", lambda pod: pod["volumes"][0]["secret"].update(defaultMode=0o444), "key mode 444"),
        ("chat-bridge", lambda pod: pod["securityContext"].pop("fsGroup"), "key mode 440"),
        ("tern-worker", lambda pod: pod["containers"][0]["volumeMounts"].pop(), "the approval policy is not mounted"),
    ],
)
def test_the_identity_check_can_fail(deployment: str, break_it, expected: str) -> None:
    resources = json.loads(json.dumps([r for _, r in k8s_resources()]))
    break_it(_by_kind(resources, "Deployment")[deployment]["spec"]["template"]["spec"])
    problems = identity_problems(resources)
    assert any(p.startswith(f"{deployment}: {expected}") for p in problems), problems
