"""The process's one Channel Access client context (pyepics / libca), and how a thread joins it.

libca keeps a *client context* per process; every thread that calls libca must be attached to it
(``ca_attach_context``), and pyepics creates it once, in :func:`epics.ca.initialize_libca`, as
``epics.ca.initial_context`` (preemptive callbacks). pyepics' documented pattern for threads is to call
``epics.ca.use_initial_context()`` at the start of each thread, or to run them as ``epics.ca.CAThread``
(pyepics docs, "Advanced Topic with Python Channel Access": "Using Python Threads";
https://pyepics.github.io/pyepics/advanced.html).

What goes wrong without care: pyepics initialises libca lazily on first use, unguarded. When several threads
make their first call at once (a worker that has just started, running many activities), each may run
``initialize_libca``, so several contexts are created, a thread is attached to the wrong one,
``use_initial_context`` then fails with ``ECA_ISATTACHED`` ("Thread is already attached to a client
context"), and libca later crashes (SIGSEGV in its timer queue thread) on channels of the orphaned contexts.

:func:`attach_thread` is the single entry: it initialises libca exactly once under a process-wide lock, then
attaches the calling thread to the initial context, once per thread (remembered in a thread-local). A thread
found attached to some *other* context is refused (:class:`CAContextError`), never re-attached silently.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Mapping
from typing import Any

from tern.control.channel_io import ChannelIOError

_init_lock = threading.Lock()
_local = threading.local()


class ChannelAccessError(ChannelIOError):
    """A channel could not be connected, read or written over Channel Access; the message names the channel.
    Nothing was written when :func:`tern.control.channel_access.write_channel` raises it."""


class CAContextError(ChannelAccessError):
    """The calling thread cannot use the process's Channel Access context (see module docstring)."""


def configure_environment(env: Mapping[str, str]) -> None:
    """Set ``EPICS_CA_*`` variables (e.g. ``TernSettings.ca_environment()``) for this process.

    libca reads them once, when the context is created; call before the first Channel Access use.
    Raises :class:`CAContextError` when libca is already initialised with different values.
    """
    import epics.ca

    with _init_lock:
        if epics.ca.libca is not None and any(os.environ.get(k) != v for k, v in env.items()):
            raise CAContextError(
                "Channel Access is already initialised in this process; its EPICS_CA_* settings can no longer "
                f"change (wanted {dict(env)})"
            )
        os.environ.update(env)


def attach_thread() -> Any:
    """Make the calling thread ready for Channel Access; return the ``epics`` module.

    Initialises libca once per process (under a lock), then attaches this thread to
    ``epics.ca.initial_context`` once per thread. Cheap when already done (a thread-local flag).
    Raises :class:`CAContextError` when libca cannot be loaded, or this thread is attached to another context.
    """
    import epics
    import epics.ca

    if getattr(_local, "attached", False):
        return epics
    with _init_lock:
        if epics.ca.libca is None or epics.ca.initial_context is None:
            try:
                epics.ca.initialize_libca()
            except epics.ca.ChannelAccessException as exc:
                raise CAContextError(f"cannot initialise Channel Access: {exc}") from exc
    initial = epics.ca.initial_context
    current = epics.ca.current_context()
    if current and current != initial:
        raise CAContextError(
            f"thread {threading.current_thread().name} is attached to another Channel Access context; "
            "run Channel Access through tern.control.ca_client.ChannelAccessClient"
        )
    if not current:
        status = epics.ca.attach_context(initial)
        if status != epics.dbr.ECA_NORMAL:
            raise CAContextError(f"ca_attach_context failed: {epics.ca.message(status)}")
    _local.attached = True
    return epics
