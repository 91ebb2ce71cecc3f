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
