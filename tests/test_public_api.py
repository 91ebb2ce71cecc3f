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
