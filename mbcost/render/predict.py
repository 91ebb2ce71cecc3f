"""Rendering of predicted latency (``mbcost predict``) and of a calibration (``mbcost calibrate``)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from mbcost.render.table import Table

if TYPE_CHECKING:
    from mbcost.predict.calibrate import CalibrationReport
    from mbcost.predict.predictor import Prediction

__all__ = ["calibration_document", "calibration_records", "calibration_table", "prediction_document",
           "prediction_records", "prediction_table"]


def _ms(seconds: float) -> str:
    ms = seconds * 1e3
    return f"{ms:.3f}" if ms < 1 else f"{ms:.2f}"


def _notes(p: Prediction) -> list[str]:
    notes = [f"predicted, not measured: {p.key.label()}; profile {p.profile or '(given)'}",
             "interval: the total's from the whole-model correction's leave-one-out error on the calibration models, "
             "a layer's from its kind's cross-validated error (10th-90th percentile)"]
    if p.forced:
        notes.append(f"FORCED: the profile was made for another setup ({'; '.join(p.mismatch)})")
    if p.roofline_kinds:
        notes.append(f"ROOFLINE: no fitted model for {', '.join(p.roofline_kinds)}: priced from the measured roofline "
                     "(flagged 'roofline' per layer)")
    return notes


def prediction_table(p: Prediction) -> Table:
    rows = [[lp.name, lp.kind, str(len(lp.layers)), _ms(lp.seconds), f"{_ms(lp.low_s)}-{_ms(lp.high_s)}",
             "roofline" if lp.roofline else ""] for lp in p.layers]
    rows.append(["total", "", str(sum(len(lp.layers) for lp in p.layers)), _ms(p.seconds),
                 f"{_ms(p.low_s)}-{_ms(p.high_s)}", "roofline" if p.roofline_kinds else ""])
    return Table(f"Predicted latency of {p.model} ({p.inputs}), ms", ["kernel", "kind", "layers", "predicted ms",
                                                                     "interval ms", "flag"], rows, _notes(p))


def prediction_records(p: Prediction) -> list[dict[str, Any]]:
    return [{"model": p.model, "kernel": lp.name, "kind": lp.kind, "layers": " ".join(lp.layers),
             "predicted_ms": lp.predicted_ms, "low_ms": lp.low_s * 1e3, "high_ms": lp.high_s * 1e3,
             "roofline": lp.roofline} for lp in p.layers]


def prediction_document(p: Prediction) -> dict[str, Any]:
    """The JSON of one prediction: ``predicted_ms``, ``interval_ms`` [low, high], ``layers`` each with its own
    ``predicted_ms``."""
    from dataclasses import asdict

    return {
        "model": p.model, "inputs": p.inputs, "predicted_ms": p.predicted_ms, "interval_ms": list(p.interval_ms),
        "macs": p.macs, "device": asdict(p.key), "profile": p.profile, "forced": p.forced,
        "mismatch": list(p.mismatch), "roofline_kinds": list(p.roofline_kinds),
        "layers": [{"name": lp.name, "kind": lp.kind, "layers": list(lp.layers), "predicted_ms": lp.predicted_ms,
                    "interval_ms": [lp.low_s * 1e3, lp.high_s * 1e3], "roofline": lp.roofline} for lp in p.layers],
    }


def calibration_table(r: CalibrationReport) -> Table:
    prof = r.profile
    rows = [[kind, str(m.samples), f"{m.mape * 100:.1f}", f"{m.low:.2f}-{m.high:.2f}"]
            for kind, m in sorted(prof.kernels.items())]
    c = prof.correction
    notes = [f"profile: {r.path} ({prof.key.label()})",
             f"samples: {r.samples_path} ({r.kernel_samples} kernel samples, {r.resumed} resumed from an earlier run); "
             f"{r.elapsed_s:.0f} s of a {prof.budget_s:.0f} s budget",
             f"whole-model correction ({c.variant}, {c.models} models): multipliers "
             + ", ".join(f"{g} {v:.2f}" for g, v in sorted(c.multipliers.items()))
             + f", {c.per_call_s * 1e6:.1f} us per kernel; leave-one-out MAPE {c.mape * 100:.1f}%",
             f"roofline for kinds without a model: {prof.roofline.peak_gflops:.1f} GFLOP/s, "
             f"{prof.roofline.peak_gbps:.1f} GB/s"]
    notes += [f"skipped calibration model {m}: {why}" for m, why in r.skipped.items()]
    return Table("Calibration: kernel models by kind (cross-validated)", ["kind", "samples", "MAPE %",
                                                                          "measured/predicted p10-p90"], rows, notes)


def calibration_document(r: CalibrationReport) -> dict[str, Any]:
    return {"profile": r.path, "samples": r.samples_path, "kernel_samples": r.kernel_samples, "resumed": r.resumed,
            "elapsed_s": r.elapsed_s, "models_s": r.models, "skipped_models": r.skipped, **r.profile.to_dict()}


def calibration_records(r: CalibrationReport) -> list[dict[str, Any]]:
    """One row per kind model (CSV)."""
    return [{"kind": kind, "samples": m.samples, "mape": m.mape, "low": m.low, "high": m.high,
             **{f"coef_{i}": c for i, c in enumerate(m.coef)}} for kind, m in sorted(r.profile.kernels.items())]
