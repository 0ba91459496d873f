"""The seccomp profile's content (its effect on real containers is tested in test_deadline.py and by every
Docker sandbox test, which run numpy, scipy, pandas and matplotlib under it)."""

from __future__ import annotations

import json

import pytest

from tern.sandbox.seccomp import ALLOWED, DENIED, profile, profile_json


@pytest.mark.parametrize(
    "name",
    ["ptrace", "process_vm_readv", "process_vm_writev", "personality", "keyctl", "add_key", "request_key",
     "unshare", "setns", "mount", "umount2", "pivot_root", "bpf", "perf_event_open", "userfaultfd", "kexec_load",
     "kexec_file_load", "init_module", "finit_module", "io_uring_setup", "clone3"],
)  # fmt: skip
def test_the_seccomp_profile_denies(name: str) -> None:
    """The allow-list never contains these (the profile denies what it does not list)."""
    assert name in DENIED and name not in ALLOWED
    allowed_by_rules = {
        n for rule in profile()["syscalls"] if rule["action"] == "SCMP_ACT_ALLOW" for n in rule["names"]
    }
    assert name not in allowed_by_rules


def test_the_profile_is_an_allow_list_in_dockers_format() -> None:
    doc = json.loads(profile_json())
    assert doc["defaultAction"] == "SCMP_ACT_ERRNO" and doc["defaultErrnoRet"] == 1  # EPERM
    assert not set(ALLOWED) & set(DENIED)
    assert len(ALLOWED) == len(set(ALLOWED))
    [clone] = [r for r in doc["syscalls"] if r["names"] == ["clone"]]
    assert clone["args"] == [{"index": 0, "value": 0x7E020000, "valueTwo": 0, "op": "SCMP_CMP_MASKED_EQ"}]
