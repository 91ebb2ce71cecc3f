"""The engine's shape (issue 20, item 3): small modules, no module state rebound per walk, torch's
private APIs in one module. Read from the source with ``ast``, so a new module is checked too."""

from __future__ import annotations

import ast
import re
from pathlib import Path

ENGINE = Path(__file__).resolve().parents[1] / "mbcost" / "cost"
HOME = "torch_internals.py"

#: Files another branch is still reshaping (the op table), checked once it lands.
PENDING_SIZE: set[str] = set()
PENDING_PRIVATE: set[str] = set()

# torch.<anything>._private, torch.utils._x, an attribute ``._cdata``, Module's ``_global_*`` hook dicts
PRIVATE = re.compile(r"torch(\.\w+)*\._\w+|\._cdata\b|_global_\w+_hooks")


def _engine_files() -> list[Path]:
    return sorted(ENGINE.rglob("*.py"))


def test_no_engine_module_has_more_than_400_lines():
    long = {p.relative_to(ENGINE).as_posix(): n for p in _engine_files()
            if (n := len(p.read_text(encoding="utf-8").splitlines())) > 400}
    assert set(long) <= PENDING_SIZE, long


def test_no_engine_module_rebinds_module_state():
    found = [p.name for p in _engine_files()
             if any(isinstance(node, (ast.Global, ast.Nonlocal)) for node in ast.walk(ast.parse(p.read_text())))]
    assert found == []


def _code_lines(path: Path) -> list[str]:
    """The file's lines outside docstrings and comments."""
    text = path.read_text(encoding="utf-8")
    docstrings = set()
    for node in ast.walk(ast.parse(text)):
        if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) and isinstance(node.value.value, str):
            docstrings.update(range(node.lineno, node.end_lineno + 1))
    return [line.split("#")[0] for i, line in enumerate(text.splitlines(), 1) if i not in docstrings]


def test_private_torch_apis_live_in_one_module_that_says_why():
    users = {p.name for p in _engine_files() if any(PRIVATE.search(line) for line in _code_lines(p))}
    assert users - PENDING_PRIVATE == {HOME}
    home = (ENGINE / HOME).read_text(encoding="utf-8")
    doc = ast.get_docstring(ast.parse(home))
    # every private name the module uses is named in its docstring (its reason next to it)
    used = {m.group(0).rsplit(".", 1)[-1] for line in _code_lines(ENGINE / HOME) for m in PRIVATE.finditer(line)}
    assert used and all(name.lstrip(".") in doc or name in doc for name in used), used
