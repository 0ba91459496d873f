"""A Bluesky plan through the queue server: check it, submit it once, follow it to its end.

- :func:`check_plan`, before approval: the plan must be in the queue server's allowed plans for the user group
  (``plans_allowed``, from its ``user_group_permissions.yaml``) and its arguments must name allowed devices and
  fit the plan's parameters (the queue server's own ``validate_plan``, run on the lists the server gives,
  ``plans_allowed``/``devices_allowed``). The check returns what the approver is shown: the plan's description and
  parameters, and the call as it will be submitted.
- :func:`submit_once`, after approval: the item carries Tern's idempotency key in its ``meta``
  (``{"tern_key": KEY}``); before adding, the running item, the queue and the history are searched for that key,
  so an attempt that died after adding (a worker killed mid-plan) finds its item and follows it instead of adding
  a second one. The queue server's item uid is the handle from then on.
- :func:`follow`: opens the worker environment and starts the queue when needed, then polls until the item is in
  the history; returns its exit status, run uids and message (:class:`PlanOutcome`). ``beat`` is called on every
  poll (an activity heartbeats there).

API: ``bluesky_queueserver_api.zmq.aio.REManagerAPI`` (https://blueskyproject.io/bluesky-queueserver-api/).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from tern.models.bluesky import PlanCheck, PlanOutcome, PlanRequest

__all__ = ["PlanCheck", "PlanOutcome", "PlanRefused", "PlanRequest", "check_plan", "find_item", "follow", "submit_once"]

KEY_FIELD = "tern_key"
"""The ``meta`` field of a queue item that holds Tern's idempotency key."""


class PlanRefused(ValueError):
    """The plan or its arguments are not allowed by the queue server; the message names what and why."""


class BlueskyError(RuntimeError):
    """The queue server refused a request or did not answer; the message names the request."""


async def check_plan(api: Any, plan: PlanRequest, user_group: str = "primary") -> PlanCheck:
    """Check ``plan`` against the queue server's allowed plans and devices for ``user_group``.

    Raises :class:`PlanRefused` naming the plan (not allowed, unknown device, bad arguments) and
    :class:`BlueskyError` when the server does not answer."""
    from bluesky_queueserver.manager.profile_ops import validate_plan

    try:
        plans = (await api.plans_allowed(user_group=user_group))["plans_allowed"]
        devices = (await api.devices_allowed(user_group=user_group))["devices_allowed"]
    except Exception as exc:
        raise BlueskyError(f"cannot read the queue server's allowed plans and devices: {exc}") from exc
    if plan.name not in plans:
        allowed = ", ".join(sorted(plans)) or "none"
        raise PlanRefused(
            f"plan {plan.name!r} is not allowed by the queue server for group {user_group!r} (allowed: {allowed})"
        )
    ok, msg = validate_plan(
        {"name": plan.name, "args": plan.args, "kwargs": plan.kwargs},
        allowed_plans=plans,
        allowed_devices=devices,
    )
    if not ok:
        raise PlanRefused(f"plan {plan.call()} refused by the queue server's checks: {msg}")
    spec = plans[plan.name]
    unknown = _unknown_devices(spec, plan, devices)
    if unknown:
        raise PlanRefused(
            f"plan {plan.call()} names devices the queue server does not allow for group {user_group!r}: "
            f"{', '.join(unknown)} (allowed: {', '.join(sorted(devices)) or 'none'})"
        )
    return PlanCheck(
        plan=plan,
        call=plan.call(),
        description=str(spec.get("description", "")),
        parameters=[str(p.get("name")) for p in spec.get("parameters", [])],
    )


_DEVICE_TYPES = ("__READABLE__", "__MOVABLE__", "__FLYABLE__", "__DEVICE__")


def _unknown_devices(spec: dict[str, Any], plan: PlanRequest, devices: dict[str, Any]) -> list[str]:
    """Names given to device parameters that are not allowed devices. The queue server's ``validate_plan`` leaves
    an unknown name as a string, which fails only when the plan runs; here it is refused before approval. A
    parameter is a device parameter when its annotation names a device type or it converts device names."""
    params = spec.get("parameters", [])
    bound: dict[str, Any] = {p.get("name"): a for p, a in zip(params, plan.args, strict=False)}
    bound.update(plan.kwargs)
    unknown: list[str] = []
    for p in params:
        annotation = str((p.get("annotation") or {}).get("type", ""))
        if p.get("name") not in bound or not (
            p.get("convert_device_names") or any(t in annotation for t in _DEVICE_TYPES)
        ):
            continue
        value = bound[p["name"]]
        names = value if isinstance(value, list | tuple) else [value]
        unknown += [n for n in names if isinstance(n, str) and n.split(".")[0] not in devices]
    return unknown


def _key_of(item: dict[str, Any] | None) -> str | None:
    meta = (item or {}).get("meta") or {}
    return meta.get(KEY_FIELD) if isinstance(meta, dict) else None


async def find_item(api: Any, key: str) -> tuple[str, str] | None:
    """``(item_uid, where)`` of the item carrying ``key`` (``running``, ``queue`` or ``history``), or None."""
    queue = await api.queue_get()
    running = queue.get("running_item") or {}
    if _key_of(running) == key:
        return running["item_uid"], "running"
    for item in queue.get("items", []):
        if _key_of(item) == key:
            return item["item_uid"], "queue"
    for item in (await api.history_get()).get("items", []):
        if _key_of(item) == key:
            return item["item_uid"], "history"
    return None


async def submit_once(api: Any, plan: PlanRequest, key: str, user_group: str = "primary") -> tuple[str, bool]:
    """Add ``plan`` to the queue unless an item with idempotency ``key`` exists; ``(item_uid, added)``.

    Raises :class:`PlanRefused` when the server refuses the item (it validates again) and :class:`BlueskyError`
    when it does not answer."""
    from bluesky_queueserver_api import BItem

    try:
        found = await find_item(api, key)
        if found is not None:
            return found[0], False
        item = {"item_type": "plan", "name": plan.name, "args": plan.args, "kwargs": plan.kwargs}
        result = await api.item_add(BItem({**item, "meta": {KEY_FIELD: key}}), user_group=user_group)
    except Exception as exc:
        if "not in the list of allowed plans" in str(exc) or "validation" in str(exc).lower():
            raise PlanRefused(f"the queue server refused {plan.call()}: {exc}") from exc
        raise BlueskyError(f"queue server request failed: {exc}") from exc
    if not result.get("success"):
        raise PlanRefused(f"the queue server refused {plan.call()}: {result.get('msg')}")
    return str(result["item"]["item_uid"]), True


async def follow(
    api: Any, item_uid: str, beat: Callable[[], None] | None = None, poll_s: float = 0.5, open_timeout_s: float = 120.0
) -> PlanOutcome:
    """Run the queue until item ``item_uid`` is in the history, and return how it ended.

    Opens the worker environment when there is none and starts the queue when it is idle with items in it; a
    queue already running (another caller's start, or this item already running) is left alone. Raises
    :class:`BlueskyError` when the item is in neither queue nor history, or the environment does not open."""
    while True:
        if beat is not None:
            beat()
        for item in reversed((await api.history_get()).get("items", [])):
            if item.get("item_uid") == item_uid:
                result = item.get("result") or {}
                return PlanOutcome(
                    item_uid=item_uid,
                    exit_status=str(result.get("exit_status", "unknown")),
                    run_uids=[str(u) for u in result.get("run_uids", [])],
                    message=str(result.get("msg", "")),
                )
        status = await api.status()
        queue = await api.queue_get()
        running = (queue.get("running_item") or {}).get("item_uid")
        queued = [i.get("item_uid") for i in queue.get("items", [])]
        if running != item_uid and item_uid not in queued:
            raise BlueskyError(f"queue item {item_uid} is neither queued, running nor in the history")
        if status.get("manager_state") == "idle":
            if not status.get("worker_environment_exists"):
                await api.environment_open()
                await api.wait_for_idle(timeout=open_timeout_s)
                if not (await api.status()).get("worker_environment_exists"):
                    raise BlueskyError("the queue server's worker environment did not open (see its log)")
                continue
            if item_uid in queued:
                try:
                    await api.queue_start()
                except Exception as exc:  # started meanwhile by another caller: follow on
                    if "idle" not in str(exc).lower():
                        raise BlueskyError(f"queue_start failed: {exc}") from exc
        await asyncio.sleep(poll_s)
