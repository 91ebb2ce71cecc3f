"""The code blocks of README.md and docs/ as tests: the convention, the parser and the runners.

Every fenced block is one of:

- ```` ```console ````: ``$ mbcost ...`` lines (``\\`` continues a line), each followed by the output it
  prints. The command runs in-process (as a pipe sees it: no colours, 160 columns) and its output is
  compared with the one shown after normalising whitespace (every run of spaces and newlines is one space).
  ``...`` in the shown output (a line of its own, or within a line) stands for any text; nothing shown means
  the command prints
  nothing (``--output FILE``). Exit status 0 is expected unless the block is marked ``exit N``.
- ```` ```python ````: runs; blocks of one page share one namespace and one working directory (a
  temporary one), in page order, with the console blocks.
- ```` ```pycon ````: ``>>>`` examples run as doctests in the same namespace; what is shown is compared
  (whitespace normalised, ``...`` matches anything).
- ```` ```bash ````: commands to copy (installing, CI, measuring for minutes): not run, but every
  ``mbcost`` command in them is parsed by the real CLI, so a renamed option or command fails the tests.
- ```` ```toml ````: parsed; ```` ```text ````, ```` ```yaml ````: not run.

A marker in an HTML comment on the line before the fence (invisible on GitHub and on the site) changes that:

- ``<!-- docs-test: timing -->``: the commands measure time; they run with a fake timer (no real timing),
  their exit status is checked and their shown output (a real measurement, which names its machine) is not
  compared.
- ``<!-- docs-test: exit N -->``: the commands are expected to exit with status N (output still compared).
- ``<!-- docs-test: skip REASON -->``: not run (what it needs cannot exist in a test: a GPU, a model
  package of your own). The reason is required.

``python tests/doc_examples.py --update FILE...`` rewrites the shown output of the compared console blocks
of FILE with what the commands print now (review the diff: it is what the readers will see).
"""

from __future__ import annotations

import doctest
import os
import re
import shlex
import sys
import textwrap
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[1]
RUN = {"console", "python", "pycon"}
CHECKED = {"bash", "toml"}
INERT = {"text", "yaml", "json"}
MARKER = re.compile(r"<!--\s*docs-test:\s*(\S+)\s*(.*?)\s*-->")
FENCE = re.compile(r"^(?P<indent> *)```(?P<lang>[\w-]*)[^\n]*\n(?P<code>.*?)^(?P=indent)```[ \t]*$", re.S | re.M)


@dataclass(frozen=True)
class Block:
    path: Path
    line: int  # of the opening fence, 1-based
    lang: str
    code: str
    marker: str | None = None
    argument: str = ""
    span: tuple[int, int] = (0, 0)  # the code's character span in the file (for --update)

    @property
    def where(self) -> str:
        return f"{_shown_path(self.path)}:{self.line}"


def _shown_path(path: Path) -> Path:
    return path.relative_to(ROOT) if path.is_relative_to(ROOT) else path


def pages() -> list[Path]:
    """README.md and every Markdown page of the docs."""
    return [ROOT / "README.md", *sorted((ROOT / "docs").rglob("*.md"))]


def blocks(path: Path) -> list[Block]:
    text = path.read_text(encoding="utf-8")
    found = []
    for m in FENCE.finditer(text):
        before = [ln for ln in text[: m.start()].splitlines() if ln.strip()]
        marker = MARKER.fullmatch(before[-1].strip()) if before else None
        code = textwrap.dedent("\n".join(ln[len(m["indent"]):] for ln in m["code"].splitlines()))
        found.append(Block(path, text[: m.start()].count("\n") + 1, m["lang"], code,
                           marker[1] if marker else None, marker[2] if marker else "", m.span("code")))
    return found


def normalise(text: str) -> str:
    return " ".join(text.split())


def matches(shown: str, actual: str) -> bool:
    """``shown`` equals ``actual`` with whitespace normalised, where ``...`` in ``shown`` (a line of its own,
    or within a line: ``wrote report.html (...)``) matches any text, as doctest's ELLIPSIS."""
    parts = normalise(shown.replace("…", "...")).split("...")
    got = normalise(actual)
    if len(parts) == 1:
        return parts[0] == got
    head, tail = parts[0].rstrip(), parts[-1].lstrip()
    if not (got.startswith(head) and got.endswith(tail)) or len(head) + len(tail) > len(got):
        return False
    at, end = len(head), len(got) - len(tail)
    for p in parts[1:-1]:
        i = got.find(p.strip(), at)
        if i < 0 or i + len(p.strip()) > end:
            return False
        at = i + len(p.strip())
    return True


# -- console blocks ------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Command:
    argv: list[str]
    shown: str
    line: int


def commands(block: Block) -> list[Command]:
    """The ``$ ...`` commands of a console block, each with the output shown under it."""
    out: list[Command] = []
    lines = block.code.splitlines()
    i = 0
    while i < len(lines):
        if not lines[i].startswith("$ "):
            raise ValueError(f"{block.where}: console output before any '$ ' command: {lines[i]!r}")
        start = i
        text = lines[i][2:]
        while text.endswith("\\"):
            i += 1
            text = text[:-1] + " " + lines[i].strip()
        i += 1
        shown = []
        while i < len(lines) and not lines[i].startswith("$ "):
            shown.append(lines[i])
            i += 1
        argv = shlex.split(text, comments=True)
        out.append(Command(_mbcost_args(argv, block), "\n".join(shown), block.line + 1 + start))
    return out


def _mbcost_args(argv: list[str], block: Block) -> list[str]:
    if argv[:1] == ["mbcost"]:
        return argv[1:]
    if argv[:3] == ["python", "-m", "mbcost"]:
        return argv[3:]
    raise ValueError(f"{block.where}: a console block runs mbcost commands only, not {' '.join(argv)!r}")


def invoke(args: list[str], measure: Any = None) -> Any:
    """The CLI in-process, as a pipe sees it; a click Result (``output`` holds stdout and stderr)."""
    from typer.testing import CliRunner

    from mbcost.cli import app

    # As a plain pipe: no colour forced on, no step summary to append to (whatever the CI around sets).
    unset = dict.fromkeys(("FORCE_COLOR", "TTY_COMPATIBLE", "TTY_INTERACTIVE", "GITHUB_STEP_SUMMARY"))
    return CliRunner(env=unset).invoke(app, args, obj=measure, catch_exceptions=False)


def expected_exit(block: Block) -> int:
    return int(block.argument) if block.marker == "exit" else 0


# -- bash blocks: parsed by the real CLI ------------------------------------------------------------------------


def mbcost_lines(code: str) -> Iterator[list[str]]:
    """The argument lists of every ``mbcost``/``python -m mbcost`` command in a shell block."""
    joined = re.sub(r"\\\n\s*", " ", code)
    for line in joined.splitlines():
        lex = shlex.shlex(line, posix=True, punctuation_chars=True)
        lex.whitespace_split = True
        words: list[str] = []
        for token in [*lex, ";"]:  # comments dropped; commands split at && || ; |
            if token not in ("&&", "||", ";", "|"):
                words.append(token)
                continue
            if words[:1] == ["mbcost"]:
                yield words[1:]
            elif words[:3] == ["python", "-m", "mbcost"]:
                yield words[3:]
            words = []


def parse_only(args: list[str]) -> None:
    """Parse ``mbcost ARGS`` with the real command's parser (options, choices, types), running nothing;
    click's ``UsageError`` when it would be refused."""
    import click
    import typer.main

    from mbcost.cli import app

    group = typer.main.get_command(app)
    if not args or args[0].startswith("-"):  # the group's own options (--help)
        group.make_context("mbcost", list(args), resilient_parsing=True)
        return
    name, rest = args[0], args[1:]
    cmd = group.commands.get(name)  # type: ignore[attr-defined]
    if cmd is None:
        raise click.UsageError(f"no such command {name!r}")
    cmd.make_context(name, list(rest))


# -- python and pycon blocks ----------------------------------------------------------------------------------


def run_python(block: Block, namespace: dict[str, Any]) -> None:
    exec(compile(block.code, block.where, "exec"), namespace)  # noqa: S102


def run_pycon(block: Block, namespace: dict[str, Any]) -> list[str]:
    """The doctest failures of a pycon block (empty when every shown result matched)."""
    test = doctest.DocTestParser().get_doctest(block.code, namespace, block.where, str(block.path), block.line)
    failures: list[str] = []
    # verbose=False: doctest would otherwise read -v from sys.argv (pytest -v) and report every passing example
    runner = doctest.DocTestRunner(verbose=False, optionflags=doctest.NORMALIZE_WHITESPACE | doctest.ELLIPSIS)
    runner.run(test, out=failures.append, clear_globs=False)
    namespace.update(test.globs)  # DocTest ran on a copy: later blocks of the page see its names
    return failures


# -- a page, in order -------------------------------------------------------------------------------------------


@contextmanager
def _page_dir(tmp: Path) -> Iterator[None]:
    """Run in ``tmp``: the working directory (files the examples write), on ``sys.path`` (modules they write),
    and the roofline cache's home (``XDG_CACHE_HOME``)."""
    old_cwd, old_cache, old_bytecode = os.getcwd(), os.environ.get("XDG_CACHE_HOME"), sys.dont_write_bytecode
    sys.dont_write_bytecode = True  # a module a page rewrites is read afresh, never from a stale .pyc
    tmp.mkdir(parents=True, exist_ok=True)
    os.chdir(tmp)
    os.environ["XDG_CACHE_HOME"] = str(tmp / "cache")
    sys.path.insert(0, str(tmp))
    try:
        yield
    finally:
        sys.path.remove(str(tmp))
        sys.dont_write_bytecode = old_bytecode
        os.chdir(old_cwd)
        if old_cache is None:
            os.environ.pop("XDG_CACHE_HOME", None)
        else:
            os.environ["XDG_CACHE_HOME"] = old_cache


def run_page(path: Path, tmp: Path, *, refresh: bool = False) -> tuple[list[str], dict[Block, str]]:
    """Run every block of ``path`` in order in ``tmp``. Returns the failures (one message each) and, with
    ``refresh``, the new code of each compared console block (the shown outputs replaced by today's)."""
    failures: list[str] = []
    refreshed: dict[Block, str] = {}
    namespace: dict[str, Any] = {"__name__": "__docs__"}
    with _page_dir(tmp):
        for block in blocks(path):
            if block.marker == "skip":
                if not block.argument:
                    failures.append(f"{block.where}: 'docs-test: skip' needs a reason")
                continue
            if block.lang not in RUN | CHECKED | INERT:
                failures.append(f"{block.where}: unknown block language {block.lang!r}: use one of "
                                f"{sorted(RUN | CHECKED | INERT)}")
            elif block.lang == "python":
                try:
                    run_python(block, namespace)
                except Exception as exc:  # noqa: BLE001 - reported with the block's place
                    failures.append(f"{block.where}: {type(exc).__name__}: {exc}")
            elif block.lang == "pycon":
                failures += run_pycon(block, namespace)
            elif block.lang == "console":
                failures += _run_console(block, refreshed if refresh else None)
            elif block.lang == "bash":
                for args in mbcost_lines(block.code):
                    try:
                        parse_only(args)
                    except Exception as exc:  # noqa: BLE001 - click's usage errors, with the block's place
                        failures.append(f"{block.where}: mbcost {' '.join(args)}: {exc}")
            elif block.lang == "toml":
                try:
                    import tomllib
                except ModuleNotFoundError:  # Python 3.10
                    import tomli as tomllib

                try:
                    tomllib.loads(block.code)
                except tomllib.TOMLDecodeError as exc:
                    failures.append(f"{block.where}: {exc}")
    return failures, refreshed


def _run_console(block: Block, refreshed: dict[Block, str] | None) -> list[str]:
    failures = []
    timing = block.marker == "timing"
    new_lines: list[str] = []
    raw = block.code.splitlines()
    for c in commands(block):
        measure = None
        if timing:
            from bench_fakes import FakeMeasure

            measure = FakeMeasure(run_fn=False)
        result = invoke(c.argv, measure)
        where = f"{_shown_path(block.path)}:{c.line}"
        if result.exit_code != expected_exit(block):
            failures.append(f"{where}: mbcost {' '.join(c.argv)} exited {result.exit_code}, expected "
                            f"{expected_exit(block)}: {result.output[-2000:]}")
        elif not timing and not matches(c.shown, result.output):
            failures.append(f"{where}: mbcost {' '.join(c.argv)} printed other output than shown:\n"
                            f"--- shown\n{c.shown}\n--- printed\n{result.output}")
        first = c.line - block.line - 1
        cmd = [raw[first]]
        while cmd[-1].endswith("\\"):
            cmd.append(raw[first + len(cmd)])
        new_lines += cmd + [ln.rstrip() for ln in result.output.rstrip("\n").splitlines()]
    if refreshed is not None and not timing:
        refreshed[block] = "\n".join(new_lines) + "\n"
    return failures


def update(path: Path, tmp: Path) -> int:
    """Rewrite the shown output of the compared console blocks of ``path``; the number of blocks changed."""
    _, refreshed = run_page(path, tmp, refresh=True)
    text = path.read_text(encoding="utf-8")
    changed = 0
    for block in sorted(refreshed, key=lambda b: b.span, reverse=True):
        start = text.rfind("\n", 0, block.span[0]) + 1
        indent = re.match(r" *", text[start:]).group(0)
        new = textwrap.indent(refreshed[block], indent) if indent else refreshed[block]
        if new != text[block.span[0]:block.span[1]]:
            text = text[: block.span[0]] + new + text[block.span[1]:]
            changed += 1
    path.write_text(text, encoding="utf-8")
    return changed


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:2] != ["--update"] or len(sys.argv) < 3:
        sys.exit("usage: python tests/doc_examples.py --update FILE...")
    sys.path[:0] = [str(ROOT), str(Path(__file__).parent)]  # this checkout's mbcost, and the test helpers
    for name in sys.argv[2:]:
        with tempfile.TemporaryDirectory() as tmp:
            print(f"{name}: {update(Path(name).resolve(), Path(tmp))} block(s) updated")
