"""Typed errors of the measurement code; the CLI prints each as one line and exits 2."""

from __future__ import annotations

from mbcost.errors import MbcostError, UsageError

__all__ = ["BenchError", "DeviceError", "Interrupted", "MemoryRefusal"]


class DeviceError(UsageError):
    """A device that is not there, or a dtype / thread count the device cannot honour."""


class MemoryRefusal(UsageError):
    """The analytic estimate says the run would not fit in the device's available memory."""


class BenchError(MbcostError):
    """The measured module failed to run (a failing forward pass, torch.compile failure...)."""


class Interrupted(MbcostError):
    """Ctrl-C during a measurement; the message says what was kept. Exit status 130."""

    exit_code = 130
