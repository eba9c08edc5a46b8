"""The reference in docs/ holds to the code: every route of openapi.yaml, every setting, every
command and flag is documented, and every link between the documents leads somewhere.

Fast and self-contained: it reads files and builds the command line's parser, nothing more.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
import json
import re
import typing
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
import yaml

from scheduler.cli import build_parser
from scheduler.settings import CLIENT_ENV_PREFIX, ENV_PREFIX, ClientProfile, Settings

ROOT = Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"
API_REFERENCE = DOCS / "api.md"
CONFIGURATION_REFERENCE = DOCS / "configuration.md"
CLI_REFERENCE = DOCS / "cli.md"
HTTP_METHODS = ("get", "put", "post", "patch", "delete", "head", "options")
# What a named table's name stands as, in a key (`plans.NAME.max_job_count`) and in its
# variable (`SCHEDULER_PLANS_<NAME>_MAX_JOB_COUNT`).
TABLE_NAME, TABLE_NAME_IN_VARIABLE = "NAME", "<NAME>"


# --- reading Markdown ----------------------------------------------------------------------

FENCE = re.compile(r"^\s*(`{3,}|~{3,})")
HEADING = re.compile(r"^(#{1,6})\s+(.*?)\s*#*\s*$")


def prose_lines(text: str) -> Iterator[tuple[int, str]]:
    """The lines of a Markdown text outside fenced code blocks, with their numbers."""
    fence: str | None = None
    for number, line in enumerate(text.splitlines(), start=1):
        match = FENCE.match(line)
        if match:
            marker = match.group(1)[0]
            if fence is None:
                fence = marker
                continue
            if marker == fence:
                fence = None
                continue
        if fence is None:
            yield number, line


def headings(text: str) -> list[tuple[int, int, str]]:
    """Each heading outside code blocks: its line number, level and text."""
    found = []
    for number, line in prose_lines(text):
        match = HEADING.match(line)
        if match:
            found.append((number, len(match.group(1)), match.group(2)))
    return found


def slug(heading: str) -> str:
    """The anchor GitHub makes of a heading: link syntax reduced to its text, lower case,
    punctuation but `-` and `_` dropped, spaces made hyphens."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)
    text = re.sub(r"<[^>]+>", "", text).strip().lower()
    return re.sub(r"[^\w\- ]", "", text).replace(" ", "-")


def anchors(text: str) -> set[str]:
    """The anchors a Markdown text has: its headings' (repeats numbered as GitHub numbers
    them) and those of HTML `id` and `name` attributes."""
    found: set[str] = set()
    seen: dict[str, int] = {}
    for _number, _level, heading in headings(text):
        base = slug(heading)
        count = seen.get(base, 0)
        found.add(base if count == 0 else f"{base}-{count}")
        seen[base] = count + 1
    found.update(re.findall(r"""<a\s[^>]*(?:name|id)=["']([^"']+)["']""", text))
    return found


def sections(text: str) -> list[tuple[str, str]]:
    """Each heading with its section: the text up to the next heading of its level or
    above."""
    lines = text.splitlines()
    found = headings(text)
    result = []
    for index, (number, level, heading) in enumerate(found):
        end = next((later for later, later_level, _ in found[index + 1:]
                    if later_level <= level), len(lines) + 1)
        result.append((heading, "\n".join(lines[number - 1:end - 1])))
    return result


INLINE_LINK = re.compile(r"\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
REFERENCE_LINK = re.compile(r"^\s{0,3}\[[^\]]+\]:\s*<?(\S+?)>?(?:\s+\"[^\"]*\")?\s*$")
SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def links(text: str) -> Iterator[tuple[int, str]]:
    """The targets of the links and images of a Markdown text, outside code blocks, with the
    line each is on."""
    for number, line in prose_lines(text):
        for match in INLINE_LINK.finditer(line):
            yield number, match.group(1)
        reference = REFERENCE_LINK.match(line)
        if reference:
            yield number, reference.group(1)


def table_rows(text: str, first_header: str) -> Iterator[list[str]]:
    """The rows of every table whose header's first cell is `first_header`, as cells."""
    header: list[str] | None = None
    for _number, line in prose_lines(text):
        if not line.startswith("|"):
            header = None
            continue
        cells = [cell.strip() for cell in line.strip().strip("|").split("|")]
        if header is None:
            header = cells
        elif header[0] == first_header and not set(line) <= set("|-: "):
            yield cells


def user_documents() -> list[Path]:
    """The README and every document under docs/."""
    return [ROOT / "README.md", *sorted(path for path in DOCS.rglob("*") if path.is_file())]


# --- 1. the API reference covers every route -----------------------------------------------

def openapi_routes() -> list[str]:
    """Every operation of openapi.yaml as `METHOD /path`, the path as the document writes
    it."""
    document = yaml.safe_load((ROOT / "openapi.yaml").read_text())
    return [f"{method.upper()} {path}" for path, item in document["paths"].items()
            for method in item if method in HTTP_METHODS]


def test_every_route_of_openapi_is_in_the_api_reference() -> None:
    text = API_REFERENCE.read_text()
    routes = openapi_routes()
    assert routes, "openapi.yaml lists no routes"
    missing = [route for route in routes if f"`{route}`" not in text]
    assert not missing, ("docs/api.md does not name these routes of openapi.yaml (write each "
                         "as `METHOD /path`, the path as openapi.yaml writes it):\n  "
                         + "\n  ".join(missing))


# --- 2. the configuration reference covers every setting -----------------------------------

@dataclasses.dataclass(frozen=True)
class SettingKey:
    """One key of scheduler.toml, as the reference names it, with its variable and default
    (None when it has none)."""

    key: str
    variable: str
    default: Any


def setting_keys(cls: type[Any] = Settings, path: tuple[str, ...] = ()) -> Iterator[SettingKey]:
    """Every key the settings dataclasses hold, walked from `Settings` down: a section's
    fields (`server.host`), and those of named tables (`plans.NAME.max_job_count`)."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            yield from setting_keys(typing.cast(type[Any], kind), (*path, field.name))
        elif typing.get_origin(kind) is Mapping:
            _, value = typing.get_args(kind)
            yield from setting_keys(value, (*path, field.name, TABLE_NAME))
        elif path:  # fields of `Settings` itself (`home`) come from the command, not the file
            yield SettingKey(".".join((*path, field.name)), variable(path, field.name),
                             default_of(field))


def variable(path: tuple[str, ...], name: str) -> str:
    """The environment variable that overrides a key."""
    parts = [TABLE_NAME_IN_VARIABLE if part == TABLE_NAME else part.upper()
             for part in (*path, name)]
    return ENV_PREFIX + "_".join(parts)


def default_of(field: dataclasses.Field[Any]) -> Any:
    """A field's default, None when it has none."""
    if field.default is not dataclasses.MISSING:
        return field.default
    if field.default_factory is not dataclasses.MISSING:
        return field.default_factory()
    return None


def toml_literal(value: Any) -> str:
    """A value as scheduler.toml would write it."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        return json.dumps(value)
    if isinstance(value, tuple | list):
        return "[" + ", ".join(toml_literal(item) for item in value) + "]"
    raise TypeError(f"no TOML form for {value!r}")


def documented_settings() -> dict[str, list[str]]:
    """The rows of the reference's settings tables (`| key | type | default | variable |
    meaning |`), by key."""
    rows = table_rows(CONFIGURATION_REFERENCE.read_text(), "key")
    return {cells[0].strip("`"): cells for cells in rows}


def test_every_setting_is_in_the_configuration_reference() -> None:
    keys = list(setting_keys())
    assert len(keys) > 40, "the walk of the settings dataclasses found too few keys"
    rows = documented_settings()
    problems = []
    for setting in keys:
        cells = rows.get(setting.key)
        if cells is None:
            problems.append(f"{setting.key}: no row in a settings table")
            continue
        if setting.variable not in cells[3]:
            problems.append(f"{setting.key}: its variable {setting.variable} is not in its row")
        if setting.default is not None and f"`{toml_literal(setting.default)}`" not in cells[2]:
            problems.append(f"{setting.key}: its default `{toml_literal(setting.default)}` is "
                            f"not in its row (found {cells[2]})")
    assert not problems, "docs/configuration.md:\n  " + "\n  ".join(problems)


def test_the_configuration_reference_names_no_setting_the_code_lacks() -> None:
    known = {setting.key for setting in setting_keys()}
    stale = sorted(set(documented_settings()) - known)
    assert not stale, ("docs/configuration.md documents settings the code does not have: "
                       + ", ".join(stale))


def test_every_client_profile_key_is_in_the_configuration_reference() -> None:
    rows = {cells[0].strip("`"): cells
            for cells in table_rows(CONFIGURATION_REFERENCE.read_text(), "profile key")}
    problems = []
    for field in dataclasses.fields(ClientProfile):
        expected = CLIENT_ENV_PREFIX + field.name.upper()
        flag = "--" + field.name.replace("_", "-")
        cells = rows.get(field.name)
        if cells is None:
            problems.append(f"{field.name}: no row in the client profile's table")
        elif expected not in " ".join(cells) or flag not in " ".join(cells):
            problems.append(f"{field.name}: its row lacks {flag} or {expected}")
    assert not problems, "docs/configuration.md:\n  " + "\n  ".join(problems)


# --- 3. the CLI reference covers every command and flag ------------------------------------

@dataclasses.dataclass(frozen=True)
class Command:
    """What a command's `--help` says of it: its subcommands, flags and positional arguments."""

    subcommands: tuple[str, ...]
    flags: frozenset[str]
    positionals: frozenset[str]


HELP_SECTION = re.compile(r"^(\S[^:]*):$")
CHOICES = re.compile(r"^\s+\{([\w,-]+)\}")
OPTION = re.compile(r"^\s+(?:-\w[ ,]*(?:\S+ )?, )?(--[\w-]+)")
POSITIONAL = re.compile(r"^\s{2}(?!-)([^\s{]\S*)")


def described(path: tuple[str, ...]) -> Command:
    """Read `scheduler PATH --help`, as a user would, from the parser the command line runs."""
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit):
        build_parser().parse_args([*path, "--help"])
    subcommands: tuple[str, ...] = ()
    flags: set[str] = set()
    positionals: set[str] = set()
    section = ""
    for line in out.getvalue().splitlines():
        heading = HELP_SECTION.match(line)
        if heading:
            section = heading.group(1)
            continue
        choices = CHOICES.match(line)
        if choices:
            subcommands = tuple(choices.group(1).split(","))
        elif (option := OPTION.match(line)) and option.group(1) != "--help":
            flags.add(option.group(1))
        elif section == "positional arguments" and (name := POSITIONAL.match(line)):
            positionals.add(name.group(1))
    return Command(subcommands, frozenset(flags), frozenset(positionals))


def commands(path: tuple[str, ...] = ()) -> Iterator[tuple[str, Command]]:
    """Every command of the command line that runs something (`jobs list`, `cert issue`),
    as its help describes it."""
    command = described(path)
    if not command.subcommands:
        yield " ".join(path), command
    for name in command.subcommands:
        yield from commands((*path, name))


def shared_flags(every: list[tuple[str, Command]]) -> set[str]:
    """The flags every client command takes (those with `--url`, the service they call):
    documented once."""
    client = [set(command.flags) for _name, command in every if "--url" in command.flags]
    return set.intersection(*client) if client else set()


def test_every_command_and_flag_is_in_the_cli_reference() -> None:
    every = list(commands())
    assert len(every) > 20, "the walk of the command line found too few commands"
    text = CLI_REFERENCE.read_text()
    documented = sections(text)
    shared = shared_flags(every)
    problems = [f"the flag {flag}, which every client command takes, is not named"
                for flag in sorted(shared) if flag not in text]
    for name, command in every:
        title = f"`scheduler {name}`"
        bodies = [body for heading, body in documented if title in heading]
        if not bodies:
            problems.append(f"scheduler {name}: no heading names {title}")
            continue
        body = "\n".join(bodies)
        for flag in sorted(command.flags - shared):
            if flag not in body:
                problems.append(f"scheduler {name}: its flag {flag} is not in its section")
        for argument in sorted(command.positionals):
            if argument not in body:
                problems.append(f"scheduler {name}: its argument {argument} is not in its "
                                "section")
    assert not problems, "docs/cli.md:\n  " + "\n  ".join(problems)


# --- 4. the documents keep to themselves ---------------------------------------------------

@pytest.mark.parametrize("forbidden", ["shared/", "SPEC.md"])
def test_no_document_points_outside_the_project(forbidden: str) -> None:
    found = [f"{path.relative_to(ROOT)}:{number}"
             for path in user_documents()
             for number, line in enumerate(path.read_text(errors="replace").splitlines(), 1)
             if forbidden in line]
    assert not found, f"{forbidden} is named in: " + ", ".join(found)


# --- 5. every relative link leads somewhere ------------------------------------------------

def link_problem(source: Path, target: str) -> str | None:
    """What is wrong with a link of `source` to `target`, or None: a file that is not there
    or outside the repository, or an anchor its Markdown file does not have."""
    if SCHEME.match(target) or target.startswith("//"):
        return None  # another site's: not checked here
    path_part, _, anchor = target.partition("#")
    destination = (source.parent / path_part).resolve() if path_part else source
    if not destination.is_relative_to(ROOT):
        return f"{target} leads outside the repository"
    if not destination.exists():
        return f"{target}: there is no {destination.relative_to(ROOT)}"
    markdown = destination.suffix == ".md" and destination.is_file()
    if anchor and markdown and anchor not in anchors(destination.read_text()):
        return f"{target}: {destination.relative_to(ROOT)} has no heading #{anchor}"
    return None


def test_every_relative_link_leads_somewhere() -> None:
    problems = []
    for source in user_documents():
        if source.suffix != ".md":
            continue
        for number, target in links(source.read_text()):
            problem = link_problem(source, target)
            if problem:
                problems.append(f"{source.relative_to(ROOT)}:{number}: {problem}")
    assert not problems, "broken links:\n  " + "\n  ".join(problems)


def test_anchors_are_made_as_github_makes_them() -> None:
    text = "# The API\n## What `serve --role all` looks after\n## Jobs\n## Jobs\n```\n# no\n```\n"
    assert anchors(text) == {"the-api", "what-serve---role-all-looks-after", "jobs", "jobs-1"}
    assert slug("A job's [history](api.md)") == "a-jobs-history"
