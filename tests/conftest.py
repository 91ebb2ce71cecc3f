import pytest
from typer.testing import CliRunner


@pytest.fixture(autouse=True)
def _no_device_profiles(monkeypatch, tmp_path_factory):
    """No test sees this machine's latency profiles (``mbcost calibrate``'s): ``compare`` would add predicted
    rows to the outputs the tests compare. The prediction tests set their own directory."""
    monkeypatch.setenv("MBCOST_PROFILE_DIR", str(tmp_path_factory.getbasetemp() / "no-profiles"))
    monkeypatch.setenv("MBCOST_ANALYSIS_DIR", str(tmp_path_factory.getbasetemp() / "analyses"))


@pytest.fixture
def cli():
    """Run the mbcost CLI in-process: ``cli("compare", "--models", "v1")`` -> click Result."""
    from mbcost.cli import app

    runner = CliRunner()

    def run(*args: str, **kwargs):
        return runner.invoke(app, list(args), catch_exceptions=False, **kwargs)

    return run


@pytest.fixture
def fake():
    """A fake timer with fixed times that never runs the function; pass it as ``measure_fn=`` to the
    library or as ``run(..., measure=fake)`` / ``cli(..., obj=fake)`` to the CLI."""
    from bench_fakes import FakeMeasure

    return FakeMeasure(run_fn=False)
