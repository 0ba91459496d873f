"""The decision sender every chat bridge and the webhook API share: ``TernClient.decide`` behind the
:data:`tern.chat.bridge.Decider` signature."""

from __future__ import annotations

from starters.client import TernClient, TernUnavailable, TernUserError
from tern.chat.bridge import Decider, DecisionRefused


def client_decider(client: TernClient, *, surface: str) -> Decider:
    """A :data:`tern.chat.bridge.Decider` sending through ``client.decide`` with ``expected_request`` (a stale
    card or URL is refused before anything is sent) and ``surface`` in the audit; refusals and an unreachable
    worker become :class:`tern.chat.bridge.DecisionRefused` with the reason."""

    async def decide(run_id: str, request_id: str, approver: str, approved: bool, comment: str) -> str:
        try:
            rec = await client.decide(run_id, approver, approved, comment, surface=surface, expected_request=request_id)
        except (TernUserError, TernUnavailable) as exc:
            raise DecisionRefused(str(exc)) from exc
        who = ", ".join(rec.approved_by) or rec.approver
        return f"**{rec.decision}** by {who} (request `{rec.request_id}`); recorded in the audit"

    return decide
