"""Gate configuration: ``[tool.mbcost.gate]`` in ``pyproject.toml`` (models, inputs, baseline,
macs_tolerance, memory_tolerance, mode, optimizer; docs/ci-gate.md), overridable from the CLI.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from mbcost.errors import SpecError
from mbcost.inputs import FLOAT_DTYPES, parse_input_text, parse_size_or_shape

__all__ = [
    "DEFAULT_BASELINE", "GATE_INPUTS_HELP", "MAX_BATCH", "GateConfig", "Size", "check_tolerance", "config_from_table",
    "find_pyproject", "gate_input", "load_config", "parse_inputs",
]

#: Baseline file name when none is configured, next to the ``pyproject.toml`` (or in the cwd).
DEFAULT_BASELINE = "mbcost-baseline.json"
CONFIG_KEYS = ("models", "inputs", "baseline", "macs_tolerance", "memory_tolerance", "batch", "mode", "optimizer")
MAX_BATCH = 1 << 20

#: One gate configuration's input: ``(H, W)`` of a float image, a float full shape of 3 or more dims, or
#: (any other input: token ids, a shape of rank 1 or 2, another dtype, a keyword input) its ``--input``
#: text in a canonical spelling (``"1x64:int64"``, ``"[1,64]"``, ``"mask=1x64:int64"``).
Size = tuple[int, ...] | str

#: The forms the gate reads, named in its errors.
GATE_INPUTS_HELP = ("one input per configuration, as --input reads it: 224 or 224x160 (an image), a full shape such "
                    "as 1x3x16x112x112 or [1,64], optionally with :DTYPE (1x64:int64: token ids) and NAME= (a keyword "
                    "input)")

_SHORTHAND = re.compile(r"^\d+(x\d+)?$")


@dataclass(frozen=True)
class GateConfig:
    """What the gate checks, against which baseline, how strictly.

    ``models`` and ``inputs`` may be empty: the gate then checks what the baseline holds (all
    of its entries when both are empty; its models or its sizes when only one is set).
    """

    models: tuple[str, ...] = ()
    inputs: tuple[Size, ...] = ()
    baseline: Path = Path(DEFAULT_BASELINE)
    macs_tolerance: float = 0.0
    batch: int = 1
    source: Path | None = field(default=None, compare=False)
    memory_tolerance: float = 0.0
    mode: str = "inference"
    optimizer: str = "sgd"

    def __post_init__(self) -> None:
        from mbcost.cost.training import MODES, OPTIMIZERS

        object.__setattr__(self, "macs_tolerance", check_tolerance(self.macs_tolerance))
        object.__setattr__(self, "memory_tolerance", check_tolerance(self.memory_tolerance, "memory_tolerance"))
        if self.mode not in MODES:
            raise SpecError(f"unknown mode {self.mode!r}; choose one of {', '.join(MODES)}")
        if self.optimizer not in OPTIMIZERS:
            raise SpecError(f"unknown optimizer {self.optimizer!r}; choose one of {', '.join(OPTIMIZERS)}")
        if not isinstance(self.batch, int) or isinstance(self.batch, bool) or not 1 <= self.batch <= MAX_BATCH:
            raise SpecError(f"gate batch must be an integer in 1..{MAX_BATCH} (got {self.batch!r})")

    def override(self, *, models: Sequence[str] | None = None, inputs: Sequence[Size] | None = None,
                 baseline: Path | None = None, macs_tolerance: float | None = None,
                 memory_tolerance: float | None = None, mode: str | None = None,
                 optimizer: str | None = None) -> GateConfig:
        """A copy with the given (non-None) values replacing the configured ones."""
        given = {"models": models, "inputs": inputs, "baseline": baseline, "macs_tolerance": macs_tolerance,
                 "memory_tolerance": memory_tolerance, "mode": mode, "optimizer": optimizer}
        convert: dict[str, Any] = {"models": tuple, "inputs": tuple, "baseline": Path}
        return replace(self, **{k: convert.get(k, lambda v: v)(v) for k, v in given.items() if v is not None})


def check_tolerance(value: Any, name: str = "macs_tolerance") -> float:
    """A relative tolerance: a finite number in [0, 1)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value < 1:
        raise SpecError(f"{name} must be a number in [0, 1), e.g. 0.01 for 1% (got {value!r})")
    return float(value)


def find_pyproject(start: Path | None = None) -> Path | None:
    """The nearest ``pyproject.toml`` in ``start`` (default: the cwd) or any directory above it."""
    here = (start or Path.cwd()).resolve()
    for directory in (here, *here.parents):
        candidate = directory / "pyproject.toml"
        if candidate.is_file():
            return candidate
    return None


def load_config(pyproject: Path | None = None, *, start: Path | None = None) -> GateConfig:
    """Read ``[tool.mbcost.gate]``.

    Args:
        pyproject: an explicit ``pyproject.toml`` (it must exist); default: search upward from
            ``start`` (default: the cwd). A file without the table gives the defaults.
        start: where the upward search begins.

    Returns:
        A ``GateConfig``; a relative ``baseline`` is resolved against the file's directory.
        With no ``pyproject.toml`` at all, the defaults with the baseline in the cwd.

    Raises:
        SpecError: the file is missing (when explicit), not valid TOML, or the table holds an
            unknown key or a value of the wrong type.
    """
    if pyproject is not None:
        pyproject = Path(pyproject)
        if not pyproject.is_file():
            raise SpecError(f"config file {pyproject} does not exist")
    else:
        pyproject = find_pyproject(start)
        if pyproject is None:
            return GateConfig(baseline=(start or Path.cwd()) / DEFAULT_BASELINE)
    table = _read_table(pyproject)
    return config_from_table(table, root=pyproject.parent, source=pyproject)


def config_from_table(table: dict[str, Any], *, root: Path, source: Path | None = None) -> GateConfig:
    """Validate a ``[tool.mbcost.gate]`` table (as parsed from TOML) into a ``GateConfig``."""
    where = f"[tool.mbcost.gate] in {source}" if source else "[tool.mbcost.gate]"
    unknown = sorted(set(table) - set(CONFIG_KEYS))
    if unknown:
        raise SpecError(f"{where}: unknown key {unknown[0]!r}; known keys: {', '.join(CONFIG_KEYS)}")
    models = table.get("models", [])
    if isinstance(models, str):
        models = [m for m in (p.strip() for p in models.split(",")) if m]
    if not isinstance(models, list) or not all(isinstance(m, str) and m.strip() for m in models):
        raise SpecError(f"{where}: models must be a list of model specs, e.g. [\"v1\", \"v2\"]")
    inputs_value = table.get("inputs", [])
    inputs = tuple(_config_size(v, where) for v in (inputs_value if isinstance(inputs_value, list)
                                                      else [inputs_value]))
    baseline = table.get("baseline", DEFAULT_BASELINE)
    if not isinstance(baseline, str) or not baseline.strip():
        raise SpecError(f"{where}: baseline must be a path (a string)")
    plain = {k: table[k] for k in ("macs_tolerance", "memory_tolerance", "batch", "mode", "optimizer") if k in table}
    try:
        return GateConfig(models=tuple(m.strip() for m in models), inputs=inputs, baseline=root / baseline,
                          source=source, **plain)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None


def _config_size(value: Any, where: str) -> Size:
    """One TOML input: ``224``, ``[224, 160]`` (an image), ``[1, 3, 16, 112, 112]`` (a full shape), or any
    ``--input`` text (``"224x160"``, ``"1x3x16x112x112"``, ``"1x64:int64"``, ``"[1,64]"``)."""
    if isinstance(value, list) and len(value) >= 2 and all(type(v) is int for v in value):
        value = tuple(value)
    elif type(value) is not int and not isinstance(value, str):
        raise SpecError(f"{where}: inputs must be sizes such as 224, \"224x160\" or [224, 160], or full shapes "
                        f"such as \"1x3x16x112x112\" or \"1x64:int64\" (got {value!r})")
    try:
        return gate_input(value)
    except SpecError as exc:
        raise SpecError(f"{where}: {exc}") from None


def gate_input(value: int | str | Sequence[int]) -> Size:
    """One gate configuration's input, read as every command reads ``--input`` (``mbcost.inputs``).

    ``224``, ``"224x160"`` or ``(224, 160)`` -> ``(224, 160)``; ``"1x3x16x112x112"`` -> that tuple; any
    other input (``"1x64:int64"``, ``"[1, 64]"``, ``"mask=1x64:int64"``, ``"160:float16"``) -> its text in
    a canonical spelling, which ``mbcost.analyze`` reads back as the same input.

    Raises:
        SpecError: a value that does not parse; the message names the forms the gate reads.
    """
    if not isinstance(value, str):
        try:
            return parse_size_or_shape(value)
        except SpecError as exc:
            raise SpecError(f"{exc}; the gate takes {GATE_INPUTS_HELP}") from None
    try:
        spec = parse_input_text(value)
        raw = value.strip().lower()
        body = raw.partition("=")[2] if "=" in raw else raw
        body = body.rpartition(":")[0] if ":" in body else body
        body = body.strip()
    except SpecError as exc:
        raise SpecError(f"{exc}; the gate takes {GATE_INPUTS_HELP}") from None
    shape, dtype = spec.shape, spec.dtype
    image = bool(_SHORTHAND.match(body)) and dtype in FLOAT_DTYPES  # the image shorthand: the batch completes it
    if spec.name is None and dtype == "float32" and (image or len(shape) >= 3):
        return shape[2:] if image else shape
    if image:
        text = f"{shape[2]}x{shape[3]}"
    elif dtype not in FLOAT_DTYPES or len(shape) >= 3:
        text = "x".join(str(d) for d in shape)
    else:
        text = "[" + ",".join(str(d) for d in shape) + "]"
    if dtype != "float32":
        text += f":{dtype}"
    return f"{spec.name}={text}" if spec.name else text


def parse_inputs(values: Sequence[str]) -> tuple[Size, ...]:
    """CLI inputs: each ``--input`` is one configuration; a comma outside brackets also separates
    configurations (``["224,192", "[1,64]:int64"]`` -> three)."""
    parts = [part for v in values for part in re.split(r",(?![^\[\(]*[\]\)])", str(v)) if part.strip()]
    if not parts:
        raise SpecError(f"no inputs given; the gate takes {GATE_INPUTS_HELP}")
    return tuple(gate_input(part) for part in parts)


def _read_table(pyproject: Path) -> dict[str, Any]:
    try:
        import tomllib
    except ModuleNotFoundError:  # Python 3.10
        try:
            import tomli as tomllib  # type: ignore[no-redef]
        except ModuleNotFoundError:
            raise SpecError("reading pyproject.toml needs Python 3.11+ or the 'tomli' package") from None
    try:
        data = tomllib.loads(pyproject.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SpecError(f"cannot read {pyproject}: {exc.strerror or exc}") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise SpecError(f"{pyproject} is not valid TOML: {exc}") from None
    table = data.get("tool", {}).get("mbcost", {}).get("gate", {})
    if not isinstance(table, dict):
        raise SpecError(f"{pyproject}: tool.mbcost.gate must be a table")
    return table
