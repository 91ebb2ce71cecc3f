"""Rendering: turns result objects into tables (rich, markdown, CSV) and JSON. Computes nothing."""

__all__ = ["bench", "comparison", "conventions", "costs", "gate", "html", "memory", "predict", "reconcile", "table",
           "weights"]
