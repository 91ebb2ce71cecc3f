"""The tutorial notebook (docs/tutorial.ipynb) runs from top to bottom in a fresh kernel of this
environment, its results are the ones stated, and the outputs committed with it (what the documentation
site shows) are what it prints today, except the cells tagged ``timing`` (a measurement on this machine)."""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK = ROOT / "docs" / "tutorial.ipynb"
KERNEL = "mbcost-tutorial"


def _text(cell: dict, mime: str = "text/plain") -> str:
    """What a code cell showed in ``mime``: its results' data and what it printed (stdout; stderr is the
    environment's noise, such as torch's warnings)."""
    parts = []
    for out in cell.get("outputs", []):
        if out["output_type"] in ("execute_result", "display_data") and mime in out["data"]:
            parts.append("".join(out["data"][mime]))
        elif out["output_type"] == "stream" and out["name"] == "stdout" and mime == "text/plain":
            parts.append("".join(out["text"]))
    return "".join(parts)


def _shown(cell: dict) -> str:
    """What a reader sees of a cell: mbcost's HTML table where there is one (the committed notebook keeps no
    text repr beside it), else the text."""
    html = _text(cell, "text/html")
    return html if html.startswith('<table class="mbcost"') else _normalise(_text(cell))


def _normalise(text: str) -> str:
    return " ".join(text.split())


@pytest.fixture(scope="module")
def executed(tmp_path_factory) -> list[dict]:
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    kernelspec = pytest.importorskip("ipykernel.kernelspec")
    tmp = tmp_path_factory.mktemp("tutorial")
    # A kernel of this very interpreter (never a python3 kernel found elsewhere on the machine), importing
    # this checkout's mbcost.
    kernelspec.install(kernel_name=KERNEL, prefix=str(tmp / "jupyter"))
    mp = pytest.MonkeyPatch()
    mp.setenv("JUPYTER_PATH", str(tmp / "jupyter" / "share" / "jupyter"))
    mp.setenv("PYTHONPATH", str(ROOT))
    mp.setenv("XDG_CACHE_HOME", str(tmp / "cache"))
    try:
        nb = nbformat.read(NOTEBOOK, as_version=4)
        client = nbclient.NotebookClient(nb, kernel_name=KERNEL, timeout=600,
                                         resources={"metadata": {"path": str(tmp)}})
        client.execute()
    finally:
        mp.undo()
    return [c for c in nb.cells if c.cell_type == "code"]


def _cell(cells: list[dict], fragment: str) -> dict:
    """The first code cell whose source holds ``fragment``."""
    return next(c for c in cells if fragment in c.source)


def test_the_kernel_is_this_interpreter(executed):
    # the first cell imports mbcost; this checkout's, under this interpreter
    assert _text(executed[0]).strip("'\n") == __import__("mbcost").__version__
    assert sys.executable  # the kernelspec written by ipykernel points at sys.executable


def test_the_separable_convolution(executed):
    html = _text(_cell(executed, "conv = "), "text/html")
    assert html.startswith('<table class="mbcost"') and "= 521/4608" in html
    # 3*3*512*512*14*14 = 462,422,016 standard; 3*3*512*14*14 + 512*512*14*14 = 52,283,392 separable
    assert _text(_cell(executed, "conv.macs_ratio")) == \
        "(Fraction(521, 4608), Fraction(521, 4608), 462422016, 52283392)"
    # 1 / (1/N + 1/9) for each N: 9N / (N + 9)
    expected = [(n, round(9 * n / (n + 9), 2)) for n in (32, 64, 128, 256, 512, 1024)]
    assert _text(_cell(executed, "[(n, round(")) == repr(expected)


def test_v1_against_vgg16(executed):
    html = _text(_cell(executed, "from mbcost.comparison import compare_models"), "text/html")
    assert "4,231,976" in html and "138,357,544" in html  # torchvision publishes 138,357,544 for vgg16
    # V1 Table 8: "32 times smaller and 27 times less compute intensive"
    assert _text(_cell(executed, "v1, vgg16 = ")) == "(32.7, 27.2)"
    shares = _text(_cell(executed, "{name: f"))
    assert "'pwconv': '94.9% of MACs, 74.2% of params'" in shares  # V1 Table 2: 95% and 75%


def test_v2_blocks_and_memory(executed):
    rows = _normalise(_text(_cell(executed, "from mbcost.claims.v2_table import v2_table")))
    # V2 Table 2, first rows: 224^2 x 3 conv2d - 32 1 2; 112^2 x 32 bottleneck 1 16 1 1; 112^2 x 16 bottleneck 6 24 2 2
    assert rows.startswith("[('224^2 x 3', 'conv2d', None, 32, 1, 2), ('112^2 x 32', 'bottleneck', 1, 16, 1, 1), "
                           "('112^2 x 16', 'bottleneck', 6, 24, 2, 2)")
    v2 = next(c for c in executed if c.source.strip() == "v2")
    assert "3,504,872" in _text(v2, "text/html")
    # V2 Table 3 (16-bit): V1 112x112x64x2 = 1,605,632 either way; V2 112x112x96x2 materialized, 112x112x16x2 streamed
    assert _text(_cell(executed, "from mbcost.cost.schedule import")) == \
        "[('v1', 1605632, 1605632), ('v2', 2408448, 401408)]"


def test_the_measurement_ran(executed):
    html = _text(_cell(executed, "from mbcost.comparison import measure_conv"), "text/html")
    assert "mbcost sweep" in html and "measured on" in html
    said = _text(_cell(executed, "print(f\"MACs predict"))
    assert re.fullmatch(r"MACs predict 8\.84x; measured \d+\.\d\dx \(\d+% of the MAC saving survives\)\n", said)


def test_the_committed_outputs_are_todays(executed):
    committed = [c for c in json.loads(NOTEBOOK.read_text(encoding="utf-8"))["cells"] if c["cell_type"] == "code"]
    assert len(committed) == len(executed)
    for old, new in zip(committed, executed, strict=True):
        if "timing" in old.get("metadata", {}).get("tags", []):
            assert old["outputs"], f"the committed notebook shows no measurement for {old['source']!r}"
            continue
        assert _shown(old) == _shown(new), "".join(old["source"])  # pandas' own HTML is compared as its text
