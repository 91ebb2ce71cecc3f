"""The analytic cost engine: formulas, the shape walker and the typed results."""

from mbcost.cost.analyze import analyze
from mbcost.cost.result import CATEGORIES, CategoryCost, LayerCost, ModelCost, UncountedOp

__all__ = ["CATEGORIES", "CategoryCost", "LayerCost", "ModelCost", "UncountedOp", "analyze"]
