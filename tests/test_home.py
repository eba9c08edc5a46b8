"""A home's files as serve and cert server change them: the port set in the config and the
client's profile one line at a time, comments kept; an edit that would do more is refused."""

from __future__ import annotations

import tomllib

import pytest

from scheduler.home import config_text, config_with_port, profile_with_port

HERE = {"127.0.0.1", "localhost", "::1"}


def test_the_port_line_of_the_server_table_is_changed_and_nothing_else() -> None:
    text = config_text(None, port=8443)
    edited = config_with_port(text, 9001)
    assert tomllib.loads(edited)["server"]["port"] == 9001
    changed = [(a, b) for a, b in zip(text.splitlines(), edited.splitlines(), strict=True)
               if a != b]
    assert changed == [(a, a.replace("8443", "9001")) for a, _ in changed]
    assert len(changed) == 1 and "# `scheduler serve --port P`" in changed[0][1]


@pytest.mark.parametrize(("text", "expected"), [
    ('[server]\nhost = "0.0.0.0"\n[metrics]\nport = 9464\n',
     '[server]\nport = 9001\nhost = "0.0.0.0"\n[metrics]\nport = 9464\n'),
    ("[metrics]\nport = 9464", "[metrics]\nport = 9464\n\n[server]\nport = 9001\n"),
    ("", "\n[server]\nport = 9001\n"),
    ("[server]  # the API\n  port=8443   # old\n", "[server]  # the API\n  port=9001   # old\n"),
    ("[[plans]]\nport = 1\n[server]\nport = 2\n", "[[plans]]\nport = 1\n[server]\nport = 9001\n"),
])
def test_a_port_is_added_where_the_config_has_none_and_other_tables_ports_are_left(
        text: str, expected: str) -> None:
    assert config_with_port(text, 9001) == expected


def test_a_port_the_config_sets_in_a_way_one_line_cannot_change_is_refused() -> None:
    with pytest.raises(ValueError, match=r"server\.port cannot be set by changing one line"):
        config_with_port("server.port = 8443\n", 9001)


@pytest.mark.parametrize(("url", "expected"), [
    ("https://127.0.0.1:8443", "https://127.0.0.1:9001"),
    ("https://localhost", "https://localhost:9001"),
    ("https://[::1]:8443/", "https://[::1]:9001/"),
    ("https://scheduler.example.com:8443", "https://scheduler.example.com:8443"),
])
def test_the_profile_s_url_follows_the_port_when_it_names_this_server(
        url: str, expected: str) -> None:
    text = f'# where\nurl = "{url}"   # the service\nsubscription = "s"\n'
    edited = profile_with_port(text, 9001, HERE)
    assert edited == text.replace(url, expected)
