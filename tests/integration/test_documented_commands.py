"""Every command the documentation shows still runs, and does something.

The commands are read from the docs themselves (README.md, docs/*.md, tests/README.md,
bench/README.md: their code blocks and `inline code`) and from the groups' `--help`, so a newly
documented command is checked without touching this file. Each runs as a process against a
redis-server of this module's own (and the fake Taskcluster where it reads Taskcluster); those
that would need Pulse or the real Taskcluster run with `--help`. A command fails when it is
gone (no module, no such command, no such file) or when it exits 0 saying nothing.
"""

from __future__ import annotations

import ast
import os
import pkgutil
import re
import shlex
import subprocess
import sys
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Iterator, Mapping, NamedTuple, Sequence

import pytest

import releng_hardware
from tests.conftest import ROOT, unique, wait_for
from tests.integration.support import RedisServer, free_port

BIN = Path(sys.executable).parent
DOCS = sorted([ROOT / "README.md", ROOT / "tests" / "README.md", ROOT / "bench" / "README.md",
               *(ROOT / "docs").glob("*.md")])
FENCE = re.compile(r"^```[^\n]*\n(.*?)^```", re.MULTILINE | re.DOTALL)
INLINE = re.compile(r"`([^`\n]+)`")
# an indented code block: lines of four spaces' indent after a blank line
INDENTED = re.compile(r"(?:\A|\n[ \t]*\n)((?:(?: {4}|\t)[^\n]*(?:\n|\Z))+)")
# What no working command prints: its module, file or subcommand is gone.
GONE = ("No module named", "No such command", "can't open file", "No such file or directory",
        "is no command", "command not found")
TIMEOUT = 30
# Settings a developer's shell may hold that must not leak into the commands run here.
OWN_SETTINGS = re.compile(r"(REDIS|PULSE|AMQP|TASKCLUSTER)_")


def console_scripts() -> dict[str, str]:
    """setup.py's console scripts: name -> `module:function`."""
    for node in ast.walk(ast.parse((ROOT / "setup.py").read_text())):
        if isinstance(node, ast.keyword) and node.arg == "entry_points":
            lines = ast.literal_eval(node.value)["console_scripts"]
            return dict(tuple(part.strip() for part in line.split("=", 1)) for line in lines)
    raise AssertionError("setup.py has no entry_points")


SCRIPTS = console_scripts()


class Command(NamedTuple):
    """A documented program and its subcommand: `("releng-hardware", "lift")`,
    `("python", "-m", "releng_hardware.inventory", "load")`, `("python", "preload_redis.py")`."""

    words: tuple[str, ...]

    def __str__(self) -> str:
        return " ".join(self.words)


def code_lines(text: str) -> Iterator[tuple[int, str]]:
    """(offset, text) of every line of the code blocks, and of every inline code span outside them."""
    def lines(block: re.Match[str]) -> Iterator[tuple[int, str]]:
        offset = block.start(1)
        for line in block.group(1).splitlines(keepends=True):
            yield offset, line.rstrip("\n")
            offset += len(line)
    for block in FENCE.finditer(text):
        yield from lines(block)
    # the blocks blanked, not cut, so that offsets stay the text's own
    prose = FENCE.sub(lambda block: re.sub(r"[^\n]", " ", block.group(0)), text)
    for block in INDENTED.finditer(prose):
        yield from lines(block)
    for span in INLINE.finditer(prose):
        yield span.start(1), span.group(1)


def _tokens(segment: str) -> list[str]:
    try:
        return shlex.split(segment, comments=True)
    except ValueError:  # an unfinished quote or here-document: the words before it will do
        return segment.split("#", 1)[0].split()


def _subcommand(words: Sequence[str]) -> tuple[str, ...]:
    # a bare lower-case word after the program is its subcommand; options, ids and files are not
    return (words[0],) if words and re.fullmatch(r"[a-z][a-z-]*", words[0]) else ()


def commands_in(line: str) -> Iterator[Command]:
    """The commands of ours in one shell line: every segment between |, ; and && whose
    program is a console script, `python -m releng_hardware…`/`bench`, a script at the top of
    the repository, `gunicorn webserver:app` or `scripts/…`; after `heroku run …`, `exec`,
    `env`, VAR=value, `.venv/bin/` or a Procfile's `name:`."""
    for segment in re.split(r"\|\|?|;|&&", line):
        words = _tokens(segment.strip().removeprefix("$ "))
        if words[:1] == ["heroku"] and words[1:2] == ["run"]:
            rest, words = words[2:], []
            for index, word in enumerate(rest):
                if not word.startswith("-") and (index == 0 or rest[index - 1] not in ("-a", "--app")):
                    words = rest[index:]
                    break
        if words and re.fullmatch(r"[a-z]+:", words[0]):
            words = words[1:]
        while words and (words[0] in ("exec", "env") or re.fullmatch(r"[A-Z_]+=\S*", words[0])):
            words = words[1:]
        if not words:
            continue
        program = words[0].removeprefix(".venv/bin/")
        if program in SCRIPTS:
            yield Command((program, *_subcommand(words[1:])))
        elif program in ("python", "python3") and words[1:2] == ["-m"] and len(words) > 2:
            module = words[2]
            if module == "bench" or module.startswith("releng_hardware"):
                yield Command(("python", "-m", module, *_subcommand(words[3:])))
        elif program in ("python", "python3") and len(words) > 1 and words[1].endswith(".py"):
            yield Command(("python", words[1]))
        elif program == "gunicorn" and "webserver:app" in words:
            yield Command(("gunicorn", "webserver:app"))
        elif re.fullmatch(r"scripts/[\w-]+", program):
            yield Command((program,))


def documented_commands() -> dict[Command, list[str]]:
    """Every command the docs show -> where (file:line)."""
    found: dict[Command, list[str]] = {}
    for doc in DOCS:
        text = doc.read_text()
        for offset, line in code_lines(text):
            for command in commands_in(line):
                number = text.count("\n", 0, offset) + 1
                found.setdefault(command, []).append(f"{doc.relative_to(ROOT)}:{number}")
    return found


DOCUMENTED = documented_commands()


def test_the_reader_finds_commands_in_blocks_spans_pipes_and_heroku_lines():
    text = ("Run `releng-hardware-inventory show | releng-hardware-inventory load --dry-run`.\n"
            "```sh\n"
            "heroku run --no-tty -a releng-hardware python preload_redis.py < x.json  # restore\n"
            "curl -s localhost:8080/machines | python3 -m json.tool\n"
            "listener: exec env PULSE_URL=amqp://x .venv/bin/python -m releng_hardware.cli lift a:b\n"
            "releng-hardware quarantine mdc1:t-1 --reason \"it's hot\n"
            "```\n\n"
            "    releng-hardware lift mdc1:t-1\n\n"
            "`releng-hardware` is the project, `-a releng-hardware` an app; `scripts/test tests/unit`, `scripts/`\n")
    found = [command.words for _, line in code_lines(text) for command in commands_in(line)]
    assert found == [("python", "preload_redis.py"),
                     ("python", "-m", "releng_hardware.cli", "lift"),
                     ("releng-hardware", "quarantine"), ("releng-hardware", "lift"),
                     ("releng-hardware-inventory", "show"), ("releng-hardware-inventory", "load"),
                     ("releng-hardware",), ("scripts/test",)]


def test_the_docs_show_every_console_script_and_the_python_m_forms():
    shown = {command.words[0] for command in DOCUMENTED}
    assert set(SCRIPTS) <= shown, f"undocumented console scripts: {sorted(set(SCRIPTS) - shown)}"
    modules = {command.words[2] for command in DOCUMENTED if command.words[1:2] == ("-m",)}
    assert {f"releng_hardware.{name}" for name in releng_hardware.COMMANDS} <= modules


# -- running them ---------------------------------------------------------------------------

class Run(NamedTuple):
    """What a command did."""

    argv: tuple[str, ...]
    returncode: int
    stdout: str
    stderr: str

    def __str__(self) -> str:
        return (f"$ {' '.join(self.argv)}\nexit {self.returncode}\n--- stdout\n{self.stdout[-2000:]}"
                f"\n--- stderr\n{self.stderr[-2000:]}")

    __repr__ = __str__  # what an assertion shows


def argv_of(words: Sequence[str]) -> list[str]:
    """A documented command line as this test runs it: this interpreter, this virtualenv."""
    program, *rest = words
    if program in ("python", "python3"):
        return [sys.executable, *rest]
    if (BIN / program).exists():
        return [str(BIN / program), *rest]
    return [str(ROOT / program) if program.startswith("scripts/") else program, *rest]


def environment(redis_url: str, prefix: str, **more: str) -> dict[str, str]:
    """The shell's environment without its own settings for us, and the stand-in Redis."""
    env = {name: value for name, value in os.environ.items() if not OWN_SETTINGS.match(name)}
    env.update(REDIS_URL=redis_url, REDIS_KEY_PREFIX=prefix, PATH=f"{BIN}{os.pathsep}{env.get('PATH', '')}",
               **more)
    return env


def run(words: Sequence[str], env: Mapping[str, str], stdin: str = "") -> Run:
    """Run a command from the top of the repository, with a timeout."""
    argv = argv_of(words)
    done = subprocess.run(argv, input=stdin, capture_output=True, text=True, env=dict(env), cwd=ROOT,
                          timeout=TIMEOUT)
    return Run(tuple(words), done.returncode, done.stdout, done.stderr)


def assert_not_gone(result: Run) -> None:
    """The command exists, and neither failed without a word nor succeeded saying nothing."""
    gone = [mark for mark in GONE if mark in result.stderr or mark in result.stdout]
    assert not gone, f"the command is gone ({gone[0]}):\n{result}"
    if result.returncode == 0:
        assert result.stdout.strip() or result.stderr.strip(), f"exit 0 having said nothing:\n{result}"
    else:
        assert result.stderr.strip(), f"exit {result.returncode} without a word on stderr:\n{result}"


def assert_help(result: Run) -> None:
    """`--help` answered with a usage."""
    assert_not_gone(result)
    assert result.returncode == 0 and "usage" in result.stdout.lower(), f"no --help:\n{result}"


@pytest.fixture(scope="module")
def redis_server() -> Iterator[RedisServer]:
    """A redis-server of this module's own, killed at the end."""
    server = RedisServer().start()
    yield server
    server.close()


@pytest.fixture
def env(redis_server: RedisServer) -> dict[str, str]:
    """The commands' environment: the module's redis-server under a prefix of the test's own."""
    return environment(redis_server.url, unique("docs") + ":")


MACHINES = ('[{"machine": "t-linux64-ms-001", "datacenter": "mdc1", '
            '"lastseen": "2026-11-20T14:03:27.512000", "provisioner": "releng-hardware", '
            '"worker_type": "gecko-t-linux-talos"}]')
INVENTORY = "mdc1:t-linux64-ms-001 gecko-t-linux-talos\nmdc2:t-linux64-ms-002 gecko-t-linux-talos\n"


def fake_taskcluster(env: Mapping[str, str]) -> tuple[subprocess.Popen[str], str]:
    """The fake Taskcluster as `scripts/run` starts it, on a free port; its root URL."""
    port = free_port()
    process = subprocess.Popen([sys.executable, "-m", "releng_hardware.tools.fake_taskcluster",
                                "--port", str(port), "--machines", "8"], cwd=ROOT, env=dict(env),
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    root_url = f"http://127.0.0.1:{port}"

    def answers() -> bool:
        assert process.poll() is None, process.communicate()
        try:
            import urllib.request
            with urllib.request.urlopen(root_url + "/api/worker-manager/v1/ping", timeout=1):
                return True
        except OSError as exc:
            return getattr(exc, "code", 0) != 0  # any HTTP answer: it is up
    wait_for(answers, 15, "the fake Taskcluster did not answer")
    return process, root_url


def stop(process: subprocess.Popen[str]) -> None:
    """End a process this test started."""
    process.terminate()
    try:
        process.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        process.kill()
        process.communicate()


def check_for_real(command: Command, env: dict[str, str]) -> list[Run]:
    """Run a command the cheap way it really runs, where there is one; [] where there is none."""
    words = command.words
    program = words[:3] if words[1:2] == ("-m",) else words[:1]
    sub = words[len(program):]
    inventory_programs = (("releng-hardware-inventory",), ("python", "-m", "releng_hardware.inventory"))
    if program in inventory_programs or (sub[:1] == ("inventory",) and program in (
            ("releng-hardware",), ("python", "-m", "releng_hardware.cli"))):
        base = words[:-1] if words[-1] in ("load", "show") else words
        loaded = run([*base, "load"], env, INVENTORY)
        shown = run([*base, "show"], env)
        assert loaded.returncode == 0 and "2 machines in the inventory" in loaded.stdout, loaded
        assert shown.returncode == 0 and "t-linux64-ms-002" in shown.stdout, shown
        return [loaded, shown]
    if words in (("releng-hardware-preload",), ("python", "preload_redis.py")):
        checked = run([*words, "--dry-run"], env, MACHINES)
        loaded = run(words, env, MACHINES)
        assert checked.returncode == 0 and "nothing written" in checked.stdout, checked
        assert loaded.returncode == 0 and "1 written" in loaded.stdout, loaded
        return [checked, loaded]
    if words in (("releng-hardware", "quarantine"), ("releng-hardware", "lift"),
                 ("python", "-m", "releng_hardware.cli", "quarantine"),
                 ("python", "-m", "releng_hardware.cli", "lift")):
        assert run(["releng-hardware-preload"], env, MACHINES).returncode == 0
        more = ["--reason", "documented"] if words[-1] == "quarantine" else []
        result = run([*words, "mdc1:t-linux64-ms-001", *more, "--dry-run"], env)
        # a machine only preloaded has no worker group yet: the command names it and refuses
        assert "mdc1:t-linux64-ms-001" in result.stdout, result
        return [result]
    if words in (("releng-hardware", "backfill"), ("python", "-m", "releng_hardware.cli", "backfill")):
        process, root_url = fake_taskcluster(env)
        try:
            result = run([*words, "--worker-type", "gecko-t-linux-talos"],
                         {**env, "TASKCLUSTER_ROOT_URL": root_url})
        finally:
            stop(process)
        assert result.returncode == 0 and "written" in result.stdout, result
        return [result]
    if words in (("releng-hardware-listen",), ("python", "listen_to_pulse.py")):
        # it runs until stopped once it has Pulse; without Pulse settings it must say so and fail
        result = run(words, env)
        assert result.returncode != 0 and "PULSE_URL" in result.stderr, result
        return [result]
    if words == ("gunicorn", "webserver:app"):
        result = run(["gunicorn", "--check-config", "webserver:app"], env)
        assert result.returncode == 0, result
        return [result._replace(stdout=result.stdout or "configuration checked")]
    if words == ("python", "-m", "releng_hardware.tools.fake_taskcluster"):
        process, root_url = fake_taskcluster(env)
        stop(process)
        return [Run(words, 0, f"answered at {root_url}", "")]
    return []


@pytest.mark.parametrize("command", sorted(DOCUMENTED), ids=str)
def test_every_documented_command_runs_and_does_something(command: Command, env: dict[str, str]):
    where = ", ".join(DOCUMENTED[command][:3])
    if command.words[0].startswith("scripts/"):
        # scripts/run and scripts/test run for minutes (scripts/test is this very run)
        path = ROOT / command.words[0]
        assert path.is_file() and os.access(path, os.X_OK), f"{command} ({where}) is no script"
        return
    for result in check_for_real(command, env):
        assert_not_gone(result)
    if command.words not in (("releng-hardware-listen",), ("python", "listen_to_pulse.py"),
                             ("gunicorn", "webserver:app"), ("python", "-m", "releng_hardware.tools.fake_taskcluster")):
        assert_help(run([*command.words, "--help"], env))


# Each group, in every form it runs as: the same subcommands.
GROUPS = {
    "releng-hardware": (("releng-hardware",), ("python", "-m", "releng_hardware.cli")),
    "releng-hardware-inventory": (("releng-hardware-inventory",), ("python", "-m", "releng_hardware.inventory"),
                                  ("releng-hardware", "inventory"),
                                  ("python", "-m", "releng_hardware.cli", "inventory")),
}


def subcommands(help_text: str) -> list[str]:
    """The names a click group's --help lists under Commands:."""
    listed = help_text.partition("\nCommands:\n")[2]
    return re.findall(r"^  ([a-z][a-z-]*)", listed, re.MULTILINE)


@pytest.mark.parametrize("group", sorted(GROUPS))
def test_every_subcommand_a_group_lists_answers_its_help_and_is_documented(group, env):
    listed = []
    for form in GROUPS[group]:
        listing = run([*form, "--help"], env)
        assert_help(listing)
        listed.append(subcommands(listing.stdout))
        with ThreadPoolExecutor(4) as pool:
            for result in pool.map(lambda name, form=form: run([*form, name, "--help"], env), listed[-1]):
                assert_help(result)
    assert listed[0] and all(names == listed[0] for names in listed), listed
    shown = {command.words[len(form)] for form in GROUPS[group] for command in DOCUMENTED
             if command.words[:len(form)] == form and len(command.words) > len(form)}
    assert set(listed[0]) <= shown, f"{group}: no doc shows {sorted(set(listed[0]) - shown)}"


# -- python -m releng_hardware.inventory is releng-hardware-inventory -----------------------------

def inventory_session(program: Sequence[str], env: Mapping[str, str]) -> list[tuple[int, str, str]]:
    """Load, show, a refused load, a dry run and show again: each one's exit code and output."""
    steps = [(["load"], INVENTORY), (["show"], ""), (["load"], "not an inventory\n"),
             (["load", "--merge", "--dry-run"], "mdc3:t-w1064-ms-001\n"), (["show"], "")]
    return [(result.returncode, result.stdout, result.stderr)
            for result in (run([*program, *args], env, stdin) for args, stdin in steps)]


def test_python_m_inventory_gives_what_the_console_script_gives(redis_server):
    sessions = {" ".join(program): inventory_session(program, environment(redis_server.url, unique("inv") + ":"))
                for program in (("releng-hardware-inventory",), ("python", "-m", "releng_hardware.inventory"),
                                ("releng-hardware", "inventory"), ("python", "-m", "releng_hardware.cli", "inventory"))}
    reference = sessions["releng-hardware-inventory"]
    assert [code for code, _, _ in reference] == [0, 0, 1, 0, 0]
    assert "t-linux64-ms-002" in reference[1][1] and reference[1][1] == reference[4][1]
    for program, session in sessions.items():
        assert session == reference, program


@pytest.mark.parametrize("program", [("releng-hardware-inventory",), ("python", "-m", "releng_hardware.inventory")],
                         ids=" ".join)
def test_the_inventory_command_fails_loudly_when_redis_is_unreachable(program):
    env = environment(f"redis://127.0.0.1:{free_port()}/0", "unreachable:", REDIS_TIMEOUT="1")
    for args, stdin in ((["show"], ""), (["load"], INVENTORY)):
        result = run([*program, *args], env, stdin)
        assert result.returncode == 1, result
        assert not result.stdout and "Redis at redis://127.0.0.1:" in result.stderr, result
        assert "Traceback" not in result.stderr, result


# -- every module: a command, or it says it is none -------------------------------------------------

def package_modules() -> list[str]:
    """Every module and subpackage of releng_hardware, dotted below it."""
    return sorted(info.name.removeprefix("releng_hardware.") for info in
                  pkgutil.walk_packages(releng_hardware.__path__, "releng_hardware."))


def test_every_module_run_with_python_m_is_a_command_or_fails_saying_it_is_none():
    modules = package_modules()
    assert set(releng_hardware.COMMANDS) <= set(modules)
    assert {"cli", "store.machines", "web.app", "tools.fake_taskcluster"} <= set(modules)
    env = environment(f"redis://127.0.0.1:{free_port()}/0", "modules:")

    def try_module(name: str) -> Run:
        args = ["--help"] if name in releng_hardware.COMMANDS else []
        return run(["python", "-m", f"releng_hardware.{name}", *args], env)

    with ThreadPoolExecutor(8) as pool:
        results = dict(zip(modules, pool.map(try_module, modules), strict=True))
    wrong = []
    for name, result in results.items():
        if name in releng_hardware.COMMANDS:
            if result.returncode != 0 or "usage" not in result.stdout.lower():
                wrong.append(f"{name} is a command but its --help failed:\n{result}")
        elif result.returncode == 0 or "is no command" not in result.stderr:
            wrong.append(f"{name} is no command but did not say so and fail:\n{result}")
    assert not wrong, "\n\n".join(wrong)
