"""The analysis cache (issue 19): a repeat ``mbcost predict`` in a fresh process answers without importing torch,
with the same numbers as the analysis it kept; what the cache key holds; what it refuses to cache.

The fresh-process tests run the real CLI in a subprocess and read ``sys.modules`` at its end: torch's import
alone takes over a second on a small VM, so a prediction that imported it could not be fast.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from predict_fakes import hand_profile

from mbcost.predict import cache
from mbcost.predict.predictor import analysis_of, cached_key, current_key, predict
from mbcost.predict.profile import save_profile

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture(autouse=True)
def _isolated(monkeypatch, tmp_path):
    monkeypatch.syspath_prepend(str(Path(__file__).parent))
    monkeypatch.setenv("MBCOST_PROFILE_DIR", str(tmp_path / "profiles"))
    monkeypatch.setenv("MBCOST_ANALYSIS_DIR", str(tmp_path / "analyses"))
    monkeypatch.chdir(tmp_path)


def _fresh_cli(*args: str) -> tuple[str, bool]:
    """``mbcost ARGS`` in a new Python process: (stdout, whether torch was imported by its end)."""
    code = ("import sys\nfrom mbcost.cli import main\nsys.argv = ['mbcost', *sys.argv[1:]]\n"
            "try:\n    main()\nexcept SystemExit as e:\n    assert not e.code, e.code\n"
            "print('TORCH' if 'torch' in sys.modules else 'NO-TORCH', file=sys.stderr)\n")
    r = subprocess.run([sys.executable, "-c", code, *args], capture_output=True, text=True, cwd=ROOT,
                       env={**os.environ, "PYTHONPATH": str(ROOT)}, timeout=300)
    assert r.returncode == 0, r.stderr
    return r.stdout, r.stderr.strip().splitlines()[-1] == "TORCH"


def test_a_repeat_prediction_in_a_fresh_process_needs_no_torch_and_gives_the_same_numbers():
    save_profile(hand_profile(current_key("cpu", "eager", "float32", 1)))
    args = ("predict", "v1@0.25", "--threads", "1", "--format", "json")
    first, imported = _fresh_cli(*args)
    assert imported  # nothing kept yet: the model is analysed, which needs torch
    again, imported = _fresh_cli(*args)
    assert not imported
    assert json.loads(again) == json.loads(first)


def test_torchs_default_thread_count_is_learned_once():
    save_profile(hand_profile(current_key("cpu", "eager", "float32", None)))
    args = ("predict", "v1@0.25", "--format", "json")
    first, imported = _fresh_cli(*args)
    assert imported
    again, imported = _fresh_cli(*args)
    assert not imported
    assert json.loads(again)["device"]["threads"] == json.loads(first)["device"]["threads"]
    fresh = subprocess.check_output([sys.executable, "-c", "import torch; print(torch.get_num_threads())"], text=True)
    assert json.loads(again)["device"]["threads"] == int(fresh)  # torch's own default in a fresh process


def test_a_cache_that_cannot_be_written_is_skipped(tmp_path, monkeypatch):
    monkeypatch.setenv("MBCOST_ANALYSIS_DIR", str(tmp_path))
    key = cache.cache_key("v2", None, 1, 1000)
    (tmp_path / f"{key}.json").mkdir()  # the entry's path is taken by a directory
    profile = hand_profile(current_key("cpu", "eager", "float32", 1))
    assert predict("v2", threads=1, profile=profile).macs == 300_774_272  # torchvision's _ops: 0.3 GMACs


def test_the_cached_analysis_prices_as_the_analysis_did(monkeypatch):
    profile = hand_profile(current_key("cpu", "eager", "float32", 1))
    first = predict("v1@0.25", threads=1, profile=profile)

    def refuse(*a, **k):  # noqa: ANN002, ANN003, ANN202
        raise AssertionError("analysed again")

    monkeypatch.setattr(sys.modules["mbcost.cost.analyze"], "analyze", refuse)
    again = predict("v1@0.25", threads=1, profile=profile)
    assert again == first and again.layers and again.macs == first.macs


def test_the_key_read_without_torch_is_the_one_read_with_it():
    assert cached_key("cpu", "eager", "float32", 1) == current_key("cpu", "eager", "float32", 1)
    import torch

    cache.remember_threads(torch.get_num_threads())
    assert cached_key("cpu", "eager", "float32", None) == current_key("cpu", "eager", "float32", None)
    assert cache.torch_version() == torch.__version__  # with its build tag, which the metadata drops
    assert cached_key("cuda", "eager", "float32", 1) is None and cached_key("cpu", "eager", "float32", 0) is None


def test_the_key_changes_with_what_the_numbers_depend_on(monkeypatch):
    base = cache.cache_key("v2", None, 1, 1000)
    assert base is not None
    assert len({base, cache.cache_key("v2", "160", 1, 1000), cache.cache_key("v2", None, 2, 1000),
                cache.cache_key("v2", None, 1, 10), cache.cache_key("v1", None, 1, 1000)}) == 5
    monkeypatch.setattr(cache, "torch_version", lambda: "9.9.9+cpu")
    assert cache.cache_key("v2", None, 1, 1000) != base


def test_a_library_models_key_holds_the_librarys_version(monkeypatch):
    base = cache.cache_key("torchvision:resnet18", None, 1, 1000)
    monkeypatch.setattr(cache, "version", lambda dist: "0.0.1")
    assert base is not None and cache.cache_key("torchvision:resnet18", None, 1, 1000) != base


def test_a_local_hugging_face_config_is_keyed_by_its_bytes(tmp_path):
    folder = tmp_path / "tiny"
    folder.mkdir()
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 32}')
    before = cache.cache_key(f"hf:{folder}", None, 1, 1000)
    (folder / "config.json").write_text('{"model_type": "bert", "hidden_size": 64}')
    assert before is not None and cache.cache_key(f"hf:{folder}", None, 1, 1000) != before


@pytest.mark.parametrize("spec, inputs", [
    ("predict_models:conv_relu", None),  # a user's factory: its code can change under the same name
    ("hf:some-org/some-hub-id", None),  # a hub id: nothing local says what it is
    ("v2", [object()]),  # an input given as objects, not text
])
def test_what_is_never_cached(spec, inputs):
    assert cache.cache_key(spec, inputs, 1, 1000) is None


def test_a_module_is_never_cached():
    from torch import nn

    assert cache.cache_key(nn.ReLU(), "1x3x8x8", 1, 1000) is None


def _rows(analysis: cache.CachedAnalysis) -> list[tuple]:
    return [tuple(getattr(layer, f) for f in cache.FIELDS) for layer in analysis.layers]


def test_a_corrupt_entry_is_a_miss_and_is_rewritten():
    key = cache.cache_key("v1@0.25", None, 1, 1000)
    good = _rows(analysis_of("v1@0.25"))
    assert _rows(cache.load(key)) == good
    path = cache.analysis_dir() / f"{key}.json"
    path.write_text('{"version": 1, "layers": [[1, 2]]')
    assert cache.load(key) is None
    assert _rows(analysis_of("v1@0.25")) == good
    assert _rows(cache.load(key)) == good


def test_a_thread_count_learned_on_another_cpu_model_is_not_used_here(monkeypatch):
    """A home directory shared by two machines with the same CPU count: SMT or another CPU model gives
    another default thread count, so what one learned must not be read on the other."""
    from mbcost.bench import devices

    cache.remember_threads(3)
    assert cache.default_threads() == 3
    real = devices.cpu_info()
    monkeypatch.setattr(devices, "cpu_info", lambda: (real[0] + " (another model)", real[1]))
    assert cache.default_threads() is None
