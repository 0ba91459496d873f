"""One channel interface over two protocols: Channel Access and PVAccess, chosen per address.

:class:`ChannelRouter` has the methods the write protocol and the read step use (``read_value``,
``read_channels``, ``write_channel``; :class:`tern.control.channel_io.ChannelIO`) and hands each call to the client of
the channel's protocol (:meth:`tern.control.limits.LimitsDatabase.protocol`: ``pva://NAME``, ``ca://NAME``, or a bare
name whose limits entry says ``"protocol": "pva"``; otherwise Channel Access). The clients keep their own concurrency
bounds and guarantees (the CA client's attached thread pool; the PVA client's pool and one p4p context). Addresses
pass through unchanged to the caller's records: a ``pva://`` channel is read, written, audited and reported as
``pva://NAME``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Unpack

from tern.control.addressing import Protocol, parse_address
from tern.control.channel_io import WriteOptions
from tern.control.limits import LimitsDatabase, LimitsDatabaseError
from tern.models import ChannelReading, Verification, WriteRecord


class ChannelRouter:
    """Routes channel operations to the Channel Access or the PVAccess client.

    Args:
        ca: returns the Channel Access client (called on first CA use: creating it may start libca).
        pva: returns the PVAccess client (called on first PVA use).
        limits: returns the limits database (its ``protocol`` fields decide bare names), or raises
            :class:`~tern.control.limits.LimitsDatabaseError`; then bare names are Channel Access.
    """

    def __init__(self, ca: Callable[[], Any], pva: Callable[[], Any], limits: Callable[[], LimitsDatabase]) -> None:
        self._ca = ca
        self._pva = pva
        self._limits = limits

    def route(self, address: str) -> tuple[Protocol, str]:
        """``(protocol, name for that client)``: PVAccess gets the bare name, Channel Access the name as given
        (without ``ca://``). Raises :class:`~tern.control.addressing.ChannelAddressError` for an unknown scheme."""
        if "://" in address:
            parsed = parse_address(address)
            return parsed.protocol, parsed.name
        try:
            protocol = self._limits().protocol(address)
        except LimitsDatabaseError:
            protocol = "ca"
        return protocol, address

    def _client(self, protocol: Protocol) -> Any:
        return self._pva() if protocol == "pva" else self._ca()

    async def read_value(self, name: str, timeout_s: float = 2.0) -> float:
        """The channel's current numeric value (raises the protocol's ``ChannelIOError`` subclass)."""
        protocol, bare = self.route(name)
        return float(await self._client(protocol).read_value(bare, timeout_s))

    async def read_channels(self, names: list[str], timeout_s: float = 2.0) -> list[ChannelReading]:
        """Read channels of either protocol at once; readings in the order of ``names``, each named as given."""
        groups: dict[Protocol, list[str]] = {}  # unique bare names per protocol (a name may come twice)
        routes = [self.route(name) for name in names]
        for protocol, bare in routes:
            if bare not in groups.setdefault(protocol, []):
                groups[protocol].append(bare)
        results = await asyncio.gather(
            *(self._client(p).read_channels(bares, timeout_s) for p, bares in groups.items())
        )
        found: dict[tuple[Protocol, str], ChannelReading] = {}
        for (protocol, bares), readings in zip(groups.items(), results, strict=True):
            for bare, reading in zip(bares, readings, strict=True):
                found[(protocol, bare)] = reading
        return [found[route].model_copy(update={"channel": name}) for name, route in zip(names, routes, strict=True)]

    async def write_channel(
        self, name: str, value: float, verification: Verification, **kwargs: Unpack[WriteOptions]
    ) -> WriteRecord:
        """Put and verify through the channel's protocol (same arguments, errors and record as
        :func:`tern.control.channel_access.write_channel`); the record is named as given."""
        protocol, bare = self.route(name)
        record: WriteRecord = await self._client(protocol).write_channel(bare, value, verification, **kwargs)
        record.channel = name
        return record
