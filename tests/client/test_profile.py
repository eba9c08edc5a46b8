"""Where the client connects: flags, then SCHEDULER_CLIENT_* variables, then the profile."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from scheduler.admin import init_home
from scheduler.client.errors import InputError
from scheduler.client.profile import home_profile, profile_text, resolve_connection
from scheduler.settings import SettingsError, client_environment, load_client_profile

SUB = "00000000-0000-0000-0000-000000000001"


def write_profile(directory: Path, **keys: str) -> Path:
    """A profile file holding the given keys."""
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / "client.toml"
    path.write_text("".join(f'{key} = "{value}"\n' for key, value in keys.items()))
    return path


def test_the_profile_is_used_when_nothing_else_is_given(tmp_path: Path) -> None:
    write_profile(tmp_path, url="https://h:1/", subscription=SUB, cert="admin.pem",
                  ca="/abs/ca.pem", collection="jc1")
    connection = resolve_connection({"home": str(tmp_path)}, {}, None)
    assert connection.url == "https://h:1"
    assert connection.subscription == SUB
    assert connection.cert == tmp_path / "admin.pem"  # relative to the profile
    assert connection.ca == Path("/abs/ca.pem")
    assert connection.collection == "jc1" and connection.cloud_service is None
    assert connection.profile == tmp_path / "client.toml"


def test_variables_override_the_profile_and_flags_override_both(tmp_path: Path) -> None:
    write_profile(tmp_path, url="https://profile:1", subscription=SUB, cert="p.pem")
    env = {"SCHEDULER_CLIENT_URL": "https://env:2", "SCHEDULER_CLIENT_CERT": "env.pem"}
    connection = resolve_connection({"url": "https://flag:3"}, env, tmp_path)
    assert connection.url == "https://flag:3"
    assert connection.cert == Path("env.pem")
    assert connection.subscription == SUB


def test_a_profile_is_found_by_flag_then_variable_then_home(tmp_path: Path) -> None:
    flagged = write_profile(tmp_path / "a", url="https://a:1", subscription=SUB, cert="c")
    named = write_profile(tmp_path / "b", url="https://b:1", subscription=SUB, cert="c")
    write_profile(tmp_path / "c", url="https://c:1", subscription=SUB, cert="c")
    write_profile(tmp_path / "d", url="https://d:1", subscription=SUB, cert="c")
    env = {"SCHEDULER_CLIENT_PROFILE": str(named)}
    home = tmp_path / "d"
    assert resolve_connection({"profile": str(flagged), "home": str(tmp_path / "c")}, env,
                              home).url == "https://a:1"
    assert resolve_connection({"home": str(tmp_path / "c")}, env, home).url == "https://b:1"
    assert resolve_connection({"home": str(tmp_path / "c")}, {}, home).url == "https://c:1"
    assert resolve_connection({}, {}, home).url == "https://d:1"


def test_scheduler_home_without_a_profile_is_no_error(tmp_path: Path) -> None:
    env = {"SCHEDULER_CLIENT_URL": "https://e:1", "SCHEDULER_CLIENT_SUBSCRIPTION": SUB,
           "SCHEDULER_CLIENT_CERT": "c.pem"}
    assert resolve_connection({}, env, tmp_path).profile is None


def test_a_named_profile_that_is_missing_is_an_error(tmp_path: Path) -> None:
    with pytest.raises(SettingsError, match="no such client profile"):
        resolve_connection({"home": str(tmp_path)}, {}, None)


def test_a_missing_url_names_the_flag_the_variable_and_the_profile(tmp_path: Path) -> None:
    with pytest.raises(InputError) as caught:
        resolve_connection({}, {}, None)
    message = str(caught.value)
    assert "--url" in message and "SCHEDULER_CLIENT_URL" in message
    assert "profile" in message and "client.toml" in message
    path = write_profile(tmp_path, subscription=SUB, cert="c")
    with pytest.raises(InputError, match=f"the profile {path} has none"):
        resolve_connection({"profile": str(path)}, {}, None)


def test_a_missing_collection_is_named_when_a_command_needs_it() -> None:
    connection = resolve_connection({"url": "https://h:1", "subscription": SUB, "cert": "c",
                                     "cloud_service": "cs1"}, {}, None)
    with pytest.raises(InputError, match=r"--collection.*SCHEDULER_CLIENT_COLLECTION"):
        connection.need_collection()


def test_only_https_is_spoken() -> None:
    with pytest.raises(InputError, match="https://"):
        resolve_connection({"url": "http://h:1", "subscription": SUB, "cert": "c"}, {}, None)


@pytest.mark.parametrize(("text", "message"), [
    ('url = "https://h:1"\nport = 1\n', "unknown key 'port'"),
    ("url = 5\n", "url must be a string"),
    ("url = \n", "not a readable client profile"),
])
def test_a_bad_profile_is_named(tmp_path: Path, text: str, message: str) -> None:
    path = tmp_path / "client.toml"
    path.write_text(text)
    with pytest.raises(SettingsError, match=message):
        load_client_profile(path)


def test_the_profile_text_reads_back(tmp_path: Path) -> None:
    path = tmp_path / "client.toml"
    path.write_text(profile_text("https://127.0.0.1:8443", SUB, tmp_path / "admin.pem",
                                 tmp_path / "ca.pem"))
    profile = load_client_profile(path)
    assert (profile.url, profile.subscription) == ("https://127.0.0.1:8443", SUB)
    assert profile.cert == str(tmp_path / "admin.pem")


def test_init_writes_a_profile_naming_the_admin_certificate(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SCHEDULER_")}
    info = init_home(tmp_path / "home", ["localhost"], env=env)
    profile = load_client_profile(home_profile(tmp_path / "home"))
    assert profile.url == info["url"] and profile.subscription == info["subscriptionId"]
    assert profile.cert == info["clientCert"] and profile.ca == info["caCert"]
    assert Path(profile.cert).is_absolute()


def test_client_environment_holds_only_the_client_variables(
        monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("SCHEDULER_CLIENT_URL", "https://h:1")
    monkeypatch.setenv("SCHEDULER_SERVER_PORT", "1")
    monkeypatch.setenv("SCHEDULER_CLIENT_CA", "")
    found = client_environment()
    assert found["SCHEDULER_CLIENT_URL"] == "https://h:1"
    assert "SCHEDULER_SERVER_PORT" not in found and "SCHEDULER_CLIENT_CA" not in found
