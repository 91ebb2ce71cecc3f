"""The linear-bottleneck experiment of the MobileNetV2 paper (Sandler et al. 2018, Figure 1).

A 2-D spiral ``X`` (2 x P points) is embedded into ``n`` dimensions by a random matrix ``T``
(n x 2, standard normal entries), passed through ReLU, and mapped back to 2-D with ``T``'s
Moore-Penrose pseudo-inverse: ``X_hat = pinv(T) @ relu(T @ X)``. Without the ReLU (the identity)
``pinv(T) @ T = I`` for any ``n >= 2``, so nothing is lost. With it, points whose embedding has
few positive coordinates collapse together: information is lost in low dimensions.

Three relative errors are computed per ``n`` (each ``||X_hat - X||_F / ||X||_F``, the median over
``draws`` independent ``T``: a nearly singular ``T`` at ``n = 2`` would dominate a mean):

* ``relu_pinv``: ReLU, mapped back with ``pinv(T)`` (the paper's construction). For large ``n`` it
  tends to about 0.5, not 0: for a standard normal ``T`` the rows active at a point average to
  half of ``T^T T``, so the recovered spiral keeps its shape at about half its size.
* ``relu_readout``: ReLU, mapped back with the best linear map (least squares from ``relu(T X)``
  to ``X``): how much of the spiral any linear layer after the ReLU could still recover.
* ``identity``: no ReLU, ``pinv(T)``: zero up to rounding.

Everything is seeded (``numpy.random.default_rng((seed, n, draw))``), so two runs give the same
numbers; the default experiment takes a few tens of milliseconds.

Example:
    >>> result = linear_bottleneck()
    >>> [round(p.relu_readout, 2) for p in result.points if p.n in (2, 30)]  # doctest: +SKIP
    [0.7, 0.0]
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

__all__ = ["CURVE_DIMS", "FIGURE_DIMS", "BottleneckPoint", "LinearBottleneck", "linear_bottleneck", "spiral"]

#: The embedding dimensions of the paper's Figure 1 panels.
FIGURE_DIMS: tuple[int, ...] = (2, 3, 5, 15, 30)
#: The dimensions of the error curve by default.
CURVE_DIMS: tuple[int, ...] = (2, 3, 4, 5, 6, 8, 10, 12, 15, 20, 25, 30)


@dataclass(frozen=True)
class BottleneckPoint:
    """Median relative reconstruction errors at one embedding dimension ``n`` over ``draws`` matrices."""

    n: int
    relu_pinv: float
    relu_readout: float
    identity: float
    #: Fraction of spiral points mapped to exactly zero by ReLU (every coordinate negative).
    collapsed_fraction: float


@dataclass(frozen=True)
class LinearBottleneck:
    """The experiment's raw results.

    Attributes:
        spiral: the input spiral, ``(xs, ys)``.
        recovered: for each ``n`` of ``FIGURE_DIMS``, the spiral mapped back with ``pinv(T)`` after
            ReLU, for the first random ``T`` (``(xs, ys)``).
        points: the error curve, one point per ``n`` in ``dims``.
        seed, draws: the seed and the number of random matrices per ``n``.
    """

    spiral: tuple[tuple[float, ...], tuple[float, ...]]
    recovered: dict[int, tuple[tuple[float, ...], tuple[float, ...]]]
    points: tuple[BottleneckPoint, ...]
    seed: int
    draws: int

    def at(self, n: int) -> BottleneckPoint:
        """The curve's point at dimension ``n``."""
        return {p.n: p for p in self.points}[n]


def spiral(points: int = 400, turns: float = 2.0):  # noqa: ANN201  (a numpy array; numpy imported lazily)
    """A 2-D Archimedean spiral centred on the origin, ``2 x points``: radius from 0.1 to 1.1."""
    import numpy as np

    s = np.linspace(0.0, 1.0, points)
    theta = 2 * np.pi * turns * s
    radius = 0.1 + s
    return np.stack([radius * np.cos(theta), radius * np.sin(theta)])


def linear_bottleneck(dims: Sequence[int] = CURVE_DIMS, *, draws: int = 12, seed: int = 0,
                      points: int = 400) -> LinearBottleneck:
    """Run the experiment for every ``n`` in ``dims`` (each >= 2).

    Args:
        dims: embedding dimensions of the error curve (``FIGURE_DIMS`` are always added).
        draws: random matrices ``T`` per ``n`` (the errors are their medians).
        seed: the experiment's seed.
        points: points on the spiral.

    Returns:
        A ``LinearBottleneck`` with the spiral, the recovered spirals of ``FIGURE_DIMS`` and the curve.
    """
    import numpy as np

    if draws < 1 or points < 3 or any(n < 2 for n in dims):
        raise ValueError("need draws >= 1, points >= 3 and every n >= 2")
    x = spiral(points)
    norm = float(np.linalg.norm(x))
    recovered: dict[int, tuple[tuple[float, ...], tuple[float, ...]]] = {}
    curve: list[BottleneckPoint] = []
    for n in sorted(set(dims) | set(FIGURE_DIMS)):
        pinv_err, readout_err, ident_err, collapsed = [], [], [], []
        for draw in range(draws):
            t = np.random.default_rng((seed, n, draw)).standard_normal((n, 2))
            t_pinv = np.linalg.pinv(t)
            y = np.maximum(t @ x, 0.0)
            back = t_pinv @ y
            readout = np.linalg.lstsq(y.T, x.T, rcond=None)[0].T @ y
            pinv_err.append(np.linalg.norm(back - x) / norm)
            readout_err.append(np.linalg.norm(readout - x) / norm)
            ident_err.append(np.linalg.norm(t_pinv @ (t @ x) - x) / norm)
            collapsed.append(float(np.mean(~(y > 0).any(axis=0))))
            if draw == 0 and n in FIGURE_DIMS:
                recovered[n] = (tuple(back[0].tolist()), tuple(back[1].tolist()))
        curve.append(BottleneckPoint(n=n, relu_pinv=float(np.median(pinv_err)),
                                     relu_readout=float(np.median(readout_err)), identity=float(np.median(ident_err)),
                                     collapsed_fraction=float(np.mean(collapsed))))
    return LinearBottleneck(spiral=(tuple(x[0].tolist()), tuple(x[1].tolist())), recovered=recovered,
                            points=tuple(curve), seed=seed, draws=draws)
