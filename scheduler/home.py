"""A home's files: the config `init` writes, the port `serve` records in it and in the
client's profile, and the server certificate `cert server` renews.

Files are replaced whole and at once (`write_atomically`), so that a process reading one
meanwhile (a running serve, a client) sees the old file or the new one; a file a person
edits is changed one line at a time, keeping their comments, and checked by reading it back.
"""

from __future__ import annotations

import json
import os
import re
import tempfile
import tomllib
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from cryptography import x509

from scheduler.security import pki
from scheduler.settings import (
    CLIENT_PROFILE_FILE,
    CONFIG_FILE,
    SecuritySettings,
    ServerSettings,
    Settings,
)

# A table's header line, `[server]`; an array of tables (`[[...]]`) is no table of ours.
TABLE_HEADER = re.compile(r"\s*\[\s*([A-Za-z0-9_.-]+)\s*\]\s*(#.*)?")
PORT_LINE = re.compile(r"(\s*port\s*=\s*)([^\s#]+)(.*)")
URL_LINE = re.compile(r"""(\s*url\s*=\s*)("(?:[^"\\]|\\.)*"|'[^']*')(.*)""")


def write_atomically(path: Path, data: bytes, mode: int) -> None:
    """Replace `path` with `data` at once: a reader sees the old file or the new one, never
    a part of it. The new file has `mode` from its first byte."""
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")
    try:
        os.fchmod(descriptor, mode)
        with os.fdopen(descriptor, "wb") as file:
            file.write(data)
            file.flush()
            os.fsync(file.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


# --- the config ----------------------------------------------------------------------------

CONFIG_TEMPLATE = """\
# scheduler configuration. Every key can be overridden by an environment variable
# SCHEDULER_<SECTION>_<KEY>, e.g. SCHEDULER_SERVER_PORT=9443 or SCHEDULER_DATABASE_URL=...

[server]
host = "127.0.0.1"
port = {port}                    # `scheduler serve --port P` records the port it serves on here
{server_files}# workers = 2
# threads = 32
# trusted_proxies = []          # addresses allowed to pass the client certificate in a header
# client_cert_header = "X-ARR-ClientCert"

[database]
{database_url}
{security}
[outbound]
allow_private_networks = false
# max_timeout = "PT30M"         # the longest a job may let one attempt take

[logging]
format = "text"                 # or "json": one object per line, for log shippers
level = "info"                  # info: a line per request and per failed attempt

[metrics]
# Prometheus metrics over plain HTTP, off unless a port is set:
# port = 9464
# host = "127.0.0.1"

# Plans default to Azure's; an operator may change any limit:
# [plans.Standard]
# max_job_count = 50
# max_recurrence = "PT1M"
"""


# What `init` makes, by the names the settings default to.
ADMIN_FILE = SecuritySettings.admin_cert_file
CA_FILE, CA_KEY_FILE = ServerSettings.ca_file, SecuritySettings.ca_key_file
SERVER_FILE, SERVER_KEY_FILE = ServerSettings.cert_file, ServerSettings.key_file
CERT_FILES = (CA_FILE, CA_KEY_FILE, SERVER_FILE, SERVER_KEY_FILE, ADMIN_FILE)


def config_text(database_url: str | None, certs_dir: Path | None = None,
                port: int = ServerSettings.port) -> str:
    """The config file `init` writes, naming the database and the certificates' directory
    when they were given, and the port."""
    # A TOML basic string takes JSON's escapes.
    database = (f"url = {json.dumps(database_url)}" if database_url is not None else
                '# url = "postgresql+psycopg://user@127.0.0.1:5432/scheduler"   '
                "(default: SQLite in this home)")
    server_files = security = ""
    if certs_dir is not None:
        where = certs_dir.resolve()
        server_files = "".join(f"{key} = {json.dumps(str(where / name))}\n" for key, name in (
            ("cert_file", SERVER_FILE), ("key_file", SERVER_KEY_FILE), ("ca_file", CA_FILE)))
        security = "\n[security]\n" + "".join(
            f"{key} = {json.dumps(str(where / name))}\n"
            for key, name in (("ca_key_file", CA_KEY_FILE), ("admin_cert_file", ADMIN_FILE)))
    return CONFIG_TEMPLATE.format(server_files=server_files, database_url=database,
                                  security=security, port=port)


# --- the port ------------------------------------------------------------------------------

def config_with_port(text: str, port: int) -> str:
    """A config's text with `[server] port` set to `port`, all else (comments too) kept."""
    lines = text.splitlines(keepends=True)
    table: str | None = ""
    header_at: int | None = None
    for index, line in enumerate(lines):
        header = TABLE_HEADER.fullmatch(line.rstrip("\r\n"))
        if header or line.lstrip().startswith("["):
            table = header.group(1) if header else None
            header_at = index if table == "server" else header_at
            continue
        key = PORT_LINE.fullmatch(line.rstrip("\r\n"))
        if table == "server" and key:
            lines[index] = f"{key.group(1)}{port}{key.group(3)}{_ending(line)}"
            break
    else:
        if header_at is None:
            lines.append(f"{_ending_of_last(lines)}\n[server]\nport = {port}\n")
        else:
            lines.insert(header_at + 1, f"port = {port}\n")
    edited = "".join(lines)
    _check_edit(text, edited, lambda document: document.setdefault("server", {}).update(
        port=port), "server.port")
    return edited


def profile_with_port(text: str, port: int, hosts: set[str]) -> str:
    """A client profile's text with its URL's port set to `port`, if the URL names one of
    `hosts` (this server's); a URL naming any other (a proxy, say) is kept."""
    url = tomllib.loads(text).get("url")
    if not isinstance(url, str):
        return text
    parts = urlsplit(url)
    if parts.hostname not in hosts or (parts.port or 443) == port:
        return text
    host = parts.netloc if parts.port is None else parts.netloc.rpartition(":")[0]
    new_url = parts._replace(netloc=f"{host}:{port}").geturl()
    lines = text.splitlines(keepends=True)
    for index, line in enumerate(lines):
        key = URL_LINE.fullmatch(line.rstrip("\r\n"))
        if key:
            lines[index] = f"{key.group(1)}{json.dumps(new_url)}{key.group(3)}{_ending(line)}"
            break
    edited = "".join(lines)
    _check_edit(text, edited, lambda document: document.update(url=new_url), "url")
    return edited


def _ending(line: str) -> str:
    return line[len(line.rstrip("\r\n")):]


def _ending_of_last(lines: list[str]) -> str:
    """What the appended table needs first: a line break, if the last line has none."""
    return "\n" if lines and not _ending(lines[-1]) else ""


def _check_edit(before: str, after: str, change: Callable[[dict[str, Any]], None],
                key: str) -> None:
    """Refuse an edit that did more, or less, than `change` to the document."""
    expected = tomllib.loads(before)
    change(expected)
    try:
        edited = tomllib.loads(after)
    except tomllib.TOMLDecodeError:
        edited = None
    if edited != expected:
        raise ValueError(f"{key} cannot be set by changing one line; set it by hand")


@dataclass(frozen=True)
class PortRecord:
    """What recording a served port changed: the files rewritten, and the port they said."""

    changed: list[Path]
    before: int | None


def record_port(settings: Settings, port: int, served_host: str) -> PortRecord:
    """Make the home's config and the client's profile (its URL, when it names this server:
    a loopback name, or the host the config or this serve names) say `port`."""
    config = settings.home / CONFIG_FILE
    text = config.read_text()
    before = tomllib.loads(text).get("server", {}).get("port")
    changed = []
    edited = config_with_port(text, port)
    if edited != text:
        write_atomically(config, edited.encode(), config.stat().st_mode & 0o777)
        changed.append(config)
    profile = settings.home / CLIENT_PROFILE_FILE
    if profile.exists():
        text = profile.read_text()
        hosts = {*pki.LOCAL_HOST_NAMES, settings.server.host, served_host}
        edited = profile_with_port(text, port, hosts)
        if edited != text:
            write_atomically(profile, edited.encode(), profile.stat().st_mode & 0o777)
            changed.append(profile)
    return PortRecord(changed, before if isinstance(before, int) else None)


# --- the server certificate ----------------------------------------------------------------

@dataclass(frozen=True)
class ServerCertificate:
    """The server certificate a home serves with, where it is, and until when it is good."""

    path: Path
    key_path: Path
    certificate: x509.Certificate

    @property
    def expires(self) -> datetime:
        """When it stops being valid."""
        expires: datetime = self.certificate.not_valid_after_utc
        return expires

    def expires_within(self, days: float, now: datetime) -> bool:
        """Whether it is no longer valid `days` days from `now`."""
        return self.expires <= now + timedelta(days=days)


def server_certificate(settings: Settings) -> ServerCertificate:
    """The home's server certificate, read from its file (the first certificate in it)."""
    path = settings.path(settings.server.cert_file)
    return ServerCertificate(path, settings.path(settings.server.key_file),
                             pki.load_certificate(path.read_bytes()))


def renew_server_certificate(settings: Settings, names: list[str], now: datetime,
                             days: int) -> pki.IssuedCertificate:
    """Issue a server certificate for `names` from the home CA and put it, with its key, in
    place of the current one: the key first, then the certificate (with the CA after it, as
    `init` writes it), each replaced at once."""
    ca = load_home_ca(settings)
    issued = pki.issue_server_certificate(ca, names, now, days=days)
    current = server_certificate(settings)
    write_atomically(current.key_path, issued.key_pem, 0o600)
    write_atomically(current.path, issued.cert_pem + ca.cert_pem,
                     current.path.stat().st_mode & 0o777)
    return issued


def load_home_ca(settings: Settings) -> pki.IssuedCertificate:
    """The home's CA, with its key."""
    return pki.load_issued(settings.path(settings.server.ca_file).read_bytes(),
                           settings.path(settings.security.ca_key_file).read_bytes())
