"""The MobileNet papers' claims, checked with mbcost's own numbers at the time they are asked for.

Each module computes the evidence of one claim as typed results holding raw numbers; ``check``
assembles them into ``Claim`` rows (the claim quoted with its source, the evidence and a verdict:
holds, holds with a qualification, does not hold, or not checked). Rendering (the report's
"Claims checked" section) only reads them. Counts come from the cost engine (``mbcost.analyze``).

Example::

    from mbcost.claims import check_claims
    claims = check_claims()
    [(c.key, c.verdict) for c in claims.claims]

Imports are lazy: importing ``mbcost.claims`` does not import torch or numpy.
"""

from __future__ import annotations

from mbcost.lazy import lazy_getattr

_LAZY = {
    "Claim": "mbcost.claims.check",
    "ClaimsData": "mbcost.claims.check",
    "check_claims": "mbcost.claims.check",
    "frontier_points": "mbcost.claims.frontier",
    "v2_table": "mbcost.claims.v2_table",
    "PUBLISHED_V2_TABLE": "mbcost.claims.v2_table",
}

__all__ = [*_LAZY]

__getattr__ = lazy_getattr(__name__, _LAZY)
