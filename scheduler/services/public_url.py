"""The service's own URL: the base of every link it writes, of the callback URLs its engines
give targets, and the only `Origin` its API answers."""

from __future__ import annotations

from scheduler.security import pki
from scheduler.settings import Settings, SettingsError

# Hosts that bind every address: they are no name a client can reach the service by.
WILDCARD_HOSTS = frozenset({"", "0.0.0.0", "::", "[::]"})
DEFAULT_PORTS = {"https": 443, "http": 80}


def public_url(settings: Settings) -> str:
    """`server.public_url` without its trailing slash, or else https://HOST:PORT as served;
    bound to every address, HOST is the first name the server certificate is made for."""
    server = settings.server
    if server.public_url:
        return server.public_url.rstrip("/")
    host = server.host
    if host in WILDCARD_HOSTS:
        host = certificate_host(settings)
    if ":" in host and not host.startswith("["):  # an IPv6 address
        host = f"[{host}]"
    port = "" if server.port == DEFAULT_PORTS["https"] else f":{server.port}"
    return f"https://{host}{port}"


def certificate_host(settings: Settings) -> str:
    """The first name the server certificate is made for (`localhost` for `init`'s)."""
    path = settings.path(settings.server.cert_file)
    try:
        names = pki.host_names(pki.load_certificate(path.read_bytes()))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"server.public_url is not set, and the server certificate "
                            f"{path} does not tell the host's name ({exc}): set "
                            "server.public_url") from None
    if not names:
        raise SettingsError(f"server.public_url is not set, and the server certificate "
                            f"{path} names no host: set server.public_url")
    return names[0]
