"""Rendering: turns result objects into tables (rich, markdown, CSV) and JSON. Computes nothing."""

__all__ = ["bench", "comparison", "conventions", "costs", "gate", "html", "memory", "reconcile", "table", "weights"]
