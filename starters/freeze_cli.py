"""``tern freeze`` / ``tern thaw``: the facility write freeze (``workflows/facility_freeze.py``).

``tern freeze --reason "beam-loss investigation"`` holds every control write in the namespace: a run that reaches
a write waits (its approval kept, its write-by deadline paused) and new requests still get approval.
``tern thaw --reason "..."`` releases them (each once). ``tern freeze --status`` shows the state. ``--json`` prints
the :class:`~tern.models.freeze.FreezeState`. With proven identity both are signed like decisions (``--key``, or the
``tern login`` token) and the approval policy's ``freeze_thaw`` says who may thaw. Exit 2 for bad input or a
refused change (already frozen, not frozen, proof or permission), 1 when Temporal or a worker does not answer.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from starters.common import console, fail, load_settings, print_json, run_async

if TYPE_CHECKING:
    from tern.models.freeze import FreezeAction, FreezeState

out = console()

Reason = Annotated[str | None, typer.Option("--reason", help="Why (1 to 500 characters; audited).")]
AsUser = Annotated[str | None, typer.Option("--as", help="Who (default: you, or the --key's principal).")]
AsJson = Annotated[bool, typer.Option("--json", help="Print the freeze state as JSON.")]
Key = Annotated[Path | None, typer.Option("--key", help="Sign with this SSH key (proven identity).")]


def _print(st: FreezeState, as_json: bool) -> None:
    if as_json:
        print_json(st.model_dump(mode="json"))
        return
    out.print(st.describe(), markup=False, highlight=False)
    for h in st.held:
        out.print(
            f"  held: run {h.workflow_id} step {h.step_id}: {h.channel} = {h.value:g} since {h.held_at:%H:%M:%S} UTC"
        )


def _change(action: FreezeAction, reason: str | None, who: str | None, key: Path | None, as_json: bool) -> None:
    from starters.client import TernClient, TernUserError, check_user_name
    from starters.proofs import cli_signer
    from tern.models.freeze import MAX_REASON_CHARS

    if reason is None or not reason.strip():
        fail(f"tern {action} needs --reason TEXT (why; it is audited)")
    if len(reason) > MAX_REASON_CHARS:
        fail(f"--reason has {len(reason)} characters; the limit is {MAX_REASON_CHARS}")
    s = load_settings()
    name, signer = cli_signer(s, key=key, declared=who, option="--as")
    try:
        by = check_user_name(name, "--as")
    except TernUserError as exc:
        fail(str(exc))

    async def go() -> FreezeState:
        return await (await TernClient.connect(s)).change_freeze(action, by, reason, signer=signer)

    _print(run_async(go()), as_json)


def freeze(
    reason: Reason = None,
    as_user: AsUser = None,
    key: Key = None,
    status: Annotated[bool, typer.Option("--status", help="Only show whether writes are frozen.")] = False,
    as_json: AsJson = False,
) -> None:
    """Freeze every control write in the namespace until `tern thaw` (runs keep going; writes wait)."""
    if status:
        from starters.client import TernClient

        s = load_settings()

        async def go() -> FreezeState:
            return await (await TernClient.connect(s)).freeze_state()

        _print(run_async(go()), as_json)
        return
    _change("freeze", reason, as_user, key, as_json)


def thaw(reason: Reason = None, as_user: AsUser = None, key: Key = None, as_json: AsJson = False) -> None:
    """Thaw the write freeze: every held write goes on (once), in its own run."""
    _change("thaw", reason, as_user, key, as_json)
