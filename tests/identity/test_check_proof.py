"""check_proof with real SSH signatures (ssh-keygen -Y): each refusal names its reason; single use in PostgreSQL."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import asyncpg
import pytest

from tern.approval.policy import ApprovalPolicy, ApprovalPolicyError, load_policy
from tern.db import migrate
from tern.identity.prove import decision_statement, principal_of_key, ssh_proof, start_statement
from tern.identity.statement import canonical, make_statement, request_digest, short_digest
from tern.identity.uses import claim_use
from tern.identity.verify import check_proof
from tern.models import AgentRunRequest
from tern.models.approval import ApprovalRequest
from tern.models.control import LimitsCheck
from tern.models.identity import Principal, Proof, ProofCheckInput
from tests.identity.keys import public

WF = "tern-run-identity"


def request(value: float = 499.6544, request_id: str = "req-a") -> ApprovalRequest:
    now = datetime.now(UTC)
    return ApprovalRequest(
        request_id=request_id,
        kind="control_write",
        step_id="write",
        summary="write",
        requested_by="alice",
        approvers=["bob"],
        requested_at=now,
        expires_at=now + timedelta(hours=1),
        write=LimitsCheck(channel="SR:MAG:QF:01:CURRENT:SP", value=value, allowed=True, current_value=1.0, units="A"),
    )


def principals(keys: dict[str, Path]) -> dict[str, Principal]:
    return {
        "alice": Principal(ssh_keys=[public(keys["alice"])]),
        "bob": Principal(ssh_keys=[public(keys["bob"])]),
        "matrix-bridge": Principal(
            kind="service", ssh_keys=[public(keys["matrix-bridge"])], users=["bob"], surfaces=["matrix"]
        ),
    }


def expect(req: ApprovalRequest, proof: Proof | None, declared: str = "bob", approved: bool = True) -> ProofCheckInput:
    return ProofCheckInput(
        proof=proof,
        purpose="decision",
        workflow_id=WF,
        request_id=req.request_id,
        action="approve" if approved else "reject",
        digest=request_digest(req),
        declared=declared,
        use_key="u1",
    )


def check(keys: dict[str, Path], inp: ProofCheckInput, mode: str = "proven"):  # type: ignore[no-untyped-def]
    return check_proof(inp, mode=mode, principals=principals(keys), now=datetime.now(UTC))  # type: ignore[arg-type]


def test_a_signed_decision_counts_as_its_signer(keys: dict[str, Path]) -> None:
    req = request()
    proof = ssh_proof(decision_statement(WF, req, True, "bob"), keys["bob"])
    got = check(keys, expect(req, proof))
    assert got.ok and got.principal == "bob" and got.signer_kind == "person" and got.key.startswith("SHA256:")
    assert got.audit_details()["proof"]["statement_sha256"] == got.statement_sha256  # type: ignore[index]


def test_refusals_name_what_is_wrong(keys: dict[str, Path]) -> None:
    req = request()
    other = request(request_id="req-b")
    good = ssh_proof(decision_statement(WF, req, True, "bob"), keys["bob"])
    cases = {
        "a proof of identity is required": expect(req, None),
        "the proof is for request_id 'req-a'": expect(other, good),  # a proof for A never decides B
        "the proof is for action 'approve'": expect(req, good, approved=False),
        "content digest": expect(request(value=499.6545), good),  # a different value than the one signed
        "declared as 'alice' but the proof stands for 'bob'": expect(req, good, declared="alice"),
        "does not verify for bob": expect(
            req, ssh_proof(decision_statement(WF, req, True, "bob"), keys["mallory"])
        ),  # bob's name, another key
        "'mallory' is not a principal": expect(
            req, ssh_proof(decision_statement(WF, req, True, "mallory"), keys["mallory"]), declared="mallory"
        ),
    }
    for reason, inp in cases.items():
        got = check(keys, inp)
        assert not got.ok and reason in got.reason, (reason, got.reason)


def test_expired_future_and_non_canonical_statements_are_refused(keys: dict[str, Path]) -> None:
    req = request()
    base = dict(purpose="decision", workflow_id=WF, request_id=req.request_id, action="approve")
    old = make_statement(**base, digest=request_digest(req), signer="bob", now=datetime.now(UTC) - timedelta(hours=1))
    assert "expired" in check(keys, expect(req, ssh_proof(old, keys["bob"]))).reason  # type: ignore[arg-type]
    future = make_statement(
        **base, digest=request_digest(req), signer="bob", now=datetime.now(UTC) + timedelta(hours=1)
    )
    assert "future" in check(keys, expect(req, ssh_proof(future, keys["bob"]))).reason  # type: ignore[arg-type]
    good = ssh_proof(decision_statement(WF, req, True, "bob"), keys["bob"])
    spaced = good.model_copy(update={"statement": good.statement.replace(",", ", ")})
    assert "canonical" in check(keys, expect(req, spaced)).reason


def test_a_decision_signature_cannot_start_a_run(keys: dict[str, Path]) -> None:
    run = AgentRunRequest(user="bob", query="q")
    st = start_statement(WF, run, "bob")
    # signed in the decision namespace instead of tern-start: ssh-keygen refuses the namespace
    forged = Proof(scheme="ssh", statement=canonical(st), signature=ssh_proof(st, keys["bob"]).signature)
    from tern.identity.statement import start_digest

    inp = ProofCheckInput(
        proof=forged,
        purpose="start",
        workflow_id=WF,
        action="start",
        digest=start_digest(run),
        declared="bob",
        use_key="s",
    )
    assert check(keys, inp).ok
    st2 = st.model_copy(update={"purpose": "decision"})
    wrong_ns = Proof(scheme="ssh", statement=canonical(st), signature=ssh_proof(st2, keys["bob"]).signature)
    got = check(keys, inp.model_copy(update={"proof": wrong_ns}))
    assert not got.ok and "does not verify" in got.reason


def test_a_service_vouches_only_for_its_users_and_surfaces(keys: dict[str, Path]) -> None:
    req = request()
    ok = ssh_proof(
        decision_statement(WF, req, True, "matrix-bridge", surface="matrix", on_behalf_of="bob"), keys["matrix-bridge"]
    )
    got = check(keys, expect(req, ok))
    assert got.ok and got.principal == "bob" and got.signer == "matrix-bridge" and got.signer_kind == "service"
    alice = ssh_proof(
        decision_statement(WF, req, True, "matrix-bridge", surface="matrix", on_behalf_of="alice"),
        keys["matrix-bridge"],
    )
    assert "may not act for 'alice'" in check(keys, expect(req, alice, declared="alice")).reason
    slack = ssh_proof(
        decision_statement(WF, req, True, "matrix-bridge", surface="slack", on_behalf_of="bob"), keys["matrix-bridge"]
    )
    assert "may not speak for surface 'slack'" in check(keys, expect(req, slack)).reason
    person_for_other = ssh_proof(decision_statement(WF, req, True, "alice", on_behalf_of="bob"), keys["alice"])
    assert "may sign only for themself" in check(keys, expect(req, person_for_other)).reason


def test_declared_mode_takes_the_name_but_still_checks_a_proof(keys: dict[str, Path]) -> None:
    req = request()
    assert check(keys, expect(req, None, declared="anyone"), mode="declared").principal == "anyone"
    bad = ssh_proof(decision_statement(WF, req, True, "bob"), keys["mallory"])
    assert not check(keys, expect(req, bad), mode="declared").ok


def test_digest_binds_the_exact_value_and_has_a_short_form() -> None:
    a, b = request(499.6544), request(499.654)
    assert request_digest(a) != request_digest(b)
    assert len(short_digest(request_digest(a))) == 14 and short_digest(request_digest(a)).count("-") == 2


def test_policy_principals_are_validated(tmp_path: Path, keys: dict[str, Path]) -> None:
    good = tmp_path / "p.toml"
    good.write_text(f'identity = "proven"\n[principals.bob]\nssh_keys = ["{public(keys["bob"])}"]\n')
    policy, _ = load_policy(good)
    assert policy.identity == "proven" and principal_of_key(policy.principals, keys["bob"]) == "bob"
    assert principal_of_key(policy.principals, keys["alice"]) is None
    bad = tmp_path / "bad.toml"
    bad.write_text('[principals.bob]\nssh_keys = ["not a key"]\n')
    with pytest.raises(ApprovalPolicyError, match=r"principals\.bob\.ssh_keys\[1\]"):
        load_policy(bad)
    with pytest.raises(ValueError, match="service principal needs ssh_keys"):
        ApprovalPolicy.model_validate({"principals": {"svc": {"kind": "service"}}})


async def test_a_statement_is_used_once(pg_dsn: str) -> None:
    conn = await asyncpg.connect(pg_dsn)
    try:
        await migrate(conn)
        assert await claim_use(conn, "s" * 64, "use-1", workflow_id=WF, request_id="r", principal="bob")
        assert await claim_use(conn, "s" * 64, "use-1", workflow_id=WF, request_id="r", principal="bob")  # a retry
        assert not await claim_use(conn, "s" * 64, "use-2", workflow_id=WF, request_id="r", principal="bob")
    finally:
        await conn.close()


def test_an_oidc_proof_counts_as_the_token_s_user(keys: dict[str, Path], oidc_issuer) -> None:  # type: ignore[no-untyped-def]
    from tern.config_sections import OidcSettings
    from tern.identity.oidc import verifier_for
    from tern.identity.prove import Signer

    verify = verifier_for(OidcSettings(issuer=oidc_issuer.url, client_id=oidc_issuer.client_id))
    req = request()
    people = {**principals(keys), "carol": Principal()}  # carol proves herself by sign-on only
    proof = Signer(name="carol", id_token=oidc_issuer.id_token("carol")).decide(WF, req, True)
    got = check_proof(
        expect(req, proof, declared="carol"),
        mode="proven",
        principals=people,
        now=datetime.now(UTC),
        oidc_verify=verify,
    )
    assert got.ok and got.principal == "carol" and got.scheme == "oidc" and got.key.startswith("oidc:")
    as_bob = Signer(name="bob", id_token=oidc_issuer.id_token("carol")).decide(WF, req, True)  # carol's token
    got = check_proof(expect(req, as_bob), mode="proven", principals=people, now=datetime.now(UTC), oidc_verify=verify)
    assert not got.ok and "names 'carol', not 'bob'" in got.reason
    forged = Signer(name="carol", id_token=oidc_issuer.id_token("carol", iss="https://evil.example")).decide(
        WF, req, True
    )
    got = check_proof(
        expect(req, forged, declared="carol"),
        mode="proven",
        principals=people,
        now=datetime.now(UTC),
        oidc_verify=verify,
    )
    assert not got.ok and "does not verify" in got.reason
    no_oidc = check_proof(expect(req, proof, declared="carol"), mode="proven", principals=people, now=datetime.now(UTC))
    assert not no_oidc.ok and "no OIDC issuer is configured" in no_oidc.reason
