"""Which target addresses jobs may not call unless private networks are allowed."""

from __future__ import annotations

import ipaddress
import socket

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


def is_private(address: str) -> bool:
    """Loopback, private, unique-local, link-local (cloud metadata), shared, multicast,
    reserved or unspecified: anything but a global unicast address."""
    ip = ipaddress.ip_address(address)
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return bool(ip.is_private or ip.is_loopback or ip.is_link_local or ip.is_multicast
                or ip.is_reserved or ip.is_unspecified or not ip.is_global)


def literal_address(host: str) -> IPAddress | None:
    """The address a URI's host is written as, in any spelling a resolver reads as one
    (`127.0.0.1`, `127.1`, `0x7f.1`, `0177.0.0.1`, `2130706433`, `::1`, `::ffff:7f00:1`);
    None for a name."""
    if ":" in host:
        try:
            return ipaddress.IPv6Address(host)
        except ValueError:
            return None
    if not host or not host[0].isdigit():
        return None  # a name: resolvers read only what starts as a number as an address
    try:
        return ipaddress.IPv4Address(socket.inet_aton(host))
    except (OSError, ValueError):
        return None


def is_private_literal(host: str) -> bool:
    """Whether the host is written as an address that jobs may not call."""
    address = literal_address(host)
    return address is not None and is_private(str(address))
