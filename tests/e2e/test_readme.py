"""The README's first steps, run as the README writes them and read from README.md itself: the
home `make serve` makes and what it prints, the curl block, the command-line session (its
output held against what the README shows) and the Azure client's snippet. An edit of the
README that breaks a step fails here.

The steps run in a directory laid out as a checkout after `make serve` (`.venv`,
`.scheduler-home`, `certs/`), with the served port, the target's port, the subscription and
that directory put where the README shows its examples; nothing else of a step is changed."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import subprocess
import tomllib
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from tests.e2e.support import BIN, ServerProcess, free_port, wait_for

pytestmark = pytest.mark.e2e

README = Path(__file__).resolve().parents[2] / "README.md"
VENV = BIN.parent.parent
# This machine's trust variables name another CA bundle; the shell of someone following the
# README has none of them (the Azure snippet sets REQUESTS_CA_BUNDLE itself).
TRUST_VARIABLES = ("REQUESTS_CA_BUNDLE", "SSL_CERT_FILE", "CURL_CA_BUNDLE")
# What bash sets by itself: not carried from one command's bash to the next.
SHELL_OWN_VARIABLES = ("_", "SHLVL", "PWD", "OLDPWD")
# Values that differ on every run (when it ran, which execution, on which node): their labels
# and columns are checked, the values are not.
RUN_DEPENDENT_LABELS = {"execution", "scheduled", "started", "ended", "node"}
RUN_DEPENDENT_COLUMNS = {"TIME", "EXECUTION"}
LABELLED_LINE = re.compile(r"([a-z][a-z ]*):\s+(.*)")
TABLE_HEADER = re.compile(r"[A-Z][A-Z ]*")
DEADLINE = 60.0  # generous: the machine is busy


# --- reading the README ---------------------------------------------------------------------

def section(text: str, heading: str) -> str:
    """The lines under a heading (`## ...` as written), up to the next heading; `#` lines
    inside fenced blocks are not headings."""
    kept: list[str] = []
    inside = fenced = False
    for line in text.splitlines(keepends=True):
        if line.startswith("```"):
            fenced = not fenced
        elif line.startswith("#") and not fenced:
            if inside:
                break
            inside = line.rstrip("\n") == heading
            continue
        if inside:
            kept.append(line)
    assert kept, f"README.md has no section {heading!r}"
    return "".join(kept)


def only_block(text: str, language: str) -> str:
    """The body of the one fenced block of `language` in the text."""
    blocks = re.findall(rf"^```{language}\n(.*?)^```$", text, re.MULTILINE | re.DOTALL)
    assert len(blocks) == 1, f"expected one ```{language} block, found {len(blocks)}"
    return str(blocks[0])


@dataclass
class Step:
    """A command of a README block and the output the README shows for it."""

    command: str
    shown: list[str] = field(default_factory=list)


def console_steps(block: str) -> list[Step]:
    """The `$ command` lines of a console block, each with the lines printed under it."""
    steps: list[Step] = []
    for line in block.splitlines():
        if line.startswith("$ "):
            steps.append(Step(line[2:]))
        else:
            assert steps, f"console block shows output before any command: {line!r}"
            steps[-1].shown.append(line)
    return steps


def script_steps(block: str) -> list[Step]:
    """The commands of a sh block (a line ending in `\\` continues), each with the output
    that the `# ` comment lines after it show."""
    steps: list[Step] = []
    pending = ""
    for line in block.splitlines():
        if not pending and line.startswith("#"):
            assert steps, f"sh block shows output before any command: {line!r}"
            steps[-1].shown.append(line.removeprefix("# "))
            continue
        pending += line + "\n"
        if not line.endswith("\\"):
            steps.append(Step(pending.rstrip("\n")))
            pending = ""
    return steps


def as_run_here(readme: str, directory: Path, port: int, target_port: int,
                subscription: str) -> str:
    """The README with this run's directory, ports and subscription where it shows its
    examples of them."""
    example = re.search(r"^  subscription (\S+)$", readme, re.MULTILINE)
    assert example, "README.md shows no subscription id in make serve's output"
    replacements = {
        "/home/you/scheduler": str(directory),
        "127.0.0.1:8443": f"127.0.0.1:{port}",
        "127.0.0.1:8080": f"127.0.0.1:{target_port}",
        "http.server 8080": f"http.server {target_port}",
        "<subscription id>": subscription,
        example.group(1): subscription,
    }
    for old, new in replacements.items():
        readme = readme.replace(old, new)
    return readme


# --- comparing what was printed with what the README shows ------------------------------------

def elided(shown: str) -> re.Pattern[str]:
    """A pattern of output the README shows with `...` for what it leaves out (lines and
    the spaces around the dots included)."""
    parts = re.split(r"\s*\.\.\.\s*", shown)
    return re.compile(r"[\s\S]*?".join(re.escape(part) for part in parts))


def labelled(lines: list[str]) -> dict[str, str]:
    """The `label: value` lines among these."""
    matches = (LABELLED_LINE.fullmatch(line) for line in lines)
    return {found.group(1): found.group(2) for found in matches if found}


def table_cells(line: str, columns: int = 0) -> list[str]:
    """A table line cut into its cells (two spaces or more between them), into `columns`
    of them at most when that is given (the last cell may hold two spaces)."""
    return re.split(r" {2,}", line.strip(), maxsplit=max(columns - 1, 0))


def check_labelled(shown: list[str], printed: list[str]) -> None:
    """Every label shown is printed, with the value shown unless that depends on the run."""
    expected, got = labelled(shown), labelled(printed)
    missing = [label for label in expected if label not in got]
    assert not missing, f"labels {missing} missing from {printed}"
    for label, value in expected.items():
        if label not in RUN_DEPENDENT_LABELS:
            assert got[label] == value, f"{label}: printed {got[label]!r}, README {value!r}"


def check_table(shown: list[str], printed: list[str]) -> None:
    """The header is the one shown, and so are the rows, apart from run-dependent columns."""
    columns = table_cells(shown[0])
    assert table_cells(printed[0]) == columns, printed[0]
    assert len(printed) == len(shown), f"README shows {len(shown) - 1} rows: {printed}"
    for shown_row, printed_row in zip(shown[1:], printed[1:], strict=True):
        pairs = zip(columns, table_cells(shown_row, len(columns)),
                    table_cells(printed_row, len(columns)), strict=True)
        for column, expected, got in pairs:
            if column not in RUN_DEPENDENT_COLUMNS:
                assert got == expected, f"{column}: printed {got!r}, README {expected!r}"


def check_output(shown: list[str], printed: str) -> None:
    """What a console step printed, held against what the README shows under it."""
    lines = printed.splitlines()
    if shown and len(labelled(shown)) == len(shown):
        check_labelled(shown, lines)
    elif shown and TABLE_HEADER.fullmatch(shown[0]):
        check_table(shown, lines)
    else:
        assert lines == shown


# --- a person's shell -------------------------------------------------------------------------

def person_environment() -> dict[str, str]:
    """The environment of a shell that follows the README: no SCHEDULER_* variables and no
    trust variables naming another CA."""
    return {name: value for name, value in os.environ.items()
            if not name.startswith("SCHEDULER_") and name not in TRUST_VARIABLES}


@dataclass
class Shell:
    """A person's bash in the README's directory. Each command runs in a bash of its own that
    starts with the variables the commands before it left, as in one interactive shell: every
    assignment is exported (`set -a`) and the environment is read back after the command."""

    cwd: Path
    env: dict[str, str]
    saved: Path  # where a command's bash writes its environment on the way out

    def run(self, command: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
        """Run one command; the variables it sets stay for the next ones."""
        script = (f"set -a\n{command}\nstatus=$?\nenv -0 > '{self.saved}'\nexit $status\n")
        done = subprocess.run(["bash", "-c", script], cwd=self.cwd, env=self.env,
                              capture_output=True, text=True, timeout=timeout)
        if self.saved.exists():
            self.env = self.read_saved()
        return done

    def read_saved(self) -> dict[str, str]:
        """The variables the last command's bash left, apart from those bash sets itself."""
        pairs = (item.split("=", 1) for item in self.saved.read_text().split("\0") if item)
        return {name: value for name, value in pairs if name not in SHELL_OWN_VARIABLES}

    @contextmanager
    def background(self, command: str) -> Iterator[subprocess.Popen[bytes]]:
        """Run a long-lived command (`cmd &`) while the block runs; stop it afterwards."""
        process = subprocess.Popen(["bash", "-c", f"exec {command}"], cwd=self.cwd,
                                   env=self.env, stdout=subprocess.DEVNULL,
                                   stderr=subprocess.DEVNULL, start_new_session=True)
        try:
            yield process
        finally:
            if process.poll() is None:
                os.killpg(process.pid, signal.SIGTERM)
            process.wait(30)


def accepts_connections(port: int) -> bool:
    """Whether something listens on 127.0.0.1:port."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1):
            return True
    except OSError:
        return False


# --- fixtures ----------------------------------------------------------------------------------

@dataclass
class FirstSteps:
    """The directory `make serve` ran in, its served home, the README as it reads there,
    what `scheduler init` printed, and the shell that follows the README."""

    directory: Path
    server: ServerProcess
    readme: str
    made: str
    shell: Shell
    target_port: int


def make_home(directory: Path, port: int, env: dict[str, str]) -> str:
    """What `make serve PORT=port` runs before serving: `scheduler init` with the Makefile's
    home and certificate directories; what it printed."""
    made = subprocess.run(
        [str(BIN), "init", "--home", ".scheduler-home", "--certs-dir", "certs",
         "--port", str(port)],
        cwd=directory, env=env, capture_output=True, text=True, timeout=120)
    assert made.returncode == 0, made.stderr
    return made.stdout


def serve_variables(readme: str) -> dict[str, str]:
    """The variables the README says the service of its session was started with."""
    part = section(readme, "### With the command-line client")
    named = re.findall(r"started with `(SCHEDULER_\w+)=([^`]*)`", part)
    assert named, "README.md says nothing of how the session's service was started"
    return dict(named)


def two_free_ports() -> tuple[int, int]:
    """Ports for the service and for the README's target, not the same one."""
    port = free_port()
    other = free_port()
    while other == port:
        other = free_port()
    return port, other


@pytest.fixture(scope="module")
def first_steps(tmp_path_factory: pytest.TempPathFactory) -> Iterator[FirstSteps]:
    """A checkout's directory after `make serve`, its home served on a free port with the
    README's `SCHEDULER_OUTBOUND_ALLOW_PRIVATE_NETWORKS=true`."""
    directory = tmp_path_factory.mktemp("readme") / "scheduler"
    directory.mkdir()
    (directory / ".venv").symlink_to(VENV, target_is_directory=True)
    port, target_port = two_free_ports()
    env = person_environment()
    made = make_home(directory, port, env)
    home = directory / ".scheduler-home"
    profile = tomllib.loads((home / "client.toml").read_text())
    info = {"subscriptionId": profile["subscription"], "caCert": profile["ca"],
            "clientCert": profile["cert"]}
    readme = README.read_text()
    server = ServerProcess(home, info, port, {**env, **serve_variables(readme)})
    server.start(timeout=DEADLINE)
    try:
        readme = as_run_here(readme, directory, port, target_port, server.subscription_id)
        shell = Shell(directory, env, tmp_path_factory.mktemp("shell") / "environment")
        yield FirstSteps(directory, server, readme, made, shell, target_port)
    finally:
        server.stop()


@dataclass
class Ran:
    """A step of a block as it ran: its command (with this run's ids), the output the README
    shows for it (likewise) and what it did."""

    command: str
    shown: str
    done: subprocess.CompletedProcess[str]


def run_until_shown(shell: Shell, command: str, shown: str) -> subprocess.CompletedProcess[str]:
    """Run a command; a command that changes nothing (no `-X`) again until it prints what the
    README shows, as someone polling an operation would."""
    done = shell.run(command)
    if " -X " in command or not shown:
        return done
    pattern = elided(shown)

    def printed_as_shown() -> bool:
        nonlocal done
        done = shell.run(command)
        # A command that fails will not succeed by being run again.
        return done.returncode != 0 or bool(pattern.search(done.stdout))

    if done.returncode == 0 and not pattern.search(done.stdout):
        wait_for(printed_as_shown, DEADLINE)
    return done


@pytest.fixture(scope="module")
def curl_block(first_steps: FirstSteps) -> list[Ran]:
    """The curl block run step by step; the example request id it shows is replaced by the one
    the service answered with from then on (the ID element shows its first 8 digits)."""
    block = only_block(section(first_steps.readme, "### With curl"), "sh")
    ids: dict[str, str] = {}
    ran: list[Ran] = []
    for step in script_steps(block):
        command, shown = step.command, "\n".join(step.shown)
        for example, real in ids.items():
            command, shown = command.replace(example, real), shown.replace(example, real)
        done = run_until_shown(first_steps.shell, command, shown)
        example_id = re.search(r"x-ms-request-id: (\w+)", shown)
        real_id = re.search(r"x-ms-request-id: (\w+)", done.stdout)
        if example_id and real_id:
            ids = {example_id.group(1): real_id.group(1),
                   example_id.group(1)[:8]: real_id.group(1)[:8]}
            shown = shown.replace(example_id.group(1), real_id.group(1))
        ran.append(Ran(command, shown, done))
    return ran


# --- the steps -----------------------------------------------------------------------------

def test_make_serve_prints_what_the_readme_shows(first_steps: FirstSteps) -> None:
    shown = only_block(section(first_steps.readme, "## First steps"), "text").splitlines()
    # The first line is the Makefile's own echo; `scheduler init` prints the lines up to `...`,
    # and `scheduler serve` the last one, with its pid.
    elision = shown.index("...")
    made = first_steps.made.splitlines()
    assert made[:elision - 1] == shown[1:elision]
    [ready] = [line for line in first_steps.server.output if "scheduler ready" in line]

    def without_pid(line: str) -> str:
        return re.sub(r"pid \d+", "pid N", line.rstrip("\n"))

    assert [without_pid(ready)] == [without_pid(line) for line in shown[elision + 1:]]


def test_the_curl_block_creates_cs1_and_its_operation_succeeds(
        curl_block: list[Ran]) -> None:
    for ran in curl_block:
        assert ran.done.returncode == 0, (ran.command, ran.done.stderr)
        assert elided(ran.shown).search(ran.done.stdout), (ran.command, ran.done.stdout)
    put = next(ran for ran in curl_block if " -X PUT " in ran.command)
    assert put.done.stdout.split()[:2] == ["HTTP/1.1", "202"]
    poll = next(ran for ran in curl_block if "/operations/" in ran.command)
    assert "<Status>Succeeded</Status>" in poll.done.stdout


def test_the_command_line_session_prints_what_the_readme_shows(
        first_steps: FirstSteps, curl_block: list[Ran]) -> None:
    # The session's collection goes into cs1, which the curl block made.
    part = section(first_steps.readme, "### With the command-line client")
    shell = first_steps.shell
    for step in script_steps(only_block(part, "sh")):
        done = shell.run(step.command)
        assert done.returncode == 0, (step.command, done.stderr)
    target = re.search(r"`(python3 -m http\.server \d+)`", part)
    assert target, "README.md names no http.server target"
    with shell.background(target.group(1)):
        assert wait_for(lambda: accepts_connections(first_steps.target_port), DEADLINE)
        for step in console_steps(only_block(part, "console")):
            shown_file = re.fullmatch(r"cat (\S+)", step.command)
            if shown_file:
                (first_steps.directory / shown_file.group(1)).write_text(
                    "\n".join(step.shown) + "\n")
            done = shell.run(step.command)
            assert done.returncode == 0, (step.command, done.stdout, done.stderr)
            check_output(step.shown, done.stdout)


def test_the_azure_client_snippet_creates_its_cloud_service(first_steps: FirstSteps) -> None:
    snippet = only_block(section(first_steps.readme, "### With the Azure client"), "python")
    server = first_steps.server
    # The snippet leaves SUB to the reader: the subscription `make serve` printed.
    program = f"SUB = {server.subscription_id!r}\n{snippet}"
    done = subprocess.run([str(VENV / "bin" / "python"), "-c", program],
                          cwd=first_steps.directory, env=person_environment(),
                          capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    name = re.search(r'create_cloud_service\("([^"]+)"', snippet)
    assert name, "the snippet creates no cloud service"
    url = f"{server.base_url}/{server.subscription_id}/cloudservices/{name.group(1)}"
    session = server.session()
    assert wait_for(lambda: session.get(url).status_code == 200, DEADLINE)


def test_the_resource_manager_snippets_work_with_the_certificate_and_a_principal(
        first_steps: FirstSteps) -> None:
    blocks = re.findall(r"^```python\n(.*?)^```$",
                        section(first_steps.readme,
                                "### With azure-mgmt-scheduler (Resource Manager)"),
                        re.MULTILINE | re.DOTALL)
    assert len(blocks) == 2, "expected the certificate's snippet and the principal's"
    server = first_steps.server
    subscription = f"SUB = {server.subscription_id!r}\n"
    with_certificate = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", subscription + blocks[0]],
        cwd=first_steps.directory, env=person_environment(), capture_output=True, text=True,
        timeout=120)
    assert with_certificate.returncode == 0, with_certificate.stderr
    url = (f"{server.base_url}/{server.subscription_id}/cloudservices/rg1/resources/"
           "scheduler/jobcollections/jc1")
    assert server.session().get(url).status_code == 200
    command = re.search(r"`(\.venv/bin/scheduler principals create [^`]+)`",
                        section(first_steps.readme,
                                "### With azure-mgmt-scheduler (Resource Manager)"))
    assert command, "the section shows no `scheduler principals create` command"
    made = first_steps.shell.run(command.group(1) + " --output json")
    assert made.returncode == 0, made.stderr
    principal = json.loads(made.stdout)
    credentials = (f"CLIENT_ID = {principal['clientId']!r}\n"
                   f"SECRET = {principal['clientSecret']!r}\n")
    as_principal = subprocess.run(
        [str(VENV / "bin" / "python"), "-c", subscription + credentials + blocks[1]],
        cwd=first_steps.directory, env=person_environment(), capture_output=True, text=True,
        timeout=120)
    assert as_principal.returncode == 0, as_principal.stderr
    assert "'jc1'" in as_principal.stdout
