"""infra/prometheus/alerts.yml: well-formed rule groups naming only metrics Tern and its workers expose, and
accepted by ``promtool check rules`` (Debian's prometheus package; scripts/system-deps.sh extracts promtool)."""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from pathlib import Path

import yaml
from prometheus_client import REGISTRY

import tern.metrics  # noqa: F401 - registers Tern's metrics in the default registry
from tests.conftest import unavailable
from worker.sdk_metrics import ALERTED_SDK_METRICS

RULES = Path(__file__).resolve().parent.parent / "infra" / "prometheus" / "alerts.yml"
METRIC = re.compile(r"\b((?:tern|temporal)_[a-z0-9_]+)\b")


def tern_sample_names() -> set[str]:
    return {s.name for fam in REGISTRY.collect() for s in fam.samples} | {
        fam.name + suffix for fam in REGISTRY.collect() for suffix in ("", "_total", "_count", "_sum", "_bucket")
    }


def test_rules_name_only_real_metrics_and_cover_the_issue() -> None:
    doc = yaml.safe_load(RULES.read_text())
    rules = [r for g in doc["groups"] for r in g["rules"]]
    assert all({"alert", "expr", "labels", "annotations"} <= set(r) for r in rules), rules
    known = tern_sample_names() | set(ALERTED_SDK_METRICS)
    used = {m for r in rules for m in METRIC.findall(r["expr"])}
    assert used and used <= known, used - known
    alerts = {r["alert"] for r in rules}
    assert {
        "TernApprovalWaiting",
        "TernWriteOutcomeNotVerified",
        "TernWorkerNotPolling",
        "TernSandboxFailures",
    } <= alerts


def test_promtool_accepts_the_rules() -> None:
    promtool = shutil.which("promtool") or str(Path(sys.executable).parent / "promtool")
    if not Path(promtool).exists():
        unavailable("promtool (Debian's prometheus package; scripts/system-deps.sh puts it in the venv)")
    proc = subprocess.run([promtool, "check", "rules", str(RULES)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUCCESS: 6 rules found" in proc.stdout, proc.stdout
