"""Which protocol a channel address speaks: Channel Access (the default) or PVAccess.

An address is ``pva://NAME`` (PVAccess, EPICS 7), ``ca://NAME`` (Channel Access, explicit) or a bare ``NAME``
(Channel Access, as before; unless the limits database gives that channel ``"protocol": "pva"``). The limits
database is keyed by the bare name, so ``pva://X:SP`` and ``X:SP`` share one entry: one set of rules per device,
whatever protocol reaches it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

Protocol = Literal["ca", "pva"]
SCHEMES: dict[str, Protocol] = {"pva://": "pva", "ca://": "ca"}


class ChannelAddressError(ValueError):
    """An address that names no channel (empty after its scheme, or an unknown ``scheme://``)."""


@dataclass(frozen=True)
class ChannelAddress:
    """A parsed address: ``protocol`` (``ca`` or ``pva``) and the channel's bare ``name``."""

    protocol: Protocol
    name: str

    def __str__(self) -> str:
        return f"pva://{self.name}" if self.protocol == "pva" else self.name


def parse_address(address: str, default: Protocol = "ca") -> ChannelAddress:
    """Split ``address`` into protocol and bare name.

    Args:
        address: ``pva://NAME``, ``ca://NAME`` or ``NAME``.
        default: the protocol of a bare name (the limits database's ``protocol`` field, else ``ca``).

    Raises :class:`ChannelAddressError` for an empty name or a ``scheme://`` other than ``pva`` and ``ca``.
    """
    text = address.strip()
    for scheme, protocol in SCHEMES.items():
        if text.lower().startswith(scheme):
            name = text[len(scheme) :]
            if not name:
                raise ChannelAddressError(f"channel address {address!r} names no channel after {scheme}")
            return ChannelAddress(protocol, name)
    if "://" in text:
        raise ChannelAddressError(
            f"channel address {address!r} has an unknown scheme: use pva://NAME, ca://NAME or a bare NAME"
        )
    if not text:
        raise ChannelAddressError("empty channel address")
    return ChannelAddress(default, text)


def bare_name(address: str) -> str:
    """The channel name without its scheme (``pva://X:SP`` -> ``X:SP``); the key of the limits database."""
    return parse_address(address).name
