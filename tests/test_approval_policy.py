"""The worker-side approval policy (tern.approval.policy): resolution rules, file loading, hot reload."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from tern.approval.policy import ApprovalPolicy, ApprovalPolicyError, PolicySource, load_policy

POLICY_TOML = """
default_approvers = ["alice", "bob", "carol"]
python_approval_mode = "control_writes"
[groups]
rf = ["alice", "dave"]
[[rules]]
kinds = ["control_write"]
channels = ["SR:RF:*"]
approvers = ["group:rf"]
min_approvals = 2
[[rules]]
kinds = ["plan"]
approvers = ["bob"]
allow_self_approval = false
"""


@pytest.fixture
def policy(tmp_path: Path) -> ApprovalPolicy:
    path = tmp_path / "policy.toml"
    path.write_text(POLICY_TOML)
    return load_policy(path)[0]


def test_a_run_cannot_widen_the_policy_by_naming_itself(policy: ApprovalPolicy) -> None:
    r = policy.resolve("control_write", requester="mallory", requested=["mallory"], channel="SR:MAG:QF:01:CURRENT:SP")
    assert r.approvers == [] and r.refusal is not None and "no one can approve" in r.refusal
    r = policy.resolve("python", requester="mallory", requested=["mallory", "bob"])
    assert r.approvers == ["bob"] and r.refusal is None  # narrowed, never widened


def test_no_narrowing_gives_the_policy_set(policy: ApprovalPolicy) -> None:
    r = policy.resolve("python", requester="erin", requested=[])
    assert r.approvers == ["alice", "bob", "carol"] and r.rule == "default_approvers"


def test_channel_pattern_rule_needs_two_from_the_group(policy: ApprovalPolicy) -> None:
    r = policy.resolve("control_write", requester="erin", requested=[], channel="SR:RF:CAVITY:01:VOLTAGE:SP")
    assert (r.approvers, r.min_approvals, r.rule, r.allow_self_approval) == (["alice", "dave"], 2, "rule 1", False)
    # the requester is one of the two: only one eligible approver is left, so the request cannot be approved
    r = policy.resolve("control_write", requester="alice", requested=[], channel="SR:RF:CAVITY:01:VOLTAGE:SP")
    assert r.refusal is not None and "two-person rule" in r.refusal


def test_two_person_rule_is_the_default_for_writes_only(policy: ApprovalPolicy) -> None:
    w = policy.resolve("control_write", requester="alice", requested=[], channel="SR:MAG:QF:01:CURRENT:SP")
    assert not w.allow_self_approval and w.refusal is None  # bob and carol remain
    assert policy.resolve("python", requester="alice", requested=[]).allow_self_approval
    plan = policy.resolve("plan", requester="bob", requested=[])  # rule 2 forbids it for plans
    assert not plan.allow_self_approval and plan.refusal is not None


def test_open_policy_uses_the_run_list_but_keeps_the_two_person_rule() -> None:
    open_policy = ApprovalPolicy()
    assert open_policy.is_open
    r = open_policy.resolve("control_write", requester="alice", requested=[], channel="X:SP")
    assert r.approvers == ["alice"] and r.refusal is not None and "two-person rule" in r.refusal
    r = open_policy.resolve("control_write", requester="alice", requested=["alice", "bob"], channel="X:SP")
    assert r.approvers == ["alice", "bob"] and r.refusal is None and not r.allow_self_approval
    assert open_policy.resolve("python", requester="alice", requested=[]).approvers == ["alice"]


def test_python_mode_can_only_be_made_stricter(policy: ApprovalPolicy) -> None:
    assert (
        policy.resolve("python", requester="a", requested=[], requested_mode="disabled").python_approval_mode
        == "control_writes"
    )
    assert (
        policy.resolve("python", requester="a", requested=[], requested_mode="all_code").python_approval_mode
        == "all_code"
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('rules = [{kinds = ["control_write"], approvers = ["group:nope"]}]', "unknown group 'group:nope'"),
        ('rules = [{kinds = ["control_write"], approvers = ["a"], min_approvals = 2}]', "min_approvals 2 exceeds"),
        ('rules = [{kinds = ["launch"], approvers = ["a"]}]', "rules.0.kinds.0"),
        ('rules = [{kinds = ["python"], approvers = [""]}]', "empty names"),
        ('default_approvers = ["a"]\nsurprise = 1', "surprise"),
        ("default_approvers = [", "cannot parse"),
    ],
)
def test_invalid_policy_files_are_refused_naming_the_field(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "p.toml"
    path.write_text(text)
    with pytest.raises(ApprovalPolicyError) as exc:
        load_policy(path)
    assert message in str(exc.value) and str(path) in str(exc.value)


def test_policy_files_in_json_and_yaml_and_bad_bytes(tmp_path: Path) -> None:
    (tmp_path / "p.json").write_text('{"default_approvers": ["a"]}')
    (tmp_path / "p.yaml").write_text("default_approvers: [b]\n")
    assert load_policy(tmp_path / "p.json")[0].default_approvers == ["a"]
    assert load_policy(tmp_path / "p.yaml")[0].default_approvers == ["b"]
    (tmp_path / "bad.json").write_bytes(b'{"default_approvers": ["\xff"]}')
    with pytest.raises(ApprovalPolicyError, match="not UTF-8"):
        load_policy(tmp_path / "bad.json")
    with pytest.raises(ApprovalPolicyError, match="cannot read"):
        load_policy(tmp_path / "missing.json")


def test_source_reloads_when_the_file_changes(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"default_approvers": ["a"]}')
    source = PolicySource(path, [], "all_code")
    _, v1 = source.current()
    assert source.current()[1] == v1
    path.write_text('{"default_approvers": ["a", "b"]}')
    os.utime(path, ns=(path.stat().st_mtime_ns + 10**9,) * 2)
    second, v2 = source.current()
    assert v2 != v1 and second.default_approvers == ["a", "b"]
    path.write_text("{")
    os.utime(path, ns=(path.stat().st_mtime_ns + 2 * 10**9,) * 2)
    with pytest.raises(ApprovalPolicyError):
        source.current()


def test_source_from_settings_without_a_file() -> None:
    policy, version = PolicySource(None, ["alice"], "control_writes").current()
    assert policy.default_approvers == ["alice"] and policy.python_approval_mode == "control_writes"
    assert version.startswith("settings-")


def test_rules_without_defaults_never_fall_back_to_the_run() -> None:
    """With rules but no default_approvers, a request no rule covers has nobody: the run cannot name its own."""
    policy = ApprovalPolicy.model_validate(
        {"rules": [{"kinds": ["control_write"], "channels": ["SR:RF:*"], "approvers": ["alice"]}]}
    )
    r = policy.resolve("control_write", requester="eve", requested=["mallory"], channel="BR:MAG:X:SP")
    assert r.approvers == [] and r.refusal is not None and "no rule matches" in r.refusal


def test_source_reloads_a_same_size_copy_with_its_mtime_kept(tmp_path: Path) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"default_approvers": ["alice"]}')
    source = PolicySource(path, [], "all_code")
    stamp = path.stat().st_mtime_ns
    assert source.current()[0].default_approvers == ["alice"]
    path.write_text('{"default_approvers": ["carol"]}')  # same size
    os.utime(path, ns=(stamp, stamp))  # as `cp -p` or `rsync -a` would leave it
    assert source.current()[0].default_approvers == ["carol"]
