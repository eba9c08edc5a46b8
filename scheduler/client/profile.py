"""Where the client connects: flags, then `SCHEDULER_CLIENT_*` variables, then a profile file."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

from scheduler.client.errors import InputError
from scheduler.client.names import check_name
from scheduler.settings import (
    CLIENT_ENV_PREFIX,
    CLIENT_PROFILE_FILE,
    ClientProfile,
    load_client_profile,
)

KEYS = ("url", "subscription", "cert", "ca", "cloud_service", "collection")
REQUIRED = ("url", "subscription", "cert")
# The settings that go into a URL's path, and what each names.
PATH_KEYS = {"subscription": "subscription id", "cloud_service": "cloud service name",
             "collection": "job collection name"}

PROFILE_TEMPLATE = """\
# The profile of the command-line client (`scheduler jobs ...`, `scheduler collections ...`),
# written by `scheduler init`: where this home's service listens and how to log in to it.
# Flags (--url, --cert, ...) and SCHEDULER_CLIENT_* variables override each key.
url = {url}
subscription = {subscription}
cert = {cert}   # the admin client certificate and its key, one PEM
ca = {ca}       # the CA that signed the server's certificate
# cloud_service = "cs1"   # default for --cloud-service
# collection = "jc1"      # default for --collection
"""


@dataclass(frozen=True)
class Connection:
    """Everything the client needs to reach one subscription, and where it was read."""

    url: str
    subscription: str
    cert: Path
    ca: Path | None
    cloud_service: str | None = None
    collection: str | None = None
    profile: Path | None = None

    def need_cloud_service(self) -> str:
        """The cloud service, or an error naming how to give one."""
        if not self.cloud_service:
            raise InputError(_missing("cloud_service", self.profile))
        return self.cloud_service

    def need_collection(self) -> tuple[str, str]:
        """The cloud service and job collection, or an error naming how to give them."""
        cloud_service = self.need_cloud_service()
        if not self.collection:
            raise InputError(_missing("collection", self.profile))
        return cloud_service, self.collection


def home_profile(home: Path) -> Path:
    """The profile file of a home, which `scheduler init` writes."""
    return home / CLIENT_PROFILE_FILE


def profile_text(url: str, subscription: str, cert: Path, ca: Path) -> str:
    """The profile `scheduler init` writes into a home."""
    # A TOML basic string takes JSON's escapes.
    return PROFILE_TEMPLATE.format(url=json.dumps(url), subscription=json.dumps(subscription),
                                   cert=json.dumps(str(cert)), ca=json.dumps(str(ca)))


def env_name(key: str) -> str:
    """`cloud_service` -> `SCHEDULER_CLIENT_CLOUD_SERVICE`."""
    return CLIENT_ENV_PREFIX + key.upper()


def flag_name(key: str) -> str:
    """`cloud_service` -> `--cloud-service`."""
    return "--" + key.replace("_", "-")


def find_profile(flags: Mapping[str, str | None], env: Mapping[str, str],
                 default_home: Path | None) -> Path | None:
    """The profile to read: --profile, SCHEDULER_CLIENT_PROFILE, --home DIR, SCHEDULER_HOME.

    A profile named by the first three must exist; the one of SCHEDULER_HOME is read only if
    it does, as that variable also serves the server's commands.
    """
    named = flags.get("profile") or env.get(env_name("profile"))
    if named:
        return Path(named).expanduser()
    home = flags.get("home")
    if home:
        return Path(home).expanduser() / CLIENT_PROFILE_FILE
    if default_home is not None and (default_home / CLIENT_PROFILE_FILE).is_file():
        return default_home / CLIENT_PROFILE_FILE
    return None


def resolve_connection(flags: Mapping[str, str | None], env: Mapping[str, str],
                       default_home: Path | None) -> Connection:
    """Each setting from the first of: its flag, its variable, the profile."""
    path = find_profile(flags, env, default_home)
    profile = load_client_profile(path) if path is not None else ClientProfile()
    sources = {key: _source(key, flags, env, path) for key in KEYS}
    values: dict[str, str | None] = {
        key: flags.get(key) or env.get(env_name(key)) or getattr(profile, key)
        for key in KEYS
    }
    for key in REQUIRED:
        if not values[key]:
            raise InputError(_missing(key, path))
    for key, what in PATH_KEYS.items():
        if values[key]:
            check_name(str(values[key]), sources[key], what)
    url = service_url(str(values["url"]), sources["url"])
    ca = values["ca"]
    return Connection(
        url=url, subscription=str(values["subscription"]),
        cert=Path(str(values["cert"])).expanduser(),
        ca=Path(ca).expanduser() if ca else None,
        cloud_service=values["cloud_service"], collection=values["collection"], profile=path,
    )


def service_url(value: str, source: str) -> str:
    """The service's URL without a trailing slash, or an error naming where it came from."""
    url = value.rstrip("/")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018  (reading it checks it)
    except ValueError as exc:
        raise InputError(f"{source}: the service URL {value!r} cannot be used: {exc}") from None
    if parts.scheme.lower() != "https" or not parts.hostname:
        raise InputError(f"{source}: the service URL must be https://HOST[:PORT], "
                         f"not {value!r}")
    if parts.query or parts.fragment or not url.isprintable():
        raise InputError(f"{source}: the service URL {value!r} cannot hold a query, a "
                         "fragment or control characters")
    return url


def _source(key: str, flags: Mapping[str, str | None], env: Mapping[str, str],
            profile: Path | None) -> str:
    """Where a setting is read from, for messages: its flag, its variable, or the profile."""
    if flags.get(key):
        return flag_name(key)
    if env.get(env_name(key)):
        return env_name(key)
    return f"{key} in {profile}"


def _missing(key: str, profile: Path | None) -> str:
    where = (f"the profile {profile} has none" if profile is not None else
             f"no profile was found (--profile FILE, {env_name('profile')}, "
             f"--home DIR or SCHEDULER_HOME holding {CLIENT_PROFILE_FILE})")
    return (f"no {key.replace('_', ' ')} given: use {flag_name(key)}, set {env_name(key)}, "
            f"or put {key} in a profile; {where}")
