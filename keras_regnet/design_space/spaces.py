"""The paper's design spaces as objects with a seeded ``sample()`` and a complexity regime filter.

A design space draws candidate networks; a :class:`Regime` keeps those whose analytic complexity (computed by
:func:`keras_regnet.complexity`, no Keras) falls in given ranges, by rejection sampling. Samples are plain
spec dicts (``RegNetParams/AnyNetParams.to_dict()``) that :func:`keras_regnet.models.build_model` accepts.

Sampling rules follow the paper's text and pycls's sweep samplers (listed with their sources in
docs/design-spaces.md): AnyNet depths and widths log-uniform (pycls's ``log_uniform``, quantized up to 1 and 8),
b and g uniform over powers of two, non-decreasing widths/depths of AnyNetXD/XE drawn from the i.i.d. law
conditioned on the order (what rejecting unordered draws gives); RegNet d uniform, w0/wa/wm log-uniform (quantized
to 8, 0.1 and 0.001), g by pycls's ``power2_or_log_uniform``, and only candidates whose generated stage count
equals the quantization's stage count (pycls's ``check_regnet_constraints``: no stage merged or skipped).

Candidates are drawn in batches of 1024 and filtered with the analytic complexity computed for the whole batch
in NumPy (:mod:`keras_regnet.design_space.vectorized`, equal to :func:`keras_regnet.complexity` for every
candidate). RegNet spaces draw exactly the sequence they drew before batching; AnyNet spaces draw each batch's
parameters column by column, so a seed gives other samples than the one-candidate-at-a-time sampler of
keras-regnet <= 0.3 (same distribution; ``SAMPLER_VERSION`` is recorded with sweep results).
"""

from __future__ import annotations

import dataclasses
import math
import numbers

import numpy as np

from keras_regnet import design, specs
from keras_regnet.complexity import anynet_complexity
from keras_regnet.design_space import vectorized

__all__ = [
    "DesignSpace",
    "AnyNetSpace",
    "RegNetSpace",
    "Regime",
    "RegimeUnreachableError",
    "SPACES",
    "get_space",
    "SAMPLER_VERSION",
]

# 2: batched candidates (AnyNet sequences per seed differ from version 1; RegNet sequences are unchanged).
# 3: pycls's rules: RegNet keeps only candidates with no merged or skipped stage (num_stages == total_stages) and
#    draws g with power2_or_log_uniform; AnyNet depths are log-uniform (the paper's text) and AnyNetXD/XE's ordered
#    widths/depths follow the conditioned law instead of sorted i.i.d. draws.
SAMPLER_VERSION = 3
_BATCH = 1024

BOTTLENECK_RATIOS = (1, 2, 4)
GROUP_WIDTHS = (1, 2, 4, 8, 16, 32)


class RegimeUnreachableError(ValueError):
    """Rejection sampling found no candidate in the regime within the allowed number of tries."""


def _check_range(name, value):
    """Validate an optional (low, high) range; return it as a tuple of floats or None."""
    if value is None:
        return None
    try:
        low, high = value
        low, high = float(low), float(high)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a (min, max) pair of numbers, got {value!r}.") from None
    if not (math.isfinite(low) and math.isfinite(high)) or low < 0 or low > high:
        raise ValueError(f"{name} range must satisfy 0 <= min <= max, got {value!r}.")
    return (low, high)


@dataclasses.dataclass(frozen=True)
class Regime:
    """A complexity regime: optional (min, max) ranges of flops, params and acts at a given input size.

    Flops are multiply-adds as in the paper (``Regime(flops=(360e6, 400e6))`` is the paper's 400MF regime at
    224 px). ``resolution`` and ``classes`` are those the models will be trained with; they change complexity.
    """

    flops: tuple | None = None
    params: tuple | None = None
    acts: tuple | None = None
    resolution: int = 224
    classes: int = 1000

    def __post_init__(self):
        for field in ("flops", "params", "acts"):
            object.__setattr__(self, field, _check_range(field, getattr(self, field)))
        for field, minimum in (("resolution", 1), ("classes", 1)):
            v = getattr(self, field)
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < minimum:
                raise ValueError(f"{field} must be a positive integer, got {v!r}.")

    def measure(self, spec) -> dict:
        """Complexity {'flops', 'params', 'acts'} of a spec (dict or params object) at this regime's input."""
        p = specs.params_from_dict(spec) if isinstance(spec, dict) else spec
        if isinstance(p, specs.RegNetParams):
            p = p.to_anynet()
        return anynet_complexity(p, resolution=self.resolution, classes=self.classes)

    def contains(self, cx: dict) -> bool:
        """Whether a complexity dict lies inside every range that is set."""
        for field in ("flops", "params", "acts"):
            rng = getattr(self, field)
            if rng is not None and not rng[0] <= cx[field] <= rng[1]:
                return False
        return True

    def contains_batch(self, cx: dict) -> np.ndarray:
        """Boolean mask: which entries of a complexity dict of arrays lie inside every range that is set."""
        n = len(cx["flops"])
        inside = np.ones(n, dtype=bool)
        for field in ("flops", "params", "acts"):
            rng = getattr(self, field)
            if rng is not None:
                v = cx[field]
                inside &= (v >= rng[0]) & (v <= rng[1])
        return inside

    def to_dict(self) -> dict:
        """JSON form (stored with sweep results so a resumed sweep can check it runs the same regime)."""
        return {k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()}

    def describe(self) -> str:
        """Human-readable summary, e.g. 'flops 360-400 M at 224 px, 1000 classes'."""
        parts = [f"{f} {r[0] / 1e6:g}-{r[1] / 1e6:g} M" for f in ("flops", "params", "acts") if (r := getattr(self, f))]
        return f"{', '.join(parts) or 'any complexity'} at {self.resolution} px, {self.classes} classes"


def _log_uniform(rng, low, high, q, size=None):
    """Log-uniform value(s) in [low, high] quantized up to a multiple of q (pycls's ``log_uniform``).

    The continuous value is log-uniform on (low - min(q, low / 2), high] and rounded up to a multiple of q, so
    ``low`` gets the mass of log(low / (low - q*)) and every larger multiple v of q that of log(v / (v - q)).
    """
    f = np.exp(rng.uniform(math.log(low - min(q, low / 2)), math.log(high), size=size))
    v = np.minimum(np.ceil(f / q - 1e-9) * q, high)
    return v if size is not None else float(v)


def _log_uniform_probs(low, high, q):
    """(values, probabilities) of :func:`_log_uniform` on a grid of multiples of q (exact, for integer q)."""
    values = np.arange(low, high + q / 2, q, dtype=np.float64)
    lower = np.maximum(values - q, low - min(q, low / 2))
    probs = np.log(values / lower) / math.log(high / (low - min(q, low / 2)))
    return values, probs / probs.sum()


def _power2_or_log_uniform(rng, low, high, q, size):
    """pycls's ``power2_or_log_uniform``: a power of two uniform in log2 over [low, high]; values >= q are then
    redrawn log-uniform over [max(low, q), high] quantized to min(high, q). Both draws are always made (so the
    stream of random numbers does not depend on the values)."""
    p2 = 2.0 ** np.floor(rng.uniform(math.log2(low), math.log2(high) + 1, size=size))
    lg = _log_uniform(rng, max(low, q), high, min(high, q), size=size)
    return np.where(p2 >= q, lg, p2).astype(np.int64)


def _ordered_draws(rng, values, probs, shape):
    """Rows of ``shape[1]`` i.i.d. draws from (values, probs) conditioned on being non-decreasing.

    This is the law rejection sampling of unordered rows gives (each non-decreasing row with probability
    proportional to the product of its values' probabilities), drawn directly: position i is drawn given
    position i - 1 from the weights p(v) * (mass of the non-decreasing completions starting at v).
    Sorting i.i.d. draws would instead favour rows of distinct values (a row with a tie has fewer orderings).
    """
    rows, n = shape
    k = len(values)
    weights = [np.asarray(probs, dtype=np.float64)]
    for _ in range(n - 1):  # weights[j]: mass of the last j + 1 positions starting at each value
        tail = np.cumsum(weights[-1][::-1])[::-1]
        weights.append(probs * tail)
    weights = weights[::-1]  # weights[i]: position i
    out = np.zeros((rows, n), dtype=np.int64)
    prev = np.zeros(rows, dtype=np.int64)
    u = rng.uniform(size=(rows, n))
    for i in range(n):
        cum = np.concatenate([[0.0], np.cumsum(weights[i])])
        lo, hi = cum[prev], cum[-1]
        t = lo + u[:, i] * (hi - lo)
        idx = np.searchsorted(cum, t, side="right") - 1
        idx = np.clip(np.maximum(idx, prev), 0, k - 1)
        out[:, i] = idx
        prev = idx
    return np.asarray(values)[out]


class DesignSpace:
    """A family of networks with a seeded sampler. Subclasses define :meth:`draw` and :meth:`violations`."""

    name = "DesignSpace"

    def __init__(self, stem="imagenet", stem_width=32):
        if stem not in ("imagenet", "cifar"):
            raise ValueError(f"stem must be 'imagenet' or 'cifar', got {stem!r}.")
        if isinstance(stem_width, bool) or not isinstance(stem_width, numbers.Integral) or stem_width < 1:
            raise ValueError(f"stem_width must be a positive integer, got {stem_width!r}.")
        self.stem = stem
        self.stem_width = int(stem_width)

    def draw(self, rng: np.random.Generator):
        """One candidate (RegNetParams or AnyNetParams) from the space, before any regime filter."""
        raise NotImplementedError

    def batches(self, rng: np.random.Generator, regime: "Regime"):
        """Endless stream of candidate batches ``(make, cx)``: ``cx`` holds int arrays of flops, params and acts
        at the regime's input size, ``make(i)`` builds the i-th candidate's params object.

        The default draws one candidate at a time with :meth:`draw`; the paper's spaces override it with
        vectorised NumPy versions.
        """
        while True:
            ps = [self.draw(rng) for _ in range(64)]
            cxs = [regime.measure(p) for p in ps]
            cx = {k: np.array([c[k] for c in cxs], dtype=np.int64) for k in ("flops", "params", "acts")}
            yield ps.__getitem__, cx

    def candidates(self, rng: np.random.Generator, regime: "Regime | None" = None):
        """Endless stream of candidates (params objects), in the order the sampler considers them."""
        for make, cx in self.batches(rng, regime or Regime()):
            for i in range(len(cx["flops"])):
                yield make(i)

    def violations(self, spec: dict) -> list:
        """The space's constraints that a spec dict breaks (empty when it belongs to the space)."""
        raise NotImplementedError

    def config(self) -> dict:
        """The space's settings as JSON (stored with results)."""
        return {"name": self.name, "stem": self.stem, "stem_width": self.stem_width}

    def iter_samples(self, seed=0, regime: Regime | None = None, max_tries=50_000):
        """Yield (spec dict, complexity dict) forever, deterministically for a seed.

        With a ``regime``, candidates outside it are rejected; after ``max_tries`` consecutive rejections a
        :class:`RegimeUnreachableError` says which complexities the space produced instead.
        """
        if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
            raise ValueError(f"seed must be a non-negative integer, got {seed!r}.")
        if isinstance(max_tries, bool) or not isinstance(max_tries, numbers.Integral) or max_tries < 1:
            raise ValueError(f"max_tries must be a positive integer, got {max_tries!r}.")
        regime = regime or Regime()
        run = 0  # consecutive rejections so far
        seen = {"flops": [math.inf, 0], "params": [math.inf, 0]}
        for make, cx in self.batches(np.random.default_rng(seed), regime):
            n = len(cx["flops"])
            inside = regime.contains_batch(cx)
            prev = 0
            for a in [*np.flatnonzero(inside).tolist(), None]:
                stop = n if a is None else a
                over = run + (stop - prev) >= max_tries
                if over:
                    stop = prev + max_tries - run
                if stop > prev:
                    for k, v in seen.items():
                        v[0], v[1] = min(v[0], int(cx[k][prev:stop].min())), max(v[1], int(cx[k][prev:stop].max()))
                if over:
                    raise RegimeUnreachableError(
                        f"no {self.name} sample satisfied the regime ({regime.describe()}) in {max_tries} tries; "
                        f"candidates had flops {seen['flops'][0] / 1e6:.3g}-{seen['flops'][1] / 1e6:.3g} M and "
                        f"params {seen['params'][0] / 1e6:.3g}-{seen['params'][1] / 1e6:.3g} M. Widen the range, "
                        "change the resolution, or raise max_tries."
                    )
                if a is None:
                    run += stop - prev
                    break
                yield make(a).to_dict(), {k: int(cx[k][a]) for k in ("flops", "params", "acts")}
                run, prev = 0, a + 1
                seen = {"flops": [math.inf, 0], "params": [math.inf, 0]}

    def sample(self, n, seed=0, regime: Regime | None = None, max_tries=50_000) -> list:
        """``n`` spec dicts, deterministic for a seed; ``sample(k)`` is a prefix of ``sample(n)`` for k < n."""
        if isinstance(n, bool) or not isinstance(n, numbers.Integral) or n < 0:
            raise ValueError(f"n must be a non-negative integer, got {n!r}.")
        it = self.iter_samples(seed, regime, max_tries)
        return [next(it)[0] for _ in range(n)]

    def __repr__(self):
        return f"{type(self).__name__}(stem={self.stem!r}, stem_width={self.stem_width})"


class AnyNetSpace(DesignSpace):
    """AnyNetX: ``num_stages`` stages, each with depth <= 16, width <= 1024 (multiple of 8), b in {1, 2, 4},
    g in {1, 2, 4, 8, 16, 32}; flags add the paper's constraints (shared b, shared g, non-decreasing widths,
    non-decreasing depths). Widths and group widths are then made compatible as pycls does (a group width is
    capped by its stage's bottleneck width), so a stage's g may end up smaller than the value drawn.
    """

    name = "AnyNetX"
    shared_bottleneck = False
    shared_group = False
    increasing_widths = False
    increasing_depths = False

    def __init__(self, stem="imagenet", stem_width=32, num_stages=4, max_depth=16, max_width=1024,
                 bottleneck_ratios=BOTTLENECK_RATIOS, group_widths=GROUP_WIDTHS):
        super().__init__(stem, stem_width)
        for field, v in (("num_stages", num_stages), ("max_depth", max_depth), ("max_width", max_width)):
            if isinstance(v, bool) or not isinstance(v, numbers.Integral) or v < 1:
                raise ValueError(f"{field} must be a positive integer, got {v!r}.")
        if max_width % 8:
            raise ValueError(f"max_width must be a multiple of 8, got {max_width}.")
        if not bottleneck_ratios or not group_widths:
            raise ValueError("bottleneck_ratios and group_widths must list at least one value each.")
        self.num_stages, self.max_depth, self.max_width = int(num_stages), int(max_depth), int(max_width)
        self.bottleneck_ratios = tuple(bottleneck_ratios)
        self.group_widths = tuple(int(g) for g in group_widths)

    def config(self):
        return {
            **super().config(), "num_stages": self.num_stages, "max_depth": self.max_depth,
            "max_width": self.max_width, "bottleneck_ratios": list(self.bottleneck_ratios),
            "group_widths": list(self.group_widths),
        }

    def draw(self, rng):
        # The readable one-candidate rules (the batched sampler below draws the same law, tested by KS tests):
        # d log-uniform in [1, max_depth] and w log-uniform in [8, max_width] quantized up to 1 and 8 (the paper's
        # "log-uniform sampling of d_i <= 16, w_i <= 1024 and divisible by 8", pycls's log_uniform), b and g
        # uniform over their values (power-of-two grids, pycls's power2_uniform); XD/XE redraw until widths/depths
        # are non-decreasing (the constraint as a rejection).
        n = self.num_stages
        while True:
            depths = [int(d) for d in _log_uniform(rng, 1, self.max_depth, 1, size=n)]
            widths = [int(w) for w in _log_uniform(rng, 8, self.max_width, 8, size=n)]
            if (not self.increasing_widths or widths == sorted(widths)) and (
                    not self.increasing_depths or depths == sorted(depths)):
                break
        nb = 1 if self.shared_bottleneck else n
        ng = 1 if self.shared_group else n
        bs = [self.bottleneck_ratios[i] for i in rng.integers(len(self.bottleneck_ratios), size=nb)] * (n // nb)
        gs = [self.group_widths[i] for i in rng.integers(len(self.group_widths), size=ng)] * (n // ng)
        widths, bs, gs = design.adjust_block_compatibility(widths, bs, gs)
        return specs.AnyNetParams(depths, widths, bs, gs, stem_width=self.stem_width, stem=self.stem)

    def batches(self, rng, regime, batch=_BATCH):
        # The rules of draw(), one column of the batch at a time: i.i.d. rows with draw()'s distribution. Ordered
        # widths/depths are drawn from the conditioned law directly (no rejection).
        n = self.num_stages
        nb = 1 if self.shared_bottleneck else n
        ng = 1 if self.shared_group else n
        b_values = np.asarray(self.bottleneck_ratios, dtype=np.float64)
        g_values = np.asarray(self.group_widths, dtype=np.int64)
        d_law = _log_uniform_probs(1, self.max_depth, 1)
        w_law = _log_uniform_probs(8, self.max_width, 8)
        while True:
            if self.increasing_depths:
                depths = _ordered_draws(rng, *d_law, (batch, n)).astype(np.int64)
            else:
                depths = _log_uniform(rng, 1, self.max_depth, 1, size=(batch, n)).astype(np.int64)
            if self.increasing_widths:
                widths = _ordered_draws(rng, *w_law, (batch, n))
            else:
                widths = _log_uniform(rng, 8, self.max_width, 8, size=(batch, n))
            bs = np.broadcast_to(b_values[rng.integers(len(b_values), size=(batch, nb))], (batch, n))
            gs = np.broadcast_to(g_values[rng.integers(len(g_values), size=(batch, ng))], (batch, n))
            ws, gs = vectorized.adjust_block_compatibility(widths, bs, gs)
            cx = vectorized.anynet_complexity(depths, ws, bs, gs, 0.0, self.stem_width, self.stem,
                                              regime.resolution, regime.classes)

            def make(i, depths=depths, ws=ws, bs=bs, gs=gs):
                return specs.AnyNetParams(depths[i].tolist(), ws[i].tolist(), bs[i].tolist(), gs[i].tolist(),
                                          stem_width=self.stem_width, stem=self.stem)

            yield make, cx

    def violations(self, spec):
        p = specs.params_from_dict(spec) if isinstance(spec, dict) else spec
        if not isinstance(p, specs.AnyNetParams):
            return [f"{self.name} samples are AnyNet specs, got {type(p).__name__}"]
        out = []
        if len(p.depths) != self.num_stages:
            out.append(f"{len(p.depths)} stages instead of {self.num_stages}")
        if p.stem != self.stem or p.stem_width != self.stem_width or p.se_ratio:
            out.append("stem or SE differ from the space's")
        for i, (d, w, b, g) in enumerate(zip(p.depths, p.widths, p.bottleneck_ratios, p.group_widths)):
            if not 1 <= d <= self.max_depth:
                out.append(f"stage {i + 1} depth {d} not in [1, {self.max_depth}]")
            if w % 8 or not 8 <= w <= self.max_width:
                out.append(f"stage {i + 1} width {w} not a multiple of 8 in [8, {self.max_width}]")
            if b not in self.bottleneck_ratios:
                out.append(f"stage {i + 1} bottleneck ratio {b} not in {self.bottleneck_ratios}")
            wb = int(round(w / b))
            # pycls caps g at the bottleneck width, so a capped g need not be one of the listed values.
            if wb % g or (g not in self.group_widths and not (g == wb and g < max(self.group_widths))):
                out.append(f"stage {i + 1} group width {g} not allowed for bottleneck width {wb}")
        if self.shared_bottleneck and len(set(p.bottleneck_ratios)) > 1:
            out.append(f"bottleneck ratios {p.bottleneck_ratios} are not shared")
        if self.shared_group:
            g_max = max(p.group_widths)
            for w, b, g in zip(p.widths, p.bottleneck_ratios, p.group_widths):
                if g != g_max and not g == int(round(w / b)) < g_max:
                    out.append(f"group widths {p.group_widths} are not one shared (possibly capped) value")
                    break
        if self.increasing_widths and list(p.widths) != sorted(p.widths):
            out.append(f"widths {p.widths} are not non-decreasing")
        if self.increasing_depths and list(p.depths) != sorted(p.depths):
            out.append(f"depths {p.depths} are not non-decreasing")
        return out


class AnyNetXA(AnyNetSpace):
    """AnyNetXA: the unconstrained AnyNetX design space (per-stage d, w, b, g)."""

    name = "AnyNetXA"


class AnyNetXB(AnyNetXA):
    """AnyNetXB: AnyNetXA with one bottleneck ratio b shared by all stages."""

    name = "AnyNetXB"
    shared_bottleneck = True


class AnyNetXC(AnyNetXB):
    """AnyNetXC: AnyNetXB with one group width g shared by all stages."""

    name = "AnyNetXC"
    shared_group = True


class AnyNetXD(AnyNetXC):
    """AnyNetXD: AnyNetXC with non-decreasing stage widths."""

    name = "AnyNetXD"
    increasing_widths = True


class AnyNetXE(AnyNetXD):
    """AnyNetXE: AnyNetXD with non-decreasing stage depths."""

    name = "AnyNetXE"
    increasing_depths = True


class RegNetSpace(DesignSpace):
    """RegNet: d < 64, w0 in [8, 256] (multiple of 8), wa in [8, 256], wm in [1.5, 3] (the paper's ranges), b in
    {1, 2, 4} and g in [1, 32] shared by all stages, and ``num_stages`` (min, max) generated stages (pycls's sweeps
    default to exactly 4). Sampled as pycls's ``regnet_sampler``: d uniform, w0/wa/wm log-uniform quantized to 8,
    0.1 and 0.001, b a uniform power of two, g by ``power2_or_log_uniform`` (1, 2, 4, or a log-uniform multiple of
    8); a candidate is kept only when its generated stages are exactly the quantization's stages
    (``check_regnet_constraints``: none merged by the rounding to multiples of 8, none skipped).
    """

    name = "RegNet"
    se_ratio = 0.0

    def __init__(self, stem="imagenet", stem_width=32, depth=(1, 63), w0=(8, 256), wa=(8.0, 256.0), wm=(1.5, 3.0),
                 bottleneck_ratios=BOTTLENECK_RATIOS, group_width=(1, 32), num_stages=(4, 4)):
        super().__init__(stem, stem_width)
        self.depth = tuple(int(v) for v in depth)
        self.w0 = tuple(int(v) for v in w0)
        self.wa = tuple(float(v) for v in wa)
        self.wm = tuple(float(v) for v in wm)
        self.num_stages = tuple(int(v) for v in num_stages)
        self.group_width = tuple(int(v) for v in group_width)
        gw_ok = all(v >= 1 and v & (v - 1) == 0 for v in self.group_width)  # pycls's validate_rand
        if not (1 <= self.depth[0] <= self.depth[1] and 8 <= self.w0[0] <= self.w0[1] and self.w0[0] % 8 == 0
                and self.w0[1] % 8 == 0 and 0 < self.wa[0] <= self.wa[1] and 1 < self.wm[0] <= self.wm[1]
                and 1 <= self.num_stages[0] <= self.num_stages[1] and gw_ok
                and self.group_width[0] <= self.group_width[1]):
            raise ValueError(
                "RegNet ranges need 1 <= depth min <= max, w0 multiples of 8 with 8 <= min <= max, "
                f"0 < wa min <= max, 1 < wm min <= max, 1 <= num_stages min <= max, group_width min <= max both "
                f"powers of two; got depth={depth}, w0={w0}, wa={wa}, wm={wm}, "
                f"num_stages={num_stages}, group_width={group_width}."
            )
        self.bottleneck_ratios = tuple(bottleneck_ratios)

    def config(self):
        return {
            **super().config(), "depth": list(self.depth), "w0": list(self.w0), "wa": list(self.wa),
            "wm": list(self.wm), "num_stages": list(self.num_stages), "se_ratio": self.se_ratio,
            "bottleneck_ratios": list(self.bottleneck_ratios), "group_width": list(self.group_width),
        }

    def draw(self, rng):
        return next(self.candidates(rng))

    def draw_parameters(self, rng, size):
        """``size`` raw draws (d, w0, wa, wm, b, g) of pycls's regnet_sampler, before the stage rule."""
        d = rng.integers(self.depth[0], self.depth[1] + 1, size=size)
        w0 = _log_uniform(rng, self.w0[0], self.w0[1], 8, size=size)
        wa = np.round(_log_uniform(rng, self.wa[0], self.wa[1], 0.1, size=size), 1)
        wm = np.round(_log_uniform(rng, self.wm[0], self.wm[1], 0.001, size=size), 3)
        b = np.asarray(self.bottleneck_ratios, dtype=np.float64)[rng.integers(len(self.bottleneck_ratios), size=size)]
        g = _power2_or_log_uniform(rng, self.group_width[0], self.group_width[1], 8, size)
        return d, w0, wa, wm, b, g

    def stage_rule(self, d, w0, wa, wm):
        """Boolean mask of the candidates (arrays) the stage rule keeps: as many distinct quantized widths as the
        quantization has stages, that number within ``num_stages`` (exact: rounding ties use the scalar path)."""
        d = np.asarray(d)
        keep = np.zeros(d.shape[0], dtype=bool)
        lo, hi = self.num_stages
        count, total, unsure = vectorized.regnet_stage_counts(d, w0, wa, wm)
        rows = np.flatnonzero(unsure | ((count == total) & (count >= lo) & (count <= hi)))
        starts, _, tie, total_b = vectorized.regnet_stages(d[rows], w0[rows], wa[rows], wm[rows],
                                                           int(d.max(initial=1)), return_total=True)
        n = starts.sum(axis=1)
        keep[rows] = ~tie & (n == total_b) & (n >= lo) & (n <= hi)
        for i in rows[tie]:
            n, total = _stage_counts(d[i], w0[i], wa[i], wm[i])
            keep[i] = n == total and lo <= n <= hi
        return keep

    def batches(self, rng, regime, batch=_BATCH):
        # Parameters are drawn in batches of 4 x 1024, the stage rule is evaluated for the whole batch (a closed
        # form first, then the per-block widths of the rows it keeps), and the kept candidates are measured in
        # NumPy. Candidates whose generator rounding is within 1e-6 of a tie use the scalar reference (exact).
        hi = self.num_stages[1]
        while True:
            d, w0, wa, wm, b, g = self.draw_parameters(rng, 4 * batch)
            keep = np.flatnonzero(self.stage_rule(d, w0, wa, wm))
            starts, block_w, tie = vectorized.regnet_stages(d[keep], w0[keep], wa[keep], wm[keep], self.depth[1])
            cx = {k: np.zeros(keep.size, np.int64) for k in ("flops", "params", "acts")}
            fast = np.flatnonzero(~tie)
            if fast.size:
                rows = keep[fast]
                depths, widths = vectorized.regnet_stage_arrays(d[rows], starts[fast], block_w[fast], hi)
                bs = np.broadcast_to(b[rows][:, None], depths.shape)
                gs = np.broadcast_to(g[rows][:, None], depths.shape)
                ws, gs = vectorized.adjust_block_compatibility(widths, bs, gs)
                fcx = vectorized.anynet_complexity(depths, ws, bs, gs, self.se_ratio, self.stem_width, self.stem,
                                                   regime.resolution, regime.classes)
                for k in cx:
                    cx[k][fast] = fcx[k]
            for pos in np.flatnonzero(tie):
                i = keep[pos]
                a = self._params(d[i], w0[i], wa[i], wm[i], b[i], g[i]).to_anynet()
                exact = anynet_complexity(a, resolution=regime.resolution, classes=regime.classes)
                for k in cx:
                    cx[k][pos] = exact[k]

            def make(j, keep=keep, d=d, w0=w0, wa=wa, wm=wm, b=b, g=g):
                i = keep[j]
                return self._params(d[i], w0[i], wa[i], wm[i], b[i], g[i])

            yield make, cx

    def _params(self, d, w0, wa, wm, b, g):
        return specs.RegNetParams(int(d), int(w0), float(wa), float(wm), int(g), float(b), self.se_ratio,
                                  self.stem_width, self.stem)

    def _group_width_allowed(self, g):
        lo, hi = self.group_width
        if not lo <= g <= hi:
            return False
        return (g < 8 and g & (g - 1) == 0) or (g >= 8 and g % min(hi, 8) == 0)

    def violations(self, spec):
        p = specs.params_from_dict(spec) if isinstance(spec, dict) else spec
        if not isinstance(p, specs.RegNetParams):
            return [f"{self.name} samples are RegNet specs, got {type(p).__name__}"]
        out = []
        checks = [
            ("depth", p.depth, self.depth), ("w0", p.w0, self.w0), ("wa", p.wa, self.wa), ("wm", p.wm, self.wm),
        ]
        for field, v, (low, high) in checks:
            if not low <= v <= high:
                out.append(f"{field}={v} not in [{low}, {high}]")
        if p.w0 % 8:
            out.append(f"w0={p.w0} not a multiple of 8")
        if p.bottleneck_ratio not in self.bottleneck_ratios:
            out.append(f"bottleneck ratio {p.bottleneck_ratio} not in {self.bottleneck_ratios}")
        if not self._group_width_allowed(p.group_width):
            out.append(f"group width {p.group_width} not a power of two below 8 or a multiple of 8 in "
                       f"{list(self.group_width)}")
        if p.se_ratio != self.se_ratio or p.stem != self.stem or p.stem_width != self.stem_width:
            out.append("SE ratio or stem differ from the space's")
        n, total = _stage_counts(p.depth, p.w0, p.wa, p.wm)
        if n != total:
            out.append(f"{n} distinct stage widths where the quantization has {total} stages (stages merged by "
                       "the rounding to multiples of 8, or skipped); pycls rejects it")
        if not self.num_stages[0] <= n <= self.num_stages[1]:
            out.append(f"{n} stages not in {list(self.num_stages)}")
        return out


def _stage_counts(d, w0, wa, wm, q=8):
    """(distinct quantized widths, quantization stages max(s) + 1) of one RegNet, with the generator's NumPy
    operations (the scalar reference of the stage rule)."""
    u = np.arange(int(d)) * float(wa) + float(w0)
    s = np.round(np.log(u / float(w0)) / np.log(float(wm)))
    widths = np.round(float(w0) * np.power(float(wm), s) / q).astype(np.int64) * q
    return len(np.unique(widths)), int(s.max()) + 1


class RegNetX(RegNetSpace):
    """RegNetX: the RegNet design space (d, w0, wa, wm, b, g) without Squeeze-and-Excitation."""

    name = "RegNetX"


class RegNetY(RegNetSpace):
    """RegNetY: RegNetX with Squeeze-and-Excitation (ratio 0.25)."""

    name = "RegNetY"
    se_ratio = 0.25


SPACES = {cls.name: cls for cls in (AnyNetXA, AnyNetXB, AnyNetXC, AnyNetXD, AnyNetXE, RegNetX, RegNetY)}


def get_space(name, **kwargs) -> DesignSpace:
    """A design space by name ('AnyNetXA'..'AnyNetXE', 'RegNetX', 'RegNetY'; case-insensitive)."""
    lookup = {k.lower(): cls for k, cls in SPACES.items()}
    cls = lookup.get(str(name).lower().replace("-", "").replace("_", ""))
    if cls is None:
        raise ValueError(f"unknown design space {name!r}; choose one of {', '.join(SPACES)}.")
    return cls(**kwargs)
