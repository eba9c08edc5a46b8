"""Configuration: `HOME/scheduler.toml`, overridden by `SCHEDULER_<SECTION>_<KEY>` variables.

This is the one module that reads the process environment.
"""

from __future__ import annotations

import os
import socket
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import timedelta
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from scheduler.domain.durations import parse_duration
from scheduler.domain.nodes import NODE_NAME_RULE, is_node_name

CONFIG_FILE = "scheduler.toml"
ENV_PREFIX = "SCHEDULER_"

DEFAULT_PLANS: dict[str, dict[str, Any]] = {
    "Free": {"max_job_count": 5, "max_recurrence": "PT1H"},
    "Standard": {"max_job_count": 50, "max_recurrence": "PT1M"},
    "P10Premium": {"max_job_count": 50, "max_recurrence": "PT1M"},
    "P20Premium": {"max_job_count": 1000, "max_recurrence": "PT1M"},
}


class SettingsError(ValueError):
    """The configuration file or an environment override is invalid."""


@dataclass(frozen=True)
class ServerSettings:
    """How the HTTPS management API listens."""

    host: str = "127.0.0.1"
    port: int = 8443
    workers: int = 2
    threads: int = 32
    cert_file: str = "server.pem"
    key_file: str = "server-key.pem"
    ca_file: str = "ca.pem"
    trusted_proxies: tuple[str, ...] = ()
    client_cert_header: str = "X-ARR-ClientCert"
    max_body_bytes: int = 1_048_576
    keepalive_seconds: int = 75
    request_timeout_seconds: float = 10.0
    # The service's own origin: the only `Origin` it answers, the base of every link it
    # writes. Empty: https://HOST:PORT as served.
    public_url: str = ""

    def __post_init__(self) -> None:
        if type(self.port) is not int or not 1 <= self.port <= 65535:
            raise SettingsError(f"server.port must be a TCP port, 1 to 65535, not {self.port!r}")
        if self.request_timeout_seconds <= 0:
            raise SettingsError("server.request_timeout_seconds must be above 0")
        if self.public_url:
            check_public_url(self.public_url)


def check_public_url(url: object) -> None:
    """Refuse a `server.public_url` that is not an https URL of a host, with no path beyond
    "/": it is the origin browsers name, and paths are appended to it."""
    problem = _url_problem(url, ("https",), origin_only=True)
    if problem:
        raise SettingsError(f"server.public_url must be an https URL with no path, such as "
                            f"https://scheduler.example.com:8443, not {url!r}: {problem}")


def _url_problem(url: object, schemes: tuple[str, ...], origin_only: bool) -> str | None:
    """What keeps a setting's URL from naming a host over one of `schemes` (with
    `origin_only`, and nothing after the host); None if nothing does."""
    if not isinstance(url, str):
        return "it is not a string"
    if any(c.isspace() or not c.isprintable() for c in url):
        return "it holds a space or a control character"
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        return str(exc)
    if parts.scheme.lower() not in schemes:
        return f"the scheme is not {' or '.join(schemes)}"
    if not parts.hostname:
        return "it names no host"
    if parts.username is not None or parts.password is not None:
        return "it holds a user name"
    if origin_only and (parts.path not in ("", "/") or parts.query or url.endswith("?")):
        return "it has a path or query"
    if parts.fragment or url.endswith("#"):
        return "it has a fragment"
    if port == 0:
        return "port 0 is not a port"
    return None


@dataclass(frozen=True)
class DatabaseSettings:
    """Where the state lives, and how many connections to PostgreSQL each process holds."""

    url: str = ""
    pool_size: int = 8
    pool_timeout_seconds: float = 5.0

    def __post_init__(self) -> None:
        if self.pool_size < 1:
            raise SettingsError("database.pool_size must be at least 1")
        if self.pool_timeout_seconds <= 0:
            raise SettingsError("database.pool_timeout_seconds must be above 0")


@dataclass(frozen=True)
class SecuritySettings:
    """Keys of the home: the CA and the key that encrypts job secrets."""

    ca_key_file: str = "ca-key.pem"
    secret_key_file: str = "secret.key"
    # The admin client certificate `init` made: `serve` checks that the database knows it.
    admin_cert_file: str = "admin.pem"


@dataclass(frozen=True)
class OutboundSettings:
    """Rules for the calls jobs make."""

    allow_private_networks: bool = False
    max_connections_per_host: int = 100
    storage_queue_endpoint: str = "https://{account}.queue.core.windows.net"
    service_bus_endpoint: str = "https://{namespace}.servicebus.windows.net"
    aad_token_endpoint: str = "https://login.microsoftonline.com/{tenant}/oauth2/token"
    # The longest a job may let one attempt take (`action.request.timeout` and the like), as
    # an ISO-8601 duration; an attempt without its own timeout takes `engine.timeout_seconds`.
    max_timeout: str = "PT30M"

    def __post_init__(self) -> None:
        try:
            longest = parse_duration(self.max_timeout)
        except ValueError as exc:
            raise SettingsError(f"outbound.max_timeout: {exc}") from None
        if longest <= timedelta(0):
            raise SettingsError("outbound.max_timeout must be longer than zero")

    @property
    def longest_timeout(self) -> timedelta:
        """`max_timeout` as a length of time."""
        return parse_duration(self.max_timeout)


@dataclass(frozen=True)
class NotificationSettings:
    """The SMTP server email channels send through: off while `smtp_host` is empty."""

    smtp_host: str = ""
    smtp_port: int = 587
    # STARTTLS before anything else is sent; the server's certificate is checked against
    # the system's store, or `smtp_ca_file` (a PEM file, relative to the home) if set.
    smtp_starttls: bool = True
    smtp_username: str = ""
    smtp_password: str = ""
    # The sender of email channels that name none.
    smtp_from: str = ""
    smtp_timeout_seconds: float = 10.0
    smtp_ca_file: str = ""

    def __post_init__(self) -> None:
        if type(self.smtp_port) is not int or not 1 <= self.smtp_port <= 65535:
            raise SettingsError(f"notifications.smtp_port must be a TCP port, 1 to 65535, "
                                f"not {self.smtp_port!r}")
        if self.smtp_timeout_seconds <= 0:
            raise SettingsError("notifications.smtp_timeout_seconds must be above 0")
        if self.smtp_password and not self.smtp_username:
            raise SettingsError("notifications.smtp_password is set without "
                                "notifications.smtp_username")

    @property
    def email_enabled(self) -> bool:
        """Whether email channels can send: an SMTP server is configured."""
        return bool(self.smtp_host)


@dataclass(frozen=True)
class EngineSettings:
    """How the firing engine paces itself."""

    lease_seconds: int = 90
    batch: int = 500
    max_sleep_seconds: float = 2.0
    lookahead_seconds: float = 2.5
    history_keep: int = 1000
    history_max_age_days: int = 60
    heartbeat_seconds: float = 1.0
    dead_after_seconds: float = 5.0
    concurrency: int = 20_000
    timeout_seconds: float = 60.0
    # The cluster's heartbeat to an outside monitor (a dead man's switch), not the nodes'
    # heartbeats to one another (`heartbeat_seconds`): empty, off.
    heartbeat_url: str = ""
    heartbeat_interval_seconds: float = 60.0
    # The node's stable name, which jobs' `runOn` lists: empty, the host's name. Two live
    # nodes of one database may not share it.
    node_name: str = ""

    def __post_init__(self) -> None:
        if self.node_name and not is_node_name(self.node_name):
            raise SettingsError(f"engine.node_name must be {NODE_NAME_RULE}, not "
                                f"{self.node_name!r}")
        for name in ("lease_seconds", "batch", "max_sleep_seconds", "concurrency",
                     "timeout_seconds", "heartbeat_interval_seconds"):
            if getattr(self, name) <= 0:
                raise SettingsError(f"engine.{name} must be above 0")
        if self.heartbeat_url:
            check_heartbeat_url(self.heartbeat_url)
        if self.heartbeat_seconds <= 0:
            raise SettingsError("engine.heartbeat_seconds must be above 0")
        if self.dead_after_seconds < 2 * self.heartbeat_seconds:
            raise SettingsError("engine.dead_after_seconds must be at least twice "
                                "engine.heartbeat_seconds")

    def own_node_name(self) -> str:
        """The name this node runs under: `node_name`, or else the host's name; lower-cased."""
        name = self.node_name or socket.gethostname()
        if not is_node_name(name):
            raise SettingsError(f"the host name {name!r} cannot name an engine node (it must "
                                f"be {NODE_NAME_RULE}): set engine.node_name")
        return name.lower()


def check_heartbeat_url(url: object) -> None:
    """Refuse an `engine.heartbeat_url` that is not an http(s) URL of a host: the engines
    GET it, and its `/fail` variant is made by appending to its path."""
    problem = _url_problem(url, ("http", "https"), origin_only=False)
    if problem:
        raise SettingsError(f"engine.heartbeat_url must be an http or https URL, such as "
                            f"https://hc-ping.com/YOUR-UUID, not {url!r}: {problem}")


LOG_FORMATS = ("text", "json")
LOG_LEVELS = ("debug", "info", "warning", "error")


@dataclass(frozen=True)
class LoggingSettings:
    """What the processes log and how: `text` lines for people, `json` objects for shippers."""

    format: str = "text"
    level: str = "info"

    def __post_init__(self) -> None:
        if self.format not in LOG_FORMATS:
            raise SettingsError(f"logging.format must be one of {', '.join(LOG_FORMATS)}, "
                                f"not {self.format!r}")
        if self.level not in LOG_LEVELS:
            raise SettingsError(f"logging.level must be one of {', '.join(LOG_LEVELS)}, "
                                f"not {self.level!r}")


@dataclass(frozen=True)
class MetricsSettings:
    """Where Prometheus scrapes the metrics, over plain HTTP: off unless a port is set."""

    host: str = "127.0.0.1"
    port: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.port <= 65535:
            raise SettingsError(f"metrics.port must be a TCP port, not {self.port}")

    @property
    def enabled(self) -> bool:
        """Whether the metrics are served."""
        return self.port != 0


@dataclass(frozen=True)
class UISettings:
    """The dashboard under `/ui/`: `read_only` hides and refuses every action."""

    read_only: bool = False


@dataclass(frozen=True)
class PlanSettings:
    """The limits of one job collection plan; among them, those on runs started by hand (run
    now, per job; inline runs, per collection): `run_now_burst` at once, then one more per
    `max_recurrence` (or the collection's own quota), and at most `max_open_runs` open."""

    max_job_count: int
    max_recurrence: str
    run_now_burst: int = 10
    max_open_runs: int = 100

    def __post_init__(self) -> None:
        for name in ("run_now_burst", "max_open_runs"):
            if getattr(self, name) < 1:
                raise SettingsError(f"a plan's {name} must be at least 1, not "
                                    f"{getattr(self, name)}")


BROKER_KINDS = {"amqp": "amqp", "amqps": "amqp", "redis": "redis", "rediss": "redis",
                "unix": "redis"}


@dataclass(frozen=True)
class BrokerSettings:
    """A message broker the operator lets jobs publish to: RabbitMQ (`amqp://`, `amqps://`)
    or Redis (`redis://`, `rediss://`, `unix://`)."""

    url: str

    def __post_init__(self) -> None:
        if self.url.partition("://")[0].lower() not in BROKER_KINDS:
            raise SettingsError(f"broker URL {self.url.partition('://')[0]}://... is neither "
                                "amqp://, amqps://, redis://, rediss:// nor unix://")

    @property
    def kind(self) -> str:
        """`amqp` or `redis`: which actions may name this broker."""
        return BROKER_KINDS[self.url.partition("://")[0].lower()]


@dataclass(frozen=True)
class Settings:
    """Everything the service is configured with."""

    home: Path
    server: ServerSettings = field(default_factory=ServerSettings)
    database: DatabaseSettings = field(default_factory=DatabaseSettings)
    security: SecuritySettings = field(default_factory=SecuritySettings)
    outbound: OutboundSettings = field(default_factory=OutboundSettings)
    engine: EngineSettings = field(default_factory=EngineSettings)
    logging: LoggingSettings = field(default_factory=LoggingSettings)
    metrics: MetricsSettings = field(default_factory=MetricsSettings)
    ui: UISettings = field(default_factory=UISettings)
    notifications: NotificationSettings = field(default_factory=NotificationSettings)
    plans: Mapping[str, PlanSettings] = field(default_factory=dict)
    brokers: Mapping[str, BrokerSettings] = field(default_factory=dict)

    @property
    def broker_kinds(self) -> dict[str, str]:
        """Each configured broker's kind (`amqp`, `redis`), by name."""
        return {name: broker.kind for name, broker in self.brokers.items()}

    def broker_urls(self, kind: str) -> dict[str, str]:
        """The URLs of the brokers of one kind, by name."""
        return {name: broker.url for name, broker in self.brokers.items()
                if broker.kind == kind}

    def path(self, name: str) -> Path:
        """Resolve a file name from the configuration against the home directory."""
        return self.home / name

    @property
    def database_url(self) -> str:
        """The SQLAlchemy URL, defaulting to the home's SQLite file."""
        return self.database.url or f"sqlite:///{self.home / 'scheduler.db'}"


def _coerce(value: str, default: Any, name: str) -> Any:
    """Turn an environment string into the type of the setting it overrides."""
    if isinstance(default, bool):
        if value.lower() in ("1", "true", "yes", "on"):
            return True
        if value.lower() in ("0", "false", "no", "off", ""):
            return False
        raise SettingsError(f"{name} must be true or false, not {value!r}")
    if isinstance(default, int | float):
        try:
            return type(default)(value)
        except ValueError:
            raise SettingsError(f"{name} must be a number, not {value!r}") from None
    if isinstance(default, tuple):
        return tuple(item.strip() for item in value.split(",") if item.strip())
    return value


def _env_name(*parts: str) -> str:
    return ENV_PREFIX + "_".join(part.upper() for part in parts)


def _build(
    cls: type[Any], table: Mapping[str, Any], env: Mapping[str, str], *section: str
) -> Any:
    """Make one settings dataclass from its TOML table and the environment."""
    defaults = cls.__dataclass_fields__
    values: dict[str, Any] = {}
    for key, value in table.items():
        if key not in defaults:
            raise SettingsError(f"unknown setting {'.'.join((*section, key))}")
        values[key] = tuple(value) if isinstance(value, list) else value
    for key, fld in defaults.items():
        name = _env_name(*section, key)
        if name in env:
            default = values.get(key, fld.default)
            values[key] = _coerce(env[name], default, name)
    try:
        return cls(**values)
    except TypeError as exc:
        raise SettingsError(f"[{'.'.join(section)}]: {exc}") from None


def _named_tables(
    cls: type[Any],
    tables: Mapping[str, Any],
    env: Mapping[str, str],
    section: str,
    defaults: Mapping[str, Mapping[str, Any]],
) -> dict[str, Any]:
    """Build `[section.NAME]` tables, merged over their defaults."""
    names = {**{n: {} for n in defaults}, **tables}
    built = {}
    for name, table in names.items():
        merged = {**defaults.get(name, {}), **table}
        built[name] = _build(cls, merged, env, section, name)
    return built


def _check_tables(document: Mapping[str, Any], path: Path) -> None:
    """Refuse a top-level name that is not one of the settings' tables (a typo such as
    `[sever]` would otherwise leave every setting under it silently at its default), and a
    table given as a plain value."""
    tables = [name for name in Settings.__dataclass_fields__ if name != "home"]
    for name, value in document.items():
        if name not in tables:
            raise SettingsError(f"{path}: unknown table [{name}]; the tables are "
                                f"{', '.join(f'[{table}]' for table in tables)}")
        if not isinstance(value, dict):
            raise SettingsError(f"{path}: {name} must be a table, [{name}]")
        if name in ("plans", "brokers"):
            for entry, table in value.items():
                if not isinstance(table, dict):
                    raise SettingsError(f"{path}: {name}.{entry} must be a table, "
                                        f"[{name}.{entry}]")


def load_settings(home: Path | str, env: Mapping[str, str] | None = None) -> Settings:
    """Read `HOME/scheduler.toml` and apply the `SCHEDULER_*` environment overrides."""
    home = Path(home).resolve()
    env = os.environ if env is None else env
    config_path = home / CONFIG_FILE
    try:
        document = tomllib.loads(config_path.read_text()) if config_path.exists() else {}
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"{config_path}: {exc}") from None
    _check_tables(document, config_path)
    return Settings(
        home=home,
        server=_build(ServerSettings, document.get("server", {}), env, "server"),
        database=_build(DatabaseSettings, document.get("database", {}), env, "database"),
        security=_build(SecuritySettings, document.get("security", {}), env, "security"),
        outbound=_build(OutboundSettings, document.get("outbound", {}), env, "outbound"),
        engine=_build(EngineSettings, document.get("engine", {}), env, "engine"),
        logging=_build(LoggingSettings, document.get("logging", {}), env, "logging"),
        metrics=_build(MetricsSettings, document.get("metrics", {}), env, "metrics"),
        ui=_build(UISettings, document.get("ui", {}), env, "ui"),
        notifications=_build(NotificationSettings, document.get("notifications", {}), env,
                             "notifications"),
        plans=_named_tables(PlanSettings, document.get("plans", {}), env, "plans", DEFAULT_PLANS),
        brokers=_named_tables(BrokerSettings, document.get("brokers", {}), env, "brokers", {}),
    )


def share_metrics_directory(directory: Path) -> None:
    """Name the directory where this process and those it starts keep their metrics
    (prometheus-client's multiprocess mode reads it from the environment)."""
    os.environ["PROMETHEUS_MULTIPROC_DIR"] = str(directory)


def metrics_directory() -> Path | None:
    """The directory of multiprocess metrics this process was given, if any."""
    value = os.environ.get("PROMETHEUS_MULTIPROC_DIR")
    return Path(value) if value else None


def default_home() -> Path | None:
    """The home named by `SCHEDULER_HOME`, if any."""
    value = os.environ.get("SCHEDULER_HOME")
    return Path(value) if value else None


def running_in_ci() -> bool:
    """Whether the suite runs under CI, where nothing may be skipped."""
    return os.environ.get("CI", "").lower() == "true"


# --- the command-line client (`scheduler jobs`, `scheduler collections`) ----------------------

CLIENT_PROFILE_FILE = "client.toml"
CLIENT_ENV_PREFIX = "SCHEDULER_CLIENT_"


@dataclass(frozen=True)
class ClientProfile:
    """Where the command-line client connects, as a profile file says; all optional."""

    url: str | None = None
    subscription: str | None = None
    cert: str | None = None
    ca: str | None = None
    cloud_service: str | None = None
    collection: str | None = None


def client_environment() -> dict[str, str]:
    """The `SCHEDULER_CLIENT_*` variables that are set, by name."""
    return {name: value for name, value in os.environ.items()
            if name.startswith(CLIENT_ENV_PREFIX) and value}


def load_client_profile(path: Path) -> ClientProfile:
    """Read a client profile (TOML); its relative file names are taken from its directory."""
    try:
        document = tomllib.loads(path.read_text())
    except FileNotFoundError:
        raise SettingsError(f"{path}: no such client profile") from None
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise SettingsError(f"{path}: not a readable client profile: {exc}") from None
    known = ClientProfile.__dataclass_fields__
    for key, value in document.items():
        if key not in known:
            raise SettingsError(f"{path}: unknown key {key!r}; a client profile holds "
                                f"{', '.join(known)}")
        if not isinstance(value, str):
            raise SettingsError(f"{path}: {key} must be a string")
    for key in ("cert", "ca"):
        if key in document:
            document[key] = str(path.parent / Path(document[key]).expanduser())
    return ClientProfile(**document)
