"""README.md and docs/ as tests: every code block runs (or is parsed) as tests/doc_examples.py describes, and
what a block shows is what the code prints today. Also: the README stays a front door (at most 300 lines,
the quick start unchanged), every command has a page, and the convention's checker catches what it should."""

from __future__ import annotations

import pytest
from doc_examples import ROOT, Block, blocks, commands, matches, mbcost_lines, pages, parse_only, run_page

README = ROOT / "README.md"
QUICK_START = ("python -m pip install -e . && mbcost compare --input 224 --models v1,v2,vgg16\n"
               'python -m pip install -e ".[test]" && python -m pytest\n')


@pytest.mark.parametrize("page", pages(), ids=lambda p: str(p.relative_to(ROOT)))
def test_every_example_of_the_page_runs_and_shows_what_it_prints(page, tmp_path):
    failures, _ = run_page(page, tmp_path)
    assert not failures, "\n\n".join(failures)


def test_the_pages_have_runnable_examples_and_each_is_marked_only_with_a_known_marker():
    found = [b for page in pages() for b in blocks(page)]
    langs = {b.lang for b in found}
    assert {"console", "python", "pycon", "bash"} <= langs
    assert sum(b.lang in ("console", "python", "pycon") and b.marker != "skip" for b in found) >= 40
    unknown = [(b.where, b.marker) for b in found if b.marker not in (None, "skip", "timing", "exit")]
    assert not unknown, unknown
    # every fence is parsed: a page's count of ``` lines is twice its blocks
    for page in pages():
        fences = sum(1 for line in page.read_text(encoding="utf-8").splitlines() if line.lstrip().startswith("```"))
        assert fences == 2 * len(blocks(page)), page


def test_the_readme_is_a_front_door():
    text = README.read_text(encoding="utf-8")
    assert len(text.splitlines()) <= 300
    # what CI and newcomers run, byte for byte, as the first block under "Quick start"
    quick = text.split("\n## Quick start", 1)[1]
    assert quick.split("```bash\n", 1)[1].split("```\n", 1)[0] == QUICK_START
    # one example per command, run in the tests (a console block that runs it)
    shown = {c.argv[0] for b in blocks(README) if b.lang == "console" for c in commands(b)}
    assert shown == set(_commands()), set(_commands()) ^ shown


def _commands() -> list[str]:
    import typer.main

    from mbcost.cli import app

    return sorted(typer.main.get_command(app).commands)  # type: ignore[attr-defined]


def test_every_command_has_a_page_in_the_site_navigation():
    nav = (ROOT / "mkdocs.yml").read_text(encoding="utf-8")
    assert _commands() == sorted(["bench", "calibrate", "compare", "conv", "gate", "layers", "memory", "predict",
                                  "profile", "reconcile", "report", "roofline", "sweep",
                                  "weights"])  # `python -m mbcost --help`
    for name in _commands():
        page = ROOT / "docs" / "commands" / f"{name}.md"
        assert page.is_file(), page
        assert f"commands/{name}.md" in nav, name
        runs = [c for b in blocks(page) if b.lang == "console" for c in commands(b) if c.argv[:1] == [name]]
        assert runs, f"{page.name} shows no run of mbcost {name}"
    assert (ROOT / "docs" / "tutorial.ipynb").is_file() and "tutorial.ipynb" in nav


# -- the checker itself: it fails where it should ----------------------------------------------------------------


def test_a_changed_output_an_unknown_option_and_a_failing_example_are_caught(tmp_path):
    page = tmp_path / "page.md"
    page.write_text(
        "```console\n$ mbcost conv --cin 32 --cout 32 --k 3 --size 8 --format csv\nsomething else\n```\n\n"
        "```bash\nmbcost compare --models v1 --no-such-option\n```\n\n"
        "```pycon\n>>> 1 + 1\n3\n```\n\n"
        "```python\nraise ValueError('rotten')\n```\n\n"
        "<!-- docs-test: skip -->\n```python\npass\n```\n\n"
        "```sh\nls\n```\n", encoding="utf-8")
    failures, _ = run_page(page, tmp_path / "run")
    text = "\n".join(failures)
    assert "printed other output than shown" in text
    assert "No such option: --no-such-option" in text
    assert "Expected:\n    3\nGot:\n    2" in text
    assert "ValueError: rotten" in text
    assert "'docs-test: skip' needs a reason" in text
    assert "unknown block language 'sh'" in text
    assert len(failures) == 6


def test_shown_output_matches_with_whitespace_normalised_and_ellipses():
    assert matches("a  b\n c", "a b c\n")
    assert matches("wrote x (... MB; done)", "wrote x (5.2 MB; done)")
    assert matches("first\n...\nlast", "first\nmiddle\nrows\nlast")
    assert not matches("first\n...\nlast", "first\nmiddle")
    assert not matches("a b", "a b c")
    assert not matches("", "something")


def test_shell_blocks_are_read_as_a_shell_would():
    code = ("pip install 'mbcost[counters]'   # torch's own; not a command\n"
            "python -m pip install -e . && mbcost compare --input 224 \\\n   --models v1  # a comment\n"
            "python -m mbcost gate --update\n")
    assert list(mbcost_lines(code)) == [["compare", "--input", "224", "--models", "v1"], ["gate", "--update"]]
    parse_only(["compare", "--input", "224", "--models", "v1"])
    with pytest.raises(Exception, match="No such option"):
        parse_only(["gate", "--updat"])


def test_a_marker_belongs_to_the_block_right_after_it():
    found = blocks(ROOT / "docs" / "ci-gate.md")
    exit1 = [b for b in found if b.marker == "exit"]
    assert [(b.lang, b.argument) for b in exit1] == [("console", "1")]
    assert all(isinstance(b, Block) for b in found)


def test_the_readmes_shared_options_are_each_commands_options():
    """The README says which commands take ``--format table|markdown|csv|json`` and ``--output`` and names the
    others with what they take instead: checked against each command's own options."""
    import re

    import typer.main

    from mbcost.cli import app

    text = " ".join(README.read_text(encoding="utf-8").split())
    claim = re.search(r"Every command (?:but (.+?) )?takes `--format ([a-z|]+)` and `--output FILE`", text)
    assert claim, "the README's sentence on shared options is gone"
    exceptions = dict(re.findall(r"`(\w+)` \(`(--[a-z]+)[ `]", claim.group(1) or ""))
    for name, command in typer.main.get_command(app).commands.items():  # type: ignore[attr-defined]
        options = {o: p for p in command.params for o in p.opts}
        if name in exceptions:
            assert "--output" not in options and exceptions[name] in options, name
            continue
        assert "--output" in options, name
        fmt = options["--format"]  # typer's own option (its enum), or click's (its choices)
        desc = getattr(fmt, "type_descriptor", None)
        choices = [c.value for c in desc.annotation] if desc is not None else list(fmt.type.choices)
        assert "|".join(choices) == claim.group(2), name
