"""Small numerical experiments that reproduce a figure of the MobileNet papers.

``linear_bottleneck``: the MobileNetV2 paper's Figure 1 (a 2-D spiral through a random
expansion, ReLU, and back), seeded and deterministic.
"""

from __future__ import annotations

__all__ = ["linear_bottleneck"]
