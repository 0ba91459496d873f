"""The CI workflow files, loaded as YAML (GitHub Actions cannot run here): the OpenSearch job starts both
cluster versions as service containers, points the tests at them and runs the contract and cluster tests."""

from __future__ import annotations

from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parents[1]


def test_opensearch_workflow_runs_the_contract_suite_on_two_versions() -> None:
    doc = yaml.safe_load((ROOT / ".github/workflows/opensearch.yml").read_text())
    [job] = doc["jobs"].values()
    versions = job["strategy"]["matrix"]["opensearch"]
    assert any(v.startswith("2.19") for v in versions) and any(v.startswith("3.") for v in versions)
    service = job["services"]["opensearch"]
    assert service["image"] == "opensearchproject/opensearch:${{ matrix.opensearch }}"
    env = service["env"]
    assert env["discovery.type"] == "single-node" and env["DISABLE_SECURITY_PLUGIN"] == "true"
    assert "9200:9200" in service["ports"] and "--health-cmd" in service["options"]
    assert job["env"]["TERN_ARIEL__OPENSEARCH_URL"] == "http://127.0.0.1:9200"
    runs = "\n".join(step.get("run", "") for step in job["steps"])
    for test_file in (
        "tests/ariel/test_search_contract.py",
        "tests/ariel/test_opensearch_cluster.py",
        "tests/ariel/test_opensearch_http.py",
    ):
        assert test_file in runs and (ROOT / test_file).is_file()
    assert "pip install -e '.[dev,aws]'" in runs
    assert any(step.get("uses", "").startswith("actions/checkout@") for step in job["steps"])


def test_opensearch_health_check_quotes_its_url() -> None:
    """Issue 27, 5: Docker runs ``--health-cmd`` with ``/bin/sh -c``; an unquoted ``&`` in the URL backgrounds
    curl, so the check always passed. The options are split as Docker's CLI does (shell words), then the
    command as the shell reads it: no ``&`` operator, the whole URL one word."""
    import shlex

    doc = yaml.safe_load((ROOT / ".github/workflows/opensearch.yml").read_text())
    [job] = doc["jobs"].values()
    words = shlex.split(job["services"]["opensearch"]["options"])
    cmd = words[words.index("--health-cmd") + 1]
    lexer = shlex.shlex(cmd, posix=True, punctuation_chars=True)
    tokens = list(lexer)
    assert "&" not in tokens and ";" not in tokens, tokens
    assert "http://localhost:9200/_cluster/health?wait_for_status=green&timeout=5s" in tokens, tokens
