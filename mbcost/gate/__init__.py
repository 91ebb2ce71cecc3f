"""The CI regression gate: parameter counts (exact) and MACs (optionally with a tolerance),
per model and per layer, against a committed, versioned JSON baseline.

    >>> from mbcost.gate import load_config, run_gate
    >>> result = run_gate(load_config())          # doctest: +SKIP
    >>> result.exit_code, [(r.layer, r.change) for r in result.rows]   # doctest: +SKIP
    (0, [])
"""

from mbcost.lazy import lazy_getattr

#: Each public name by the module that defines it (imported on first use).
_HOMES = {
    "mbcost.gate.baseline": ("CONVENTIONS", "SCHEMA_VERSION", "Baseline", "Entry", "LayerCount", "dumps", "loads",
                             "measure", "read_baseline"),
    "mbcost.gate.check": ("EXIT_DRIFT", "EXIT_PASS", "DiffRow", "EntryDiff", "GateResult", "UpdateResult", "compare",
                          "compare_entry", "plan", "run_gate", "update_baseline"),
    "mbcost.gate.config": ("DEFAULT_BASELINE", "GateConfig", "find_pyproject", "load_config", "parse_inputs"),
}

__all__ = [
    "CONVENTIONS", "DEFAULT_BASELINE", "EXIT_DRIFT", "EXIT_PASS", "SCHEMA_VERSION", "Baseline", "DiffRow", "Entry",
    "EntryDiff", "GateConfig", "GateResult", "LayerCount", "UpdateResult", "compare", "compare_entry", "dumps",
    "find_pyproject", "load_config", "loads", "measure", "parse_inputs", "plan", "read_baseline", "run_gate",
    "update_baseline",
]

__getattr__ = lazy_getattr(__name__, {name: home for home, names in _HOMES.items() for name in names})
