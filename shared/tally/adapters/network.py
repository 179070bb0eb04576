"""Name resolution: the addresses a host name has now (GET /v1/services)."""

from __future__ import annotations

import ipaddress
import socket


def addresses_of(host: str) -> tuple[str, ...]:
    """The host's IPv4 and IPv6 addresses, sorted; an address is its own answer. OSError if it
    does not resolve."""
    try:
        return (str(ipaddress.ip_address(host)),)
    except ValueError:
        pass
    found = {info[4][0] for info in socket.getaddrinfo(host, 443, proto=socket.IPPROTO_TCP)}
    return tuple(sorted(found, key=lambda a: (ipaddress.ip_address(a).version, ipaddress.ip_address(a))))
