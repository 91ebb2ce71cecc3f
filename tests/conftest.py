import pytest
from typer.testing import CliRunner


@pytest.fixture
def cli():
    """Run the mbcost CLI in-process: ``cli("compare", "--models", "v1")`` -> click Result."""
    from mbcost.cli import app

    runner = CliRunner()

    def run(*args: str, **kwargs):
        return runner.invoke(app, list(args), catch_exceptions=False, **kwargs)

    return run


@pytest.fixture
def fake(monkeypatch):
    """``mbcost.bench.timer.measure`` replaced by a fake with fixed times that never runs the function."""
    from bench_fakes import FakeMeasure

    f = FakeMeasure(run_fn=False)
    monkeypatch.setattr("mbcost.bench.timer.measure", f)
    return f
