"""The declared public API: every module and package states ``__all__``, every declared name exists,
the top-level namespace stays small, and the examples of the README and the docs use only declared names."""

from __future__ import annotations

import ast
import importlib
import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PACKAGE = ROOT / "mbcost"


def _modules() -> list[tuple[str, Path]]:
    found = []
    for path in sorted(PACKAGE.rglob("*.py")):
        parts = list(path.relative_to(ROOT).with_suffix("").parts)
        if parts[-1] == "__init__":
            parts.pop()
        found.append((".".join(parts), path))
    return found


def _declared(path: Path) -> list[str] | None:
    """The module's literal ``__all__``, or ``None`` when it declares none."""
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        targets = node.targets if isinstance(node, ast.Assign) else [node.target] if isinstance(node, ast.AnnAssign) \
            else []
        if any(isinstance(t, ast.Name) and t.id == "__all__" for t in targets) and node.value is not None:
            if isinstance(node.value, ast.List) and all(isinstance(e, ast.Constant) for e in node.value.elts):
                return [e.value for e in node.value.elts]
            return list(eval(compile(ast.Expression(node.value), str(path), "eval"), {"_LAZY": {}}))  # noqa: S307
    return None


def test_every_module_and_package_declares_its_public_names():
    missing = [name for name, path in _modules() if _declared(path) is None]
    assert not missing, f"declare __all__ in {missing}"


@pytest.mark.parametrize("name", [name for name, _ in _modules() if name != "mbcost.__main__"])
def test_every_declared_name_exists(name):
    module = importlib.import_module(name)
    absent = [n for n in module.__all__
              if not hasattr(module, n) and importlib.util.find_spec(f"{name}.{n}") is None]
    assert not absent, f"{name}.__all__ names what it does not define: {absent}"
    assert len(set(module.__all__)) == len(module.__all__), f"{name}.__all__ repeats a name"


def test_the_top_level_namespace_is_small_and_lazy():
    import mbcost

    assert len(mbcost.__all__) <= 30
    for name in mbcost.__all__:
        assert getattr(mbcost, name) is not None
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        mbcost.nope  # noqa: B018


# -- the examples of the README and the docs use only declared names ------------------------------------------------
# (tests/test_docs.py runs them and compares what they show)


def _python_blocks() -> list[tuple[str, str]]:
    """Every Python example of README.md and docs/: ``python`` blocks, and the source of ``pycon`` ones."""
    import doctest

    from doc_examples import blocks, pages

    found = []
    for page in pages():
        for b in blocks(page):
            if b.lang == "python":
                found.append((b.where, b.code))
            elif b.lang == "pycon":
                found.append((b.where, "".join(e.source for e in doctest.DocTestParser().get_examples(b.code))))
    return found


def _undeclared(dotted: str) -> str | None:
    """The first step of ``mbcost.a.b.name`` that its parent does not declare in ``__all__`` (the top level
    may name its subpackages), or ``None`` when every step is declared."""
    parts = dotted.split(".")
    for i in range(2, len(parts)):
        parent = importlib.import_module(".".join(parts[:i]))
        if parts[i] not in parent.__all__:
            return ".".join(parts[: i + 1])
    return None


def test_the_examples_use_only_declared_names():
    blocks = _python_blocks()
    assert len(blocks) >= 10
    used = []
    for where, code in blocks:
        for node in ast.walk(ast.parse(code)):
            if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("mbcost"):
                used += [(where, f"{node.module}.{a.name}") for a in node.names]
            elif isinstance(node, ast.Attribute) and re.fullmatch(r"mbcost(\.\w+)+", ast.unparse(node)):
                used.append((where, ast.unparse(node)))
    assert ("mbcost.analyze" in {u for _, u in used}) and len(used) > 5  # the check reads the examples
    bad = [(where, u, _undeclared(u)) for where, u in used if u.count(".") > 1 and _undeclared(u)]
    assert not bad, f"examples name what the API does not declare (where, name, undeclared step): {bad}"


def test_the_declared_api_check_rejects_a_deep_path():
    assert _undeclared("mbcost.cost.conventions.apply_convention") == "mbcost.cost.conventions"
    assert _undeclared("mbcost.counters.measure") is None


def _public_entries() -> dict[str, object]:
    import mbcost
    from mbcost.comparison import compare_models
    from mbcost.cost.schedule import memory_schedules
    from mbcost.counters import measure, measure_many, reconcile_model
    from mbcost.report import build_report, gather

    return {"analyze": mbcost.analyze, "measure": measure, "measure_many": measure_many,
            "reconcile_model": reconcile_model, "gather": gather, "build_report": build_report,
            "memory_schedules": memory_schedules, "compare_models": compare_models}


def test_every_entry_point_calls_its_input_inputs():
    import inspect

    for name, fn in _public_entries().items():
        params = list(inspect.signature(fn).parameters)
        model = next(p for p in params if p in ("model", "models"))
        assert params[params.index(model) + 1] == "inputs", name  # positional calls keep working


def _former_input_size_cases(tmp_path: Path) -> dict[str, object]:
    """Each entry point that took ``input_size``, reduced to one number of its result."""
    e = _public_entries()
    grid = {"claims": False, "widths": [0.25], "resolutions": [64]}
    return {
        "analyze": lambda **kw: e["analyze"]("v1@0.25", **kw).macs,
        "measure": lambda **kw: e["measure"]("torch", "v1@0.25", **kw).total,
        "reconcile_model": lambda **kw: e["reconcile_model"]("v1@0.25", counters=["torch"], **kw)[1][0].total,
        "gather": lambda **kw: e["gather"]("v1@0.25", **grid, **kw).models[0].macs,
        "build_report": lambda **kw: e["build_report"]("v1@0.25", out=tmp_path / "r.html", bench=False, **grid,
                                                       **kw).data.models[0].macs,
        "memory_schedules": lambda **kw: e["memory_schedules"]("v1@0.25", **kw)[0].peak_activation_bytes,
    }


@pytest.mark.parametrize("name", ["analyze", "measure", "reconcile_model", "gather", "build_report",
                                  "memory_schedules"])
def test_the_former_input_size_still_works_with_a_deprecation_warning(name, tmp_path):
    from mbcost.errors import SpecError

    pytest.importorskip("plotly")
    call = _former_input_size_cases(tmp_path)[name]
    with pytest.warns(DeprecationWarning, match="input_size is deprecated; pass inputs"):
        old = call(input_size=64)
    assert old == call(inputs=64) != call()  # the same input under either name; not the default 224
    with pytest.raises(SpecError, match="give inputs or input_size, not both"):
        call(inputs=64, input_size=64)


def test_each_counter_and_convention_name_is_declared_once():
    """A counter is its adapter module (``NAME``), a convention its table (``name=``); the CLI's choices and help,
    ``parse_counters`` and ``measure`` read those registries. A name spelled again elsewhere in the package (a CLI
    enum, an import-path table, a help text) is a second home that can drift: ``ptflops-aten``, the one name that
    is neither a library's nor a word, may appear in code only at its two declarations (docstrings aside)."""
    from mbcost.cost.conventions import CONVENTIONS
    from mbcost.counters.base import ADAPTERS

    adapters = sorted(p.stem for p in (PACKAGE / "counters").glob("*_counter.py"))
    assert sorted(a.__name__.rpartition(".")[2] for a in ADAPTERS.values()) == adapters  # every adapter registered
    assert "ptflops-aten" in ADAPTERS and "ptflops-aten" in CONVENTIONS
    homes = []
    for path in PACKAGE.rglob("*.py"):
        tree = ast.parse(path.read_text(encoding="utf-8"))
        docstrings = {id(n.value) for n in ast.walk(tree) if isinstance(n, ast.Expr)}
        homes += [str(path.relative_to(PACKAGE)) for n in ast.walk(tree) if isinstance(n, ast.Constant)
                  and isinstance(n.value, str) and "ptflops-aten" in n.value and id(n) not in docstrings]
    assert sorted(homes) == ["cost/conventions/ptflops.py", "counters/ptflops_aten_counter.py"]


@pytest.mark.parametrize("command,entry", [("compare", "compare_models"), ("report", "build_report"),
                                           ("layers", "analyze"), ("reconcile", "reconcile_model"),
                                           ("memory", "memory_schedules")])
def test_the_command_line_and_the_library_default_alike(command, entry):
    """What a command does without an option is what its library call does without the argument."""
    import inspect
    from enum import Enum

    import typer

    from mbcost.cli import app

    renamed = {"input": "inputs", "classes": "num_classes"}
    library = inspect.signature(_public_entries()[entry]).parameters
    options = typer.main.get_command(app).commands[command].params
    shared = [(o, library[renamed.get(o.name, o.name)]) for o in options if renamed.get(o.name, o.name) in library]
    assert len(shared) >= 2, [o.name for o in options]
    for option, parameter in shared:
        if option.required or parameter.default is inspect.Parameter.empty:
            continue
        default = option.default.value if isinstance(option.default, Enum) else option.default
        if entry == "reconcile_model" and option.name == "counters":  # the command's "all" is the library's None
            assert (default, parameter.default) == ("all", None)
            continue
        if option.multiple:  # a repeatable option given no times is None, the library's empty sequence or None
            default, expected = default or (), parameter.default or ()
        else:
            expected = parameter.default
        assert default == expected, (command, option.name, default, expected)
