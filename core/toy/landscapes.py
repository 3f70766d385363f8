"""Toy loss landscapes (theory.md §5): each knows its minima, saddles, basins and curvatures.

Every landscape has an analytic `loss` and `grad` written in torch, vectorised over any leading
batch of particles: `w` has shape (..., dim) and the loss (...). The simulator calls `grad` for
all particles and all ρ values at once, so these are the hot loop of the lab and are written
out by hand (autograd would cost three times as much). The user formula is the exception: it
is differentiated by autograd.

Critical points (minima and saddles) are found once, when the landscape is built: from a starting
guess, Newton's method on the analytic gradient with the Hessian by central differences
(`_newton`), then
the Hessian eigenvalues at the point (the curvatures λ of theory.md §3). For 1-D landscapes the
critical points are found from the sign changes of the gradient on a fine grid.

`basin(w)` says which minimum's basin a point lies in (an index into `minima`, -1 for none, e.g.
on a ridge); the simulator records the first step at which a particle arrives in another basin
(an "escape"; the ridge, -1, does not count as arrival).

Families (`make_landscape(name, **params)`):
    double_well_1d   L = −d·exp(−(w−1)²/s_sharp) − d·exp(−(w+1)²/s_flat)           (theory.md §3)
    double_well_2d   the same in x, plus (b/2)·y²
    valley_1d        L = a_L w²/2 (w < 0), a_R w²/2 (w ≥ 0)                         (theory.md §4)
    valley_2d        smooth: a_R x²/2 + (a_L − a_R)·(s²/2)·softplus(−x/s)² + (b/2)·y²
    zhu              Zhu et al. (ICML 2019) 2-D toy, mean of 100 per-sample losses  (theory.md §5.3)
    many_wells       L = w²/20 − Σ_i exp(−(w − c_i)²/(2 s_i²)), c_i = −4 … 4
    rosenbrock       (a − x)² + b·(y − x²)²
    himmelblau       (x² + y − 11)² + (x + y² − 7)²
    rastrigin        20 + Σ (w_i² − 10 cos 2π w_i)
    saddle           x²/2 − y²/2 + y⁴/4   (a saddle at 0 between minima at y = ±1)
    formula          a user formula in x and y (core.toy.formula), minima found on a grid
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass

import numpy as np
import torch
import torch.nn.functional as F

LANDSCAPES: dict[str, str] = {
    "double_well_1d": "Sharp vs flat double well (1-D)",
    "double_well_2d": "Sharp vs flat double well (2-D)",
    "valley_1d": "Asymmetric valley (1-D)",  # piecewise quadratic; short: it must fit a side-column menu
    "valley_2d": "Asymmetric valley (2-D, smooth)",
    "zhu": "Zhu et al. 2-D toy (minibatch noise)",
    "many_wells": "Many wells, sharp and flat",
    "rosenbrock": "Rosenbrock",
    "himmelblau": "Himmelblau",
    "rastrigin": "Rastrigin",
    "saddle": "Saddle between two minima",
    "formula": "Your formula L(x, y)",
}


# 2 above the log of the smallest normal number of each dtype (−85.3 in float32, −706.4 in float64)
_EXP_FLOOR = {dt: math.log(torch.finfo(dt).tiny) + 2 for dt in (torch.float32, torch.float64)}


def exp_(arg: torch.Tensor) -> torch.Tensor:
    """exp of arg, in place, with arg floored at _EXP_FLOOR (−85.3 in float32, e^floor ≈ 9e-38).
    Speed: on the CPU, exp whose result is (nearly) denormal or 0 is ~100× slower (measured:
    3 µs → 200-400 µs for 10⁴ numbers, even with one such number in 20), and far from a well
    every particle is there. What the floor changes (< 1e-37 in float32, < 1e-306 in float64)
    vanishes next to any other term of a gradient or a loss."""
    return arg.clamp_(min=_EXP_FLOOR.get(arg.dtype, -80.0)).exp_()


def stack_coords(*parts: torch.Tensor) -> torch.Tensor:
    """Stack per-coordinate tensors into (..., dim) with the coordinate axis outermost in memory
    (a view of a (dim, ...) block). The simulator keeps w in this layout: torch's CPU kernels are
    then fast for everything that mixes coordinates (SAM's per-particle norm over the last axis,
    (..., 1) × (..., dim) broadcasts), which are 3-7× slower when the size-2 axis is innermost."""
    return torch.stack(parts, dim=0).movedim(0, -1)


def coords_major(w: torch.Tensor) -> torch.Tensor:
    """The same values as w (..., dim), laid out coordinate-major in memory (see stack_coords)."""
    return w.movedim(-1, 0).contiguous().movedim(0, -1)


@dataclass(frozen=True)
class Critical:
    """A critical point: position, Hessian eigenvalues (ascending), "min" or "saddle", and for
    minima a "sharp"/"flat" label where the landscape has minima of clearly different curvature."""

    position: tuple[float, ...]
    hessian_eigs: tuple[float, ...]
    kind: str
    label: str = ""


class Landscape:
    """Base class. Subclasses set the attributes and implement `loss`, `grad` and `basin`."""

    name: str = ""
    title: str = ""
    dim: int = 2
    bounds: tuple[tuple[float, float], ...] = ((-3.0, 3.0), (-3.0, 3.0))
    default_start: tuple[float, ...] = (0.0, 0.0)
    params: dict
    data: torch.Tensor | None = None  # per-sample data (only the Zhu toy has minibatch noise)
    loss_terms: int = 1  # terms per point in `loss` (data points, wells): sizes batched evaluations

    def __init__(self):
        self.minima: list[Critical] = []
        self.saddles: list[Critical] = []

    def loss(self, w: torch.Tensor) -> torch.Tensor:
        raise NotImplementedError

    def loss_np(self, w) -> np.ndarray:
        """L(w) for points w (array-like, (..., dim)) as a float64 numpy array: what a chart draws (no torch
        needed by the caller)."""
        with torch.no_grad():
            return self.loss(torch.as_tensor(np.asarray(w, dtype=np.float64))).numpy()

    def grad(self, w: torch.Tensor) -> torch.Tensor:
        """∇L by autograd; the families override this with a hand-written gradient."""
        with torch.enable_grad():
            w = w.detach().requires_grad_(True)
            (g,) = torch.autograd.grad(self.loss(w).sum(), w)
        return g

    def grad_plus(self, w: torch.Tensor, xi: torch.Tensor) -> torch.Tensor:
        """∇L(w) + ξ, a noisy gradient (core.toy.noise). Families whose gradient starts with an
        operation that can add ξ at the same time override this (one tensor pass less per call)."""
        return self.grad(w).add_(xi)

    def _constants(self, like: torch.Tensor, *values: float) -> tuple[torch.Tensor, ...]:
        """`values` as 0-dim tensors of like's dtype and device, made once and cached. Speed: torch
        wraps a Python number in a new tensor on every operation (~2 µs, as long as the
        arithmetic on 10⁴ numbers); a tensor made once costs nothing. Same results: torch
        converts a Python number to the tensor's dtype too."""
        cache = self.__dict__.setdefault("_constant_cache", {})
        key = (like.dtype, like.device, values)
        if key not in cache:
            cache[key] = tuple(torch.tensor(v, dtype=like.dtype, device=like.device) for v in values)
        return cache[key]

    def stable_lr(self) -> float | None:
        """2/λ for the largest Hessian eigenvalue λ over the known minima: gradient descent with a larger
        learning rate cannot settle in the sharpest minimum (on the quadratic λw²/2 the step
        w ← (1 − ηλ)w grows once |1 − ηλ| > 1, i.e. η > 2/λ). None without minima of positive curvature."""
        top = max((max(m.hessian_eigs) for m in self.minima if m.hessian_eigs), default=0.0)
        return 2.0 / top if top > 0 and math.isfinite(top) else None

    def basin(self, w: torch.Tensor) -> torch.Tensor:
        """Default: the nearest minimum (a Voronoi partition), -1 if there are no minima."""
        if not self.minima:
            return torch.full(w.shape[:-1], -1, dtype=torch.long, device=w.device)
        centres = torch.tensor([m.position for m in self.minima], dtype=w.dtype, device=w.device)
        d2 = ((w.unsqueeze(-2) - centres) ** 2).sum(-1)
        return d2.argmin(-1)

    def escaped(self, w: torch.Tensor, start) -> torch.Tensor:
        """True where w lies in another basin than `start` (an int, or a tensor of basin indices
        per particle); the ridge (-1) is not another basin. Families with a cheaper test override
        this, since the simulator calls it every step."""
        b = self.basin(w)
        return (b != start) & (b >= 0)

    def hessian(self, point) -> np.ndarray:
        """The Hessian matrix at one point: central differences of the gradient in float64,
        H[:, j] = (∇L(p + h e_j) − ∇L(p − h e_j)) / 2h with h = 1e-5 (error ~1e-10, far below what
        any overlay needs). Not torch.autograd.functional.hessian: its first call imports
        torch._dynamo, which takes seconds."""
        p = torch.tensor(point, dtype=torch.float64)
        h = 1e-5 * max(1.0, float(p.abs().max()))
        steps = torch.eye(self.dim, dtype=torch.float64) * h  # row j = h e_j
        cols = (self.grad(p + steps) - self.grad(p - steps)) / (2 * h)  # row j = column j of H
        m = cols.T.numpy()
        return 0.5 * (m + m.T)

    def critical(self, point, kind: str, label: str = "") -> Critical:
        eigs = np.linalg.eigvalsh(self.hessian(point))
        return Critical(tuple(float(v) for v in point), tuple(float(v) for v in eigs), kind, label)

    def escape_geometry(self, basin: int | None = None) -> tuple[float, float, float] | None:
        """(λ_min, λ_saddle, ΔL) for Kramers' formula (theory.md §3), escaping from minimum
        `basin` (default: the starting one) over the saddle with the lowest barrier; None if the
        landscape has no saddle or the start is not in a basin.

        In d > 1 dimensions Langer's form τ = (2π/|λ_s|)·√(|det H_s| / det H_min)·e^{ΔL/T}/η is
        theory.md's 1-D formula with λ_min → |λ_s|·det H_min / |det H_s| (for the 2-D double
        well that is exactly the curvature along x, the y-curvatures cancel)."""
        b = self.start_basin() if basin is None else basin
        if not (0 <= b < len(self.minima)) or not self.saddles:
            return None
        m = self.minima[b]
        lm = float(self.loss(torch.tensor(m.position, dtype=torch.float64)))

        def height(s):
            return float(self.loss(torch.tensor(s.position, dtype=torch.float64))) - lm

        s = min(self.saddles, key=height)
        lam_s = min(s.hessian_eigs)
        det_m, det_s = float(np.prod(m.hessian_eigs)), float(np.prod(s.hessian_eigs))
        if not (lam_s < 0 and det_m > 0 and det_s != 0):
            return None
        return abs(lam_s) * det_m / abs(det_s), lam_s, height(s)

    def start_basin(self) -> int:
        w = torch.tensor(self.default_start, dtype=torch.float64)
        return int(self.basin(w))

    def __repr__(self) -> str:
        return f"Landscape({self.name!r}, dim={self.dim})"

    # -- helpers for the families --------------------------------------------------------------

    def _newton(self, guess, steps: int = 50) -> tuple[float, ...]:
        """Newton's method for ∇L = 0 from `guess` (finds minima and saddles alike)."""
        w = np.array(guess, dtype=np.float64)
        for _ in range(steps):
            g = self.grad(torch.tensor(w)).numpy()
            h = self.hessian(w)
            try:
                step = np.linalg.solve(h, g)
            except np.linalg.LinAlgError:
                break
            if not np.all(np.isfinite(step)):
                break
            w = w - step
            if np.linalg.norm(step) < 1e-13:
                break
        return tuple(float(v) for v in w)

    def _critical_points_1d(self, n: int = 20001):
        """1-D: critical points from sign changes of L' on a grid, refined by bisection."""
        lo, hi = self.bounds[0]
        xs = torch.linspace(lo, hi, n, dtype=torch.float64).unsqueeze(-1)
        g = self.grad(xs)[:, 0].numpy()
        found = []
        for i in np.flatnonzero(np.sign(g[:-1]) * np.sign(g[1:]) < 0):
            a, b = float(xs[i]), float(xs[i + 1])
            ga = g[i]
            for _ in range(60):  # bisection: the sign change is bracketed, so this cannot fail
                m = 0.5 * (a + b)
                gm = float(self.grad(torch.tensor([m], dtype=torch.float64))[0])
                if np.sign(gm) == np.sign(ga):
                    a, ga = m, gm
                else:
                    b = m
            x = 0.5 * (a + b)
            found.append((x, "min" if g[i] < 0 else "saddle"))
        return found


def _label_by_sharpness(minima: list[Critical]) -> list[Critical]:
    """Label minima "sharp" / "flat" by their largest curvature, relative to the geometric mean
    over all minima (within 10% of it: no label). A single minimum gets no label."""
    if len(minima) < 2:
        return minima
    tops = np.array([max(m.hessian_eigs) for m in minima])
    if np.any(tops <= 0):
        return minima
    ref = float(np.exp(np.mean(np.log(tops))))
    out = []
    for m, top in zip(minima, tops):
        label = "sharp" if top > 1.1 * ref else "flat" if top < ref / 1.1 else ""
        out.append(Critical(m.position, m.hessian_eigs, m.kind, label))
    return out


# -- sharp vs flat double well -------------------------------------------------------------------


class DoubleWell1D(Landscape):
    """L(w) = −d·exp(−(w−1)²/s_sharp) − d·exp(−(w+1)²/s_flat) (theory.md §3's checked example:
    d = 0.5, s_sharp = 0.08, s_flat = 0.72 give a sharp minimum near w = 1 with λ ≈ 12.45, a saddle
    at w ≈ 0.426 and a barrier ΔL ≈ 0.464 seen from the sharp side).
    Far from the wells the Gaussians leave a flat plateau at L = 0, only 0.5 above the sharp minimum,
    so hot particles would wander off to the right instead of crossing the saddle. Walls
    (k/2)·(|w| − 1.5)² beyond |w| = 1.5 (k = `wall`, 0 switches them off) close the plateaus; they
    are exactly zero on [−1.5, 1.5], so the minima, the saddle and ΔL are unchanged. Basin 0 = sharp (w > saddle),
    basin 1 = flat (w below the midpoint of the saddle and the flat minimum), -1 = the ridge between."""

    name, dim = "double_well_1d", 1
    bounds = ((-2.2, 2.0),)

    WALL_AT = 1.5

    def __init__(self, depth: float = 0.5, sharp_width: float = 0.08, flat_width: float = 0.72,
                 wall: float = 20.0):
        super().__init__()
        if not (depth > 0 and sharp_width > 0 and flat_width > 0 and wall >= 0):
            raise ValueError("double well: depth and widths must be positive, wall ≥ 0")
        self.params = dict(depth=depth, sharp_width=sharp_width, flat_width=flat_width, wall=wall)
        self.d, self.s1, self.s2, self.k = float(depth), float(sharp_width), float(flat_width), float(wall)
        self.title = LANDSCAPES[self.name]
        self._find_critical_points()

    def _profile(self, x):
        """L(x) = −d·exp(−(x−1)²/s_sharp) − d·exp(−(x+1)²/s_flat) + (k/2)·softshrink(x, 1.5)²."""
        a = x - 1.0
        b = x + 1.0
        # in-place only where autograd does not need the overwritten value (it needs exp's output)
        out = exp_((a * a).mul_(-1 / self.s1)) * (-self.d)  # floored exp: see exp_
        out.add_(exp_((b * b).mul_(-1 / self.s2)), alpha=-self.d)
        if self.k:
            wall = F.softshrink(x, self.WALL_AT)
            out.addcmul_(wall, wall, value=0.5 * self.k)
        return out

    def _profile_grad(self, x, plus=None, out=None):
        """L'(x) (+ `plus`, e.g. a noise draw, if given; into `out` if given).
        d/dx of −d·exp(−(x−c)²/s) is (2d/s)·(x−c)·exp(−(x−c)²/s).
        This runs twice per SAM step for every particle, so it is written with few tensor passes:
        in-place operations (`_`) reuse temporaries, addcmul_ (g += value·t·a) fuses the last
        two multiplications and the sum of each term into one pass, `plus` is added in the
        operation that starts g, and both Gaussians are computed together in one (2, …) tensor
        (one operation instead of two at each stage, with the constants cached: see _pair)."""
        centres, scales = self._pair(x)
        ab = x.unsqueeze(0) - centres  # (2, …): a = x − 1 and b = x + 1
        e = exp_((ab * ab).mul_(scales))  # exp(−a²/s_sharp) and exp(−b²/s_flat); floored: see exp_
        (a, b), (ea, eb) = ab, e
        # the walls: k·(x − 1.5) right of 1.5, k·(x + 1.5) left of −1.5, else 0,
        # which is k·softshrink(x, 1.5) in one operation
        wall = F.softshrink(x, self.WALL_AT)
        if plus is None:
            g = torch.mul(wall, self.k, out=out) if out is not None else wall.mul_(self.k)
        else:  # plus + k·wall in one operation (alpha is passed as a number, not wrapped)
            g = torch.add(plus, wall, alpha=self.k, out=out) if out is not None else torch.add(plus, wall, alpha=self.k)
        g.addcmul_(ea, a, value=2 * self.d / self.s1)
        g.addcmul_(eb, b, value=2 * self.d / self.s2)
        return g

    def _pair(self, x) -> tuple[torch.Tensor, torch.Tensor]:
        """The centres (1, −1) and the factors (−1/s_sharp, −1/s_flat) of the two Gaussians, as
        (2, 1, …, 1) tensors that broadcast against x (…) on a new first axis; made once per
        dtype, device and number of axes (a Python number would be wrapped anew per operation)."""
        cache = self.__dict__.setdefault("_pair_cache", {})
        key = (x.dtype, x.device, x.dim())
        if key not in cache:
            shape = (2,) + (1,) * x.dim()
            cache[key] = tuple(torch.tensor(v, dtype=x.dtype, device=x.device).view(shape)
                               for v in ((1.0, -1.0), (-1 / self.s1, -1 / self.s2)))
        return cache[key]

    def loss(self, w):
        return self._profile(w[..., 0])

    def grad(self, w):
        return self._profile_grad(w)

    def _find_critical_points(self):
        for x, kind in self._critical_points_1d_profile():
            if kind == "min":
                self.minima.append(self.critical((x,) + (0.0,) * (self.dim - 1), "min"))
            else:
                self.saddles.append(self.critical((x,) + (0.0,) * (self.dim - 1), "saddle"))
        # sharp first (index 0: the starting basin), then flat
        self.minima.sort(key=lambda m: -m.position[0])
        self.minima = [Critical(m.position, m.hessian_eigs, "min", lab)
                       for m, lab in zip(self.minima, ("sharp", "flat"))]
        if len(self.minima) != 2 or len(self.saddles) != 1:
            raise ValueError("double well: these widths do not give two wells; make them narrower")
        self.saddle_x = self.saddles[0].position[0]
        self.flat_edge = 0.5 * (self.saddle_x + self.minima[1].position[0])
        self.default_start = self.minima[0].position

    def _critical_points_1d_profile(self):
        lo, hi = self.bounds[0]
        xs = torch.linspace(lo, hi, 20001, dtype=torch.float64)
        g = self._profile_grad(xs).numpy()
        found = []
        for i in np.flatnonzero(np.sign(g[:-1]) * np.sign(g[1:]) < 0):
            a, b = float(xs[i]), float(xs[i + 1])
            for _ in range(60):
                m = 0.5 * (a + b)
                if np.sign(float(self._profile_grad(torch.tensor(m, dtype=torch.float64)))) == np.sign(g[i]):
                    a = m
                else:
                    b = m
            found.append((0.5 * (a + b), "min" if g[i] < 0 else "saddle"))
        return found

    def barrier(self) -> float:
        """ΔL from the sharp minimum to the saddle."""
        s = torch.tensor(self.saddle_x, dtype=torch.float64)
        m = torch.tensor(self.minima[0].position[0], dtype=torch.float64)
        return float(self._profile(s) - self._profile(m))

    def basin(self, w):
        # 0 (sharp) right of the saddle; 1 (flat) left of the midpoint between the saddle and the
        # flat minimum; -1 on the ridge in between. A particle that just crosses the saddle falls
        # back half of the time; Kramers' τ counts completed transitions, so escape detection
        # (arrival in another basin) waits until the particle is well down the other side.
        x = w[..., 0]
        return torch.where(x > self.saddle_x, 0, torch.where(x < self.flat_edge, 1, -1))

    def escaped(self, w, start):
        # one comparison instead of basin()'s two torch.where (which are slow on the CPU)
        if isinstance(start, int) and start in (0, 1):
            return w[..., 0] < self.flat_edge if start == 0 else w[..., 0] > self.saddle_x
        return super().escaped(w, start)


class DoubleWell2D(DoubleWell1D):
    """The 1-D double well along x plus (b/2)·y² along y (b = `y_curvature`). The saddle is at
    (saddle_x, 0); basins are split by the line x = saddle_x."""

    name, dim = "double_well_2d", 2
    bounds = ((-2.2, 2.0), (-1.5, 1.5))

    def __init__(self, depth: float = 0.5, sharp_width: float = 0.08, flat_width: float = 0.72,
                 wall: float = 20.0, y_curvature: float = 1.0):
        if not y_curvature > 0:
            raise ValueError("double well: y_curvature must be positive")
        self.b = float(y_curvature)
        super().__init__(depth, sharp_width, flat_width, wall)
        self.params["y_curvature"] = y_curvature

    def loss(self, w):
        y = w[..., 1]
        return self._profile(w[..., 0]) + (0.5 * self.b) * y * y

    def grad(self, w):
        return self.grad_plus(w, None)

    def grad_plus(self, w, xi):
        # Both components are written straight into one output with w's memory layout
        # (empty_like keeps it; in the simulator's coordinate-major layout each is contiguous).
        out = torch.empty_like(w)
        x, y = w.unbind(-1)
        gx, gy = out.unbind(-1)
        if xi is None:
            torch.mul(y, self._constants(y, self.b)[0], out=gy)
            self._profile_grad(x, out=gx)
        else:
            xi_x, xi_y = xi.unbind(-1)
            torch.add(xi_y, y, alpha=self.b, out=gy)  # ξ_y + b·y in one operation
            self._profile_grad(x, plus=xi_x, out=gx)
        return out


# -- asymmetric valleys --------------------------------------------------------------------------


class Valley1D(Landscape):
    """L(w) = a_L w²/2 for w < 0 (the sharp side), a_R w²/2 for w ≥ 0 (the flat side)
    (theory.md §4, He, Huang & Yuan 2019). One minimum at 0 whose `hessian_eigs` are the two
    one-sided curvatures (a_L, a_R), since the Hessian jumps there. Basin: 0 everywhere."""

    name, dim = "valley_1d", 1
    bounds = ((-1.0, 1.0),)
    default_start = (0.0,)

    def __init__(self, a_left: float = 10.0, a_right: float = 1.0):
        super().__init__()
        if not (a_left > 0 and a_right > 0):
            raise ValueError("valley: a_left and a_right must be positive")
        self.params = dict(a_left=a_left, a_right=a_right)
        self.a_left, self.a_right = float(a_left), float(a_right)
        self.title = LANDSCAPES[self.name]
        self.minima = [Critical((0.0,), (self.a_left, self.a_right), "min", "")]

    def loss(self, w):
        x = w[..., 0]
        return 0.5 * torch.where(x < 0, self.a_left, self.a_right) * x * x

    def grad(self, w):
        # a_R·w + (a_L − a_R)·min(w, 0): a_L w left of 0, a_R w right of it. Arithmetic instead of
        # torch.where, which is several times slower on the CPU, in the simulator's hot loop.
        return torch.add(w * self.a_right, w.clamp(max=0.0), alpha=self.a_left - self.a_right)

    def basin(self, w):
        return torch.zeros(w.shape[:-1], dtype=torch.long, device=w.device)


class Valley2D(Landscape):
    """A smooth asymmetric valley: along x the profile
        f(x) = a_R x²/2 + (a_L − a_R)·(s²/2)·softplus(−x/s)²,
    which is ≈ a_L x²/2 for x ≪ −s and ≈ a_R x²/2 for x ≫ s (softplus(u) = log(1 + e^u));
    along y a quadratic (b/2)·y². One minimum (slightly right of 0, found by Newton)."""

    name, dim = "valley_2d", 2
    bounds = ((-1.5, 1.5), (-1.0, 1.0))

    def __init__(self, a_left: float = 10.0, a_right: float = 1.0, softness: float = 0.1,
                 y_curvature: float = 1.0):
        super().__init__()
        if not (a_left > 0 and a_right > 0 and softness > 0 and y_curvature > 0):
            raise ValueError("valley: a_left, a_right, softness and y_curvature must be positive")
        self.params = dict(a_left=a_left, a_right=a_right, softness=softness, y_curvature=y_curvature)
        self.aL, self.aR, self.s, self.b = float(a_left), float(a_right), float(softness), float(y_curvature)
        self.title = LANDSCAPES[self.name]
        self.minima = [self.critical(self._newton((0.0, 0.0)), "min")]
        self.default_start = self.minima[0].position

    def loss(self, w):
        x, y = w[..., 0], w[..., 1]
        sp = F.softplus(-x / self.s)
        return 0.5 * self.aR * x * x + (self.aL - self.aR) * 0.5 * self.s**2 * sp * sp + 0.5 * self.b * y * y

    def grad(self, w):
        x = w[..., 0]
        # d/dx (s²/2)·softplus(−x/s)² = −s·softplus(−x/s)·sigmoid(−x/s)
        gx = self.aR * x - (self.aL - self.aR) * self.s * F.softplus(-x / self.s) * torch.sigmoid(-x / self.s)
        return stack_coords(gx, self.b * w[..., 1])

    def basin(self, w):
        return torch.zeros(w.shape[:-1], dtype=torch.long, device=w.device)


# -- Zhu et al. toy with real minibatch noise ----------------------------------------------------


class Zhu(Landscape):
    """Zhu, Wu, Yu, Wu & Ma (ICML 2019), code uuujf/SGDNoise (theory.md §5.3). Per-sample loss

        ℓ(w; x) = min(10u² + 100v², ‖w − x + (1,1)‖²),  (x₁, y₁) = w − x − (1,1),
        u = c·x₁ − c·y₁,  v = c·x₁ + c·y₁,  c = cos(π/4),

    a sharp quadratic around x + (1,1) and a flat one around x − (1,1); L = mean over the data.
    Data: `n_data` points 1e-2·N(0, diag(10, 1)) rotated by π/4, drawn with `data_seed`.
    Basins follow the paper's success test: basin 1 (flat) iff both coordinates < −0.5; else 0."""

    name, dim = "zhu", 2
    bounds = ((-1.6, 1.6), (-1.6, 1.6))
    default_start = (1.0, 1.0)
    C = math.cos(math.pi / 4)

    def __init__(self, n_data: int = 100, data_seed: int = 0):
        super().__init__()
        n_data = int(n_data)
        if not 1 <= n_data <= 1000:
            raise ValueError("zhu: n_data must lie in [1, 1000]")
        self.params = dict(n_data=n_data, data_seed=data_seed)
        self.title = LANDSCAPES[self.name]
        rng = np.random.default_rng(int(data_seed))
        c = self.C
        rot = np.array([[c, -c], [c, c]])  # the paper's K (rotation by π/4)
        x = (rng.standard_normal((n_data, 2)) * np.array([math.sqrt(10.0), 1.0])) @ rot * 1e-2
        self.data = torch.tensor(x, dtype=torch.float64)
        self.loss_terms = n_data
        self._cache: dict = {}
        m_sharp = self._newton(tuple(1.0 + x.mean(0)))
        m_flat = self._newton(tuple(-1.0 + x.mean(0)))
        self.minima = [self.critical(m_sharp, "min", "sharp"), self.critical(m_flat, "min", "flat")]

    def _data(self, like: torch.Tensor):
        """The data in rotated coordinates, as (u_i, v_i) with u = U(w) − u_i, v = V(w) − v_i below;
        converted once per dtype and device."""
        key = (like.dtype, like.device)
        if key not in self._cache:
            x = self.data.to(dtype=like.dtype, device=like.device)
            c = self.C
            self._cache[key] = (c * (x[:, 0] - x[:, 1]), c * (x[:, 0] + x[:, 1]) + 2 * c)
        return self._cache[key]

    def _per_sample(self, w, ud, vd, want_loss: bool = False):
        """Per-sample losses and the gradient (g_u, g_v) in rotated coordinates, for w (..., 2)
        against data (ud, vd) of shape (S,) or (..., S).

        With u = c·(x₁ − y₁), v = c·(x₁ + y₁) as in the paper, the sharp piece is 10u² + 100v²,
        and the flat piece ‖w − x + (1,1)‖² is u² + (v + 2√2)² (a rotation keeps lengths; the flat
        centre sits 4c = 2√2 further along v). Working in (u, v) needs no (…, S, 2) tensors."""
        c = self.C
        U = (c * (w[..., 0] - w[..., 1])).unsqueeze(-1)
        V = (c * (w[..., 0] + w[..., 1])).unsqueeze(-1)
        u = U - ud
        v = V - vd
        vf = v + 4 * c  # v measured from the flat centre
        uu = u * u
        sharp = 10 * uu + 100 * v * v
        flat = uu + vf * vf
        if want_loss:  # the loss alone (the simulator measures it at recorded steps): no gradient
            return torch.minimum(sharp, flat), None, None
        m = (sharp < flat).to(w.dtype)  # 1 where the sharp piece is the smaller one (the min)
        # ∇ in (u, v): sharp (20u, 200v), flat (2u, 2vf); blended by m without torch.where
        g_u = u * (2 + 18 * m)
        g_v = 2 * vf + m * (200 * v - 2 * vf)
        return None, g_u, g_v

    def _to_xy(self, g_u, g_v):
        """Back from (u, v) to (x, y): ∂u = c·(1, −1), ∂v = c·(1, 1)."""
        c = self.C
        return stack_coords(c * (g_u + g_v), c * (g_v - g_u))

    def loss(self, w):
        losses, _, _ = self._per_sample(w, *self._data(w), want_loss=True)
        return losses.mean(-1)

    def grad(self, w):
        _, g_u, g_v = self._per_sample(w, *self._data(w))
        return self._to_xy(g_u.mean(-1), g_v.mean(-1))

    def minibatch_grad(self, w, idx, plus=None):
        """Gradient of the minibatch loss (+ `plus` if given): w (..., 2), idx (..., B) indices
        into the data. The same formulas as _per_sample, written for speed, since this is the
        hot loop of the Zhu scene (tensors of a few thousand numbers, where each operation's
        overhead costs more than its arithmetic):
        - the samples go on the FIRST axis, (B, ...), which is how core.toy.noise lays idx out in
          memory: selecting the data is then one index_select on a flat view, and the mean over
          the batch a reduction over the outer axis (both several times faster than ud[idx] and
          a mean over the last axis, measured);
        - constants are cached 0-dim tensors (Landscape._constants), and the multiplications by
          constants ride along in add(…, alpha=) and addcmul(…, value=);
        - m, 1 where the sharp piece is the smaller one, is written as 1.0/0.0 into a float
          tensor (a bool result is ~4× slower to make and must be converted anyway)."""
        ud, vd = self._data(w)
        c = self.C
        B = idx.shape[-1]
        c_, ten, two, four_c, minus_8c, c_over_b = self._constants(w, c, 10.0, 2.0, 4 * c, -8 * c, c / B)
        ib = idx.movedim(-1, 0)  # (B, ...)
        flat = ib.reshape(-1)  # a view when idx came from core.toy.noise, else a copy
        x, y = w.unbind(-1)
        U = torch.sub(x, y).mul_(c_)  # u = c·(x − y) − u_i, v = c·(x + y) − v_i (see _per_sample)
        V = torch.add(x, y).mul_(c_)
        u = U - ud.index_select(0, flat).view(ib.shape)  # (B, ...)
        v = V - vd.index_select(0, flat).view(ib.shape)
        vf = v + four_c  # v measured from the flat centre
        uu = u * u
        sharp = torch.addcmul(uu * ten, v, v, value=100)  # 10u² + 100v²
        flat_piece = torch.addcmul(uu, vf, vf)  # u² + vf²
        m = torch.lt(sharp, flat_piece, out=torch.empty_like(sharp))  # 1.0 where sharp < flat
        # ∇ in (u, v): sharp (20u, 200v), flat (2u, 2vf), i.e. u·(2 + 18m) and 2vf + m·(198v − 8c);
        # summed over the batch here, divided by B below
        s_u = (u * torch.add(two, m, alpha=18)).sum(0)
        s_v = torch.add(m * torch.add(minus_8c, v, alpha=198), vf, alpha=2).sum(0)
        # back to (x, y): ∂u = c·(1, −1), ∂v = c·(1, 1), and the mean's 1/B, written into one
        # output with w's layout
        out = torch.empty_like(w)
        gx, gy = out.unbind(-1)
        torch.add(s_v, s_u, out=gx).mul_(c_over_b)
        torch.sub(s_v, s_u, out=gy).mul_(c_over_b)
        return out if plus is None else out.add_(plus)

    def basin(self, w):
        return ((w[..., 0] < -0.5) & (w[..., 1] < -0.5)).long()

    def escaped(self, w, start):
        if isinstance(start, int) and start == 0:
            return (w[..., 0] < -0.5) & (w[..., 1] < -0.5)
        return super().escaped(w, start)


# -- many wells ----------------------------------------------------------------------------------


class ManyWells(Landscape):
    """L(w) = w²/20 − Σ_i exp(−(w − c_i)²/(2 s_i²)), c_i = −4 … 4, s_i alternating 0.12 (sharp,
    even i) and 0.3 (flat, odd i) (theory.md §5.4). Basins are split at the local maxima."""

    name, dim = "many_wells", 1
    bounds = ((-5.0, 5.0),)

    def __init__(self, sharp_width: float = 0.12, flat_width: float = 0.3):
        super().__init__()
        if not (0 < sharp_width <= 0.45 and 0 < flat_width <= 0.45):
            raise ValueError("many wells: widths must lie in (0, 0.45]")
        self.params = dict(sharp_width=sharp_width, flat_width=flat_width)
        self.title = LANDSCAPES[self.name]
        self.centres = torch.arange(-4.0, 5.0, dtype=torch.float64)
        self.loss_terms = len(self.centres)
        self.widths = torch.tensor([sharp_width if i % 2 == 0 else flat_width for i in range(9)],
                                   dtype=torch.float64)
        self._cache: dict = {}
        self.maxima = torch.empty(0, dtype=torch.float64)  # set below, once found
        maxima = []
        for x, kind in self._critical_points_1d():
            if kind == "min":
                i = int(torch.argmin((self.centres - x).abs()))
                self.minima.append(self.critical((x,), "min", "sharp" if i % 2 == 0 else "flat"))
            else:  # in 1-D the barriers between wells are local maxima
                maxima.append(x)
                self.saddles.append(self.critical((x,), "saddle"))
        self.maxima = torch.tensor(maxima, dtype=torch.float64)
        self._cache.clear()
        near0 = min(range(len(self.minima)), key=lambda i: abs(self.minima[i].position[0]))
        self.default_start = self.minima[near0].position

    def _cw(self, like):
        key = (like.dtype, like.device)
        if key not in self._cache:
            self._cache[key] = (self.centres.to(like), self.widths.to(like), self.maxima.to(like))
        return self._cache[key]

    def loss(self, w):
        c, s, _ = self._cw(w)
        x = w  # (..., 1) broadcasts against the 9 centres
        return x[..., 0] ** 2 / 20 - exp_(-((x - c) ** 2) / (2 * s * s)).sum(-1)  # floored exp: see exp_

    def grad(self, w):
        c, s, _ = self._cw(w)
        d = w - c
        return w / 10 + (d / (s * s) * exp_(-(d * d) / (2 * s * s))).sum(-1, keepdim=True)

    def basin(self, w):
        _, _, maxima = self._cw(w)
        return torch.searchsorted(maxima, w[..., 0].contiguous())


# -- classics ------------------------------------------------------------------------------------


class Rosenbrock(Landscape):
    """L = (a − x)² + b·(y − x²)²: one minimum at (a, a²) at the bottom of a curved valley."""

    name = "rosenbrock"
    bounds = ((-2.0, 2.0), (-1.0, 3.0))
    default_start = (-1.5, 2.0)

    def __init__(self, a: float = 1.0, b: float = 100.0):
        super().__init__()
        if not b > 0:
            raise ValueError("rosenbrock: b must be positive")
        self.params = dict(a=a, b=b)
        self.a, self.b = float(a), float(b)
        self.title = LANDSCAPES[self.name]
        self.minima = [self.critical((self.a, self.a**2), "min")]

    def loss(self, w):
        x, y = w[..., 0], w[..., 1]
        return (self.a - x) ** 2 + self.b * (y - x * x) ** 2

    def grad(self, w):
        x, y = w[..., 0], w[..., 1]
        r = y - x * x
        return stack_coords(-2 * (self.a - x) - 4 * self.b * x * r, 2 * self.b * r)

    def basin(self, w):
        return torch.zeros(w.shape[:-1], dtype=torch.long, device=w.device)


class Himmelblau(Landscape):
    """L = (x² + y − 11)² + (x + y² − 7)²: four minima of equal depth (L = 0), four saddles.
    Basins: the nearest minimum (an approximation of the true basins, good near the minima)."""

    name = "himmelblau"
    bounds = ((-5.0, 5.0), (-5.0, 5.0))
    default_start = (0.0, 0.0)
    MIN_GUESSES = ((3.0, 2.0), (-2.8, 3.1), (-3.8, -3.3), (3.6, -1.8))
    SADDLE_GUESSES = ((0.09, 2.88), (-3.07, -0.08), (3.39, 0.07), (-0.13, -1.95))

    def __init__(self):
        super().__init__()
        self.params = {}
        self.title = LANDSCAPES[self.name]
        self.minima = _label_by_sharpness([self.critical(self._newton(g), "min") for g in self.MIN_GUESSES])
        self.saddles = [self.critical(self._newton(g), "saddle") for g in self.SADDLE_GUESSES]

    def loss(self, w):
        x, y = w[..., 0], w[..., 1]
        return (x * x + y - 11) ** 2 + (x + y * y - 7) ** 2

    def grad(self, w):
        x, y = w[..., 0], w[..., 1]
        a = x * x + y - 11
        b = x + y * y - 7
        return stack_coords(4 * x * a + 2 * b, 2 * a + 4 * y * b)


class Rastrigin(Landscape):
    """L = 20 + Σ_i (w_i² − 10 cos 2π w_i) on [−5.12, 5.12]²: a local minimum near every integer
    point (121 of them), the global one at 0. Basin: index of the nearest integer point (row-major
    over −5 … 5), -1 outside the window. Saddles are not listed (there are hundreds)."""

    name = "rastrigin"
    bounds = ((-5.12, 5.12), (-5.12, 5.12))
    default_start = (2.0, 1.0)

    def __init__(self):
        super().__init__()
        self.params = {}
        self.title = LANDSCAPES[self.name]
        # The loss is separable, so each coordinate of a minimum solves the 1-D equation
        # 2x + 20π sin(2πx) = 0 near an integer k.
        roots = []
        for k in range(-5, 6):
            x = float(k)
            for _ in range(50):
                x -= (2 * x + 20 * math.pi * math.sin(2 * math.pi * x)) / (
                    2 + 40 * math.pi**2 * math.cos(2 * math.pi * x))
            roots.append(x)
        for rx in roots:
            for ry in roots:
                self.minima.append(self.critical((rx, ry), "min"))
        # label only the global minimum: the others are as sharp, but higher
        i0 = 5 * 11 + 5
        m = self.minima[i0]
        self.minima[i0] = Critical(m.position, m.hessian_eigs, "min", "global")
        self.default_start = self.minima[(2 + 5) * 11 + (1 + 5)].position

    def loss(self, w):
        return 20 + (w * w - 10 * torch.cos(2 * math.pi * w)).sum(-1)

    def grad(self, w):
        return 2 * w + 20 * math.pi * torch.sin(2 * math.pi * w)

    def basin(self, w):
        k = torch.round(w)
        inside = (k.abs() <= 5).all(-1)
        idx = ((k[..., 0] + 5) * 11 + (k[..., 1] + 5)).long()
        return torch.where(inside, idx, torch.full_like(idx, -1))


class Saddle(Landscape):
    """L = x²/2 − y²/2 + y⁴/4: a saddle at the origin (curvatures 1 and −1) between two minima at
    (0, ±1) (curvatures 1 and 2). Basin 0: y ≥ 0, basin 1: y < 0."""

    name = "saddle"
    bounds = ((-2.0, 2.0), (-1.8, 1.8))
    default_start = (1.5, 0.05)

    def __init__(self):
        super().__init__()
        self.params = {}
        self.title = LANDSCAPES[self.name]
        self.minima = [self.critical((0.0, 1.0), "min"), self.critical((0.0, -1.0), "min")]
        self.saddles = [self.critical((0.0, 0.0), "saddle")]

    def loss(self, w):
        x, y = w[..., 0], w[..., 1]
        return 0.5 * x * x - 0.5 * y * y + 0.25 * y**4

    def grad(self, w):
        x, y = w[..., 0], w[..., 1]
        return stack_coords(x, y * y * y - y)

    def basin(self, w):
        return (w[..., 1] < 0).long()


# -- user formula --------------------------------------------------------------------------------


class FormulaLandscape(Landscape):
    """A user formula L(x, y) (parsed safely by core.toy.formula, never eval/exec), differentiated by
    autograd. Minima: the strict local minima of an 81 × 81 grid over `bounds`, refined by Newton
    (at most 12 kept, lowest first). Saddles: grid points where ‖∇L‖ is locally smallest and the
    Hessian is indefinite, refined by Newton. Basins: the nearest minimum (a Voronoi partition,
    an approximation: true basins follow the ridges, which a grid cannot know in general)."""

    name = "formula"
    MAX_CRITICAL = 12
    GRID = 81

    def __init__(self, formula: str, bounds=((-3.0, 3.0), (-3.0, 3.0))):
        super().__init__()
        from core.toy.formula import compile_formula  # raises FormulaError (a ValueError) on bad text

        self.fn = compile_formula(formula)
        self.params = dict(formula=self.fn.text)
        self.title = f"L(x, y) = {self.fn.text}"
        self.bounds = tuple((float(lo), float(hi)) for lo, hi in bounds)
        self._find_critical_points()

    def loss(self, w):
        return self.fn(w[..., 0], w[..., 1])

    def _find_critical_points(self):
        (x0, x1), (y0, y1) = self.bounds
        n = self.GRID
        xs = torch.linspace(x0, x1, n, dtype=torch.float64)
        ys = torch.linspace(y0, y1, n, dtype=torch.float64)
        grid = torch.stack(torch.meshgrid(xs, ys, indexing="ij"), dim=-1)
        with torch.no_grad():
            z = self.loss(grid).expand(n, n).numpy().copy()
        gn = self.grad(grid).norm(dim=-1).numpy()
        z[~np.isfinite(z)] = np.inf
        gn[~np.isfinite(gn)] = np.inf

        def strict_local_min(a):
            inner = a[1:-1, 1:-1]
            ok = np.isfinite(inner)
            for dx in (-1, 0, 1):
                for dy in (-1, 0, 1):
                    if dx or dy:
                        ok &= inner < a[1 + dx:n - 1 + dx, 1 + dy:n - 1 + dy]
            return [(i + 1, j + 1) for i, j in zip(*np.nonzero(ok))]

        def refine(i, j):
            p = self._newton((float(xs[i]), float(ys[j])), steps=30)
            inside = all(lo <= v <= hi for v, (lo, hi) in zip(p, self.bounds))
            if not inside or not np.all(np.isfinite(p)):
                return None
            if np.linalg.norm(self.grad(torch.tensor(p)).numpy()) > 1e-6:
                return None
            return p

        minima, saddles = [], []
        for i, j in sorted(strict_local_min(z), key=lambda ij: z[ij])[: 4 * self.MAX_CRITICAL]:
            p = refine(i, j)
            if p is not None and all(np.hypot(*np.subtract(p, m.position)) > 1e-4 for m in minima):
                c = self.critical(p, "min")
                if c.hessian_eigs[0] >= -1e-9:
                    minima.append(c)
            if len(minima) >= self.MAX_CRITICAL:
                break
        for i, j in strict_local_min(gn)[: 8 * self.MAX_CRITICAL]:
            p = refine(i, j)
            if p is not None and all(np.hypot(*np.subtract(p, s.position)) > 1e-4 for s in saddles):
                c = self.critical(p, "saddle")
                if c.hessian_eigs[0] < 0 < c.hessian_eigs[-1]:
                    saddles.append(c)
            if len(saddles) >= self.MAX_CRITICAL:
                break
        self.minima = _label_by_sharpness(minima)
        self.saddles = saddles
        if minima:  # start in the sharpest minimum: the interesting place to escape from
            self.default_start = max(minima, key=lambda m: m.hessian_eigs[-1]).position
        else:
            self.default_start = (0.5 * (x0 + x1), 0.5 * (y0 + y1))


_FAMILIES = {
    "double_well_1d": DoubleWell1D,
    "double_well_2d": DoubleWell2D,
    "valley_1d": Valley1D,
    "valley_2d": Valley2D,
    "zhu": Zhu,
    "many_wells": ManyWells,
    "rosenbrock": Rosenbrock,
    "himmelblau": Himmelblau,
    "rastrigin": Rastrigin,
    "saddle": Saddle,
}


def make_landscape(name: str, formula: str = "", **params) -> Landscape:
    """Build a landscape by name; its parameters (a_left, a_right, depth, …) are keywords.
    Raises ValueError (FormulaError for a bad formula) with a one-line message on bad input."""
    if name == "formula":
        if not formula:
            raise ValueError("the formula landscape needs a formula in x and y")
        return FormulaLandscape(formula, **params)
    if name not in _FAMILIES:
        raise ValueError(f"unknown landscape {name!r}; choose one of {', '.join(LANDSCAPES)}")
    known = [p for p in inspect.signature(_FAMILIES[name]).parameters]
    for key in params:
        if key not in known:
            raise ValueError(f"{name} has no parameter {key!r}; it has {', '.join(known) or 'none'}")
    return _FAMILIES[name](**params)
