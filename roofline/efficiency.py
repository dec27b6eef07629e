"""Expected time beside the bound: how close to its roof a kernel gets on a device, as a function of its shape.

The roofline bound is the physics; real kernels reach a fraction of it that depends on the path and the
shape (a 1024x1024 GEMV cannot stream like a 14336x4096 one; a software bf16 path is far from any
roof). This module turns measured fractions into an estimate:

1. **A fitted model** (``EfficiencyModel``): samples of ``efficiency = roof time / measured median``
   from a calibration sweep over shapes (``roofline_kernels.efficiency`` measures it), per (operator class,
   precision): GEMV/GEMM on (M, N, K), attention on (seq_q, seq_kv, batch x heads, heads per KV head, head_dim)
   (``AXES``). A query fits ``log(efficiency)`` as a linear function of the log2 of its axes
   over its nearest samples (weighted by closeness, lightly ridge-regularised so a sparse
   neighbourhood cannot tilt it wildly), i.e. piecewise-linear in log shape: "utilization space"
   interpolation as AIConfigurator does it. A sample at the query's own shape returns itself; the
   result stays within its neighbours' range (no extrapolation past what was measured) and under
   the roof (1.0). A GEMV (decode attention) is fitted from GEMVs (decode) where one lies near it, a
   GEMM (prefill) from GEMMs: different kernels. A path held to the memory roof alone (a software
   kernel's speed is no ceiling) has its own compute roof taken out before interpolating (its best
   measured FLOP rate over its best fraction of the memory roof: past it, efficiency against the memory
   roof falls as 1 / intensity); the neighbours' range is then of what is left, and a query past the
   intensities measured is held compute-bound only where a neighbour is. A GEMM at an M that is no power of two
   carries its own residual off the line in log M through the powers of two around it, where an "M line" (every
   M at one N x K) measured one (``m_residuals``): a library's left-over rows take a kernel of their own. Likewise a
   K that is a multiple of a large power of two carries the residual that pairs of such a K and K + 128 measured near
   it (``align_pairs``, ``_align_out``), where two agree: a row stride of 4096 elements thrashed one int8 kernel.
   A grouped GEMM (MoE experts) is read at one expert's GEMM (``expert_gemm``): its experts' GEMMs one after another.
2. **Priors** (``PRIORS``): published measurements of a device (``hardware.md``), each with its source,
   turned into a fraction of the datasheet roof. Used only without a profile.
3. Otherwise **none**, said so: no number is invented.
"""
from __future__ import annotations

import math
import statistics
from dataclasses import dataclass, field, replace

from .moe import per_expert

SHAPE_KEYS = ("m", "n", "k")
NEIGHBOURS = 12
RIDGE = 0.1           # on the slopes (log efficiency per octave): a neighbourhood on one line cannot tilt the rest
DISTANCE_SOFTENING = 0.5  # octaves: the nearest sample does not take all the weight unless it is the query
MAX_EFFICIENCY = 1.0  # an estimate never promises more than the roof
NEAR_OCTAVES = 1.0    # "measured near": a measured shape within 1 unit on every axis (1 octave of M, 2 of N or K)
REPEATS_KEPT = 5      # per shape, the last runs kept: their spread is this device's run-to-run noise there
LOO_NEIGHBOURS = 4    # the measured shapes nearest a query whose leave-one-out error is its uncertainty
UNKNOWN_SPREAD = 1.0  # the sweep's planning: neighbours' spread (log efficiency) where too few of a kind say it
TARGET_GEOMEAN = 0.10  # what a model should reach on shapes it never saw (issue 21): geomean error
TARGET_WORST = 0.35    # and worst error
COVERAGE_FLOOR = 0.5   # the stated +-: an RMS error, so about 2 in 3 held-out shapes should fall within it; fewer
COVERAGE_MIN_N = 4     # than half of at least this many held-out shapes (each with a +-) says it understates
REPEAT_RUNS = 3        # the most runs a sweep gives one shape (``roofline_kernels.efficiency.recheck``)
ALIGN_CAP = 12         # K's alignment counts up to 4096 elements (``k_level``): 8192 shares 4096's level, so pairs at
#                        either speak for both (int8 on a Zen 4 host ran both at 0.09-0.10 of its roof)
TWIN_STEP = 128        # an aligned K's twin: K + 128 (``twin_k``)
ALIGN_MIN_PAIRS = 2    # an alignment residual is taken into account where this many pairs near agree on it
ALIGN_MIN_LOG = math.log(1.15)  # an alignment residual under 15% is a pair's noise (held-out runs of one shape lay 1-19%
#                                 apart, geomean per path, in scores on a Zen 4 host), not taken into account


# The axes of each operator class, with their weights. A GEMM: an octave of N or K moves its efficiency about half
# as much as an octave of M: its arithmetic intensity grows with M (about M FLOPs a weight byte until M nears N and
# K), which decides memory- or compute-bound and the kernel a library picks; N and K mostly set how long the kernel
# streams. Attention: the query length decides decode (a KV-cache read, memory-bound) or prefill (causal, compute-
# bound) as M does for a GEMM; the KV length, batch x heads (the parallel work), the query heads per KV head (how
# often a KV byte is reused) and the head size set how long and how wide it streams. Distances ("near", weights,
# the sweep's choice) are measured in these units: one unit is an octave of M or seq_q, or two of any other axis.
AXES = {"gemm": {"m": 1.0, "n": 0.5, "k": 0.5},
        "attention": {"seq_q": 1.0, "seq_kv": 0.5, "batch_heads": 0.5, "group": 0.5, "head_dim": 0.5}}
AXIS_WEIGHT = AXES["gemm"]
UNITS = {"gemm": "an octave of M, two of N or K",
         "attention": "an octave of seq_q, two of seq_kv, batch x heads, heads per KV head or head_dim"}


def op_class(op: str) -> str | None:
    """GEMV is a GEMM with M = 1: one class, so a sweep's GEMMs inform its GEMVs and back."""
    return "gemm" if op in ("gemv", "gemm") else op if op in AXES else None


def model_shape(op: str, shape: dict) -> dict:
    """A cost's shape on the model's axes: (M, N, K) for a GEMM or GEMV (M = 1 when absent); for attention
    (seq_q, seq_kv, batch x heads, heads per KV head, head_dim). A shape already on the axes is returned as is."""
    cls = op_class(op)
    if cls is None:
        raise ValueError(f"operator {op!r} has no efficiency model; modelled: gemm, gemv, attention")
    try:
        if cls == "attention" and "batch_heads" not in shape:
            heads = int(shape["heads"])
            shape = {"seq_q": shape["seq_q"], "seq_kv": shape["seq_kv"], "batch_heads": int(shape["batch"]) * heads,
                     "group": heads // int(shape["kv_heads"]), "head_dim": shape["head_dim"]}
        out = {k: int(shape.get(k, 1) if cls == "gemm" else shape[k]) for k in AXES[cls]}
    except (KeyError, TypeError, ValueError) as e:
        raise ValueError(f"{op} shape {shape!r} lacks or mangles {e}; a {cls} takes {', '.join(AXES[cls])}") from None
    if min(out.values()) < 1:
        raise ValueError(f"{op} shape {shape!r}: every dimension must be >= 1")
    return out


def unlike_swept(op: str, shape: dict) -> tuple[str, str] | None:
    """(reason, note): why a shape is a different kernel from any the sweep measures, though it lies on the same axes:
    attention over a sliding window (fewer pairs than the causal SDPA the sweep times) or a non-causal prefill."""
    if op_class(op) != "attention":
        return None
    window, seq_q, seq_kv = shape.get("window"), int(shape.get("seq_q", 1)), int(shape.get("seq_kv", 1))
    if window is not None and int(window) < seq_kv:
        reason = f"attention over a sliding window of {window}"
        return reason, (f"{reason} (of {seq_kv}): the model was measured on full causal SDPA, a different kernel; the "
                        "bound alone")
    if seq_q > 1 and shape.get("causal") is False:
        reason = "non-causal prefill attention"
        return reason, f"{reason}: the model was measured on causal SDPA; the bound alone"
    return None


def _class_of(shape: dict) -> str:
    return "attention" if "seq_q" in shape else "gemm"


def _features(shape: dict) -> tuple[float, ...]:
    axes = AXES[_class_of(shape)]
    return tuple(w * math.log2(max(1, int(shape.get(k, 1)))) for k, w in axes.items())


def _intensity(precision: str, shape: dict) -> float | None:
    """log2 of a model shape's arithmetic intensity (FLOPs per compulsory byte: ``roofline.operators``' formulas at
    the path's formats, ``int4_tinygemm/bf16`` read as weight / activation, int8 W8A8 with the int32 output its
    kernels return, as ``roofline_kernels.ops`` prices it); None where the label names formats roofline does not know
    or the shape is no attention roofline can price (a memory-roof path is then fitted as measured, see
    ``_own_compute_roof``)."""
    from .operators import attention, gemm
    w, _, a = precision.partition("/")
    fmt = {"weight": w, "act": a} if a else {"precision": w}
    if not a and w == "int8":
        fmt["out"] = "int32"  # torch._int_mm accumulates and returns int32 (CPU and CUDA alike)
    try:
        if _class_of(shape) == "attention":
            bh, group = int(shape["batch_heads"]), int(shape["group"])
            if bh % group:
                return None
            cost = attention(1, bh, bh // group, shape["seq_q"], shape["seq_kv"], shape["head_dim"],
                             causal=int(shape["seq_q"]) > 1, **fmt)
        else:
            cost = gemm(int(shape.get("m", 1)), int(shape["n"]), int(shape["k"]), **fmt)
    except (KeyError, TypeError, ValueError):
        return None
    return math.log2(cost.flops / cost.bytes) if cost.bytes > 0 and cost.flops > 0 else None


def _shape_key(shape: dict) -> tuple[int, ...]:
    return tuple(int(shape.get(k, 1)) for k in AXES[_class_of(shape)])


def _fmt_scored(op: str, shape: dict) -> str:
    """A scored shape in words: a grouped GEMM as its experts (``2 x 1x1408x2176``), else as the model reads it."""
    if op == "grouped_gemm":
        return expert_gemm(shape)[2]
    return _fmt_shape(model_shape(op, shape))


def _fmt_shape(shape: dict) -> str:
    if _class_of(shape) == "attention":
        return (f"seq_q {shape['seq_q']} x seq_kv {shape['seq_kv']}, batch x heads {shape['batch_heads']}, "
                f"{shape['group']} heads per KV head, head_dim {shape['head_dim']}")
    return "x".join(str(int(shape.get(k, 1))) for k in SHAPE_KEYS)


def octaves_apart(a: dict, b: dict) -> float:
    """The largest distance along one axis, in units of ``AXES`` (octaves of M or seq_q): what "near" is measured in."""
    return max(abs(x - y) for x, y in zip(_features(a), _features(b)))


def model_key(op: str, precision: str) -> str:
    """One key per (operator class, precision): ``gemm:bf16`` holds GEMVs and GEMMs, ``attention:bf16`` SDPA."""
    return f"{op_class(op) or op}:{precision}"


@dataclass(frozen=True)
class Expected:
    efficiency: float | None
    source: str        # "profile", "prior" or "none"
    note: str
    roof: str = "full"  # "memory": the efficiency is of the memory roof alone (a path whose peak is no ceiling)
    uncertainty: float | None = None  # relative (0.08: +-8%), from the model's error near the shape and the runs' noise
    reason: str = ""   # where there is no number, why in a few words: what a composite lists its bare kernels under

    def time_s(self, bound_time_s: float) -> float | None:
        return bound_time_s / self.efficiency if self.efficiency else None

    def roof_time_s(self, prediction) -> float:
        return prediction.t_memory_s if self.roof == "memory" else prediction.time_s

    def to_dict(self, prediction) -> dict:
        return {"expected_time_s": self.time_s(self.roof_time_s(prediction)), "expected_efficiency": self.efficiency,
                "expected_source": self.source, "expected_note": self.note, "expected_against": self.roof,
                "expected_uncertainty": self.uncertainty}


NONE = Expected(None, "none", "no efficiency model for this device and path: the bound alone",
                reason="no efficiency model for this device and path")


def _local_linear(q, rows) -> float:
    """Weighted ridge fit of y = a + b.(x - q) over ``rows`` (x, y, distance); returns a, the value at q."""
    import numpy as np
    x = np.array([r[0] for r in rows], dtype=float) - np.array(q, dtype=float)
    y = np.array([r[1] for r in rows], dtype=float)
    w = 1.0 / (np.array([r[2] for r in rows], dtype=float) + DISTANCE_SOFTENING) ** 2
    a = np.hstack([np.ones((len(rows), 1)), x])
    reg = RIDGE * np.eye(a.shape[1])
    reg[0, 0] = 0.0
    coef = np.linalg.solve(a.T @ (a * w[:, None]) + reg, a.T @ (w * y))
    return float(coef[0])


@dataclass(frozen=True)
class Point:
    """One measured shape: its runs' efficiencies (newest last), their median and their run-to-run spread."""
    shape: dict
    efficiencies: tuple[float, ...]
    intensity: float | None = None  # ``_intensity`` at the path's formats

    @property
    def features(self) -> tuple[float, ...]:
        return _features(self.shape)

    @property
    def log_eff(self) -> float:
        logs = sorted(math.log(e) for e in self.efficiencies)
        mid = len(logs) // 2
        return logs[mid] if len(logs) % 2 else (logs[mid - 1] + logs[mid]) / 2

    def shifted(self, log_r: float) -> "Point":
        """The same shape with every run's efficiency scaled by exp(``log_r``) (its noise unchanged)."""
        if not log_r:
            return self
        return Point(self.shape, tuple(e * math.exp(log_r) for e in self.efficiencies), self.intensity)

    @property
    def noise(self) -> float | None:
        """Run-to-run spread (a sigma of log efficiency) from the runs at this shape; None from one run."""
        if len(self.efficiencies) < 2:
            return None
        logs = [math.log(e) for e in self.efficiencies]
        mean = sum(logs) / len(logs)
        return math.sqrt(sum((x - mean) ** 2 for x in logs) / (len(logs) - 1))


def m_residuals(pts: list[Point]) -> dict[int, float]:
    """Per M that is no power of two: how far (log efficiency) a GEMM at that M lies off the line in log M through
    the powers of two that bracket it, at the same N x K (an "M line", ``roofline_kernels.efficiency`` sweeps one),
    the median over every N x K that has all three measured. A library runs its rows in blocks, so the rows left over
    take a kernel of their own: on one host fp32 at M = 3 ran 19-34% and M = 7 14-18% slower than the line through
    M = 2, 4 and 4, 8 says, int4 weight-only at M = 5 40% slower and at M = 3 10% faster, at each of five N x K
    (1024 x 1024 to 4096 x 4096, and N, K not powers of two); software bf16 and int8 lay on the line. No
    interpolation in log M, N and K can follow that; a residual measured at one N x K carries to the others."""
    lines: dict[tuple[int, int], dict[int, float]] = {}
    for p in pts:
        if _class_of(p.shape) == "gemm":
            lines.setdefault((int(p.shape["n"]), int(p.shape["k"])), {})[int(p.shape["m"])] = p.log_eff
    found: dict[int, list[float]] = {}
    for line in lines.values():
        for m, y in line.items():
            lo = 1 << (m.bit_length() - 1)
            if m <= 2 or m == lo or lo not in line or 2 * lo not in line:
                continue
            f = math.log2(m / lo)
            found.setdefault(m, []).append(y - ((1 - f) * line[lo] + f * line[2 * lo]))
    return {m: statistics.median(r) for m, r in found.items()}


def _residuals_out(pts: list[Point]) -> tuple[list[Point], dict[int, float]]:
    """(``pts`` with each M's own residual taken out, the residuals): what the fit, the rechecks and the sweep's
    planning all see, so a left-over-rows kernel the M line measured is neither interpolated through nor sampled
    as disagreement. A query's residual is then put back (``expected``)."""
    res = m_residuals(pts)
    if not res:
        return pts, res
    return [p.shifted(-res.get(int(p.shape["m"]), 0.0)) if _class_of(p.shape) == "gemm" else p for p in pts], res


def k_level(k: int) -> int:
    """How aligned a GEMM's K (the row length of both operands, its stride in elements) is: the exponent of the
    largest power of two dividing it, capped at ``ALIGN_CAP``. A row stride that is a multiple of a large power of two
    maps every row to the same few cache sets, and some kernels then thrash where one 128 elements longer streams."""
    k = int(k)
    return min((k & -k).bit_length() - 1, ALIGN_CAP) if k > 0 else 0


def twin_k(k: int) -> int:
    """The K an aligned K (``aligned``) is measured against: ``TWIN_STEP`` more, of level 7 for a K that is a multiple
    of 256 (still a multiple of 128, as int4 weight-only's groups of 128 and CUDA's K % 16 and % 32 rules need); the
    grid's K (1024-8192) lie 0.02-0.17 octaves from their twins."""
    return int(k) + TWIN_STEP


def aligned(k: int) -> bool:
    """Whether K is more aligned than its twin (``twin_k``): a K a pair can be read at."""
    return k_level(k) > k_level(twin_k(k))


def twins(a, b) -> bool:
    """Whether two GEMM shapes (dicts on the model's axes, or (M, N, K) tuples) are a pair: the same M and N, one's K
    the other's twin (``twin_k``) and more aligned. Neither witnesses the other's run: the sweep times them seconds
    apart, in the same slow spell if one."""
    if isinstance(a, dict) or isinstance(b, dict):
        if _class_of(a) != "gemm" or _class_of(b) != "gemm":
            return False
        a, b = _shape_key(a), _shape_key(b)
    if len(a) != 3 or len(b) != 3 or a[:2] != b[:2]:
        return False
    lo, hi = sorted((int(a[2]), int(b[2])))
    return hi == twin_k(lo) and aligned(lo)


def align_pairs(pts: list[Point]) -> list[tuple[int, Point, float]]:
    """(K's level, the aligned point, its log efficiency minus its twin's) for every measured GEMM shape whose twin
    (same M and N, K = ``twin_k``) was measured too: how much the alignment of K alone costs (or gains) there."""
    by = {_shape_key(p.shape): p for p in pts if _class_of(p.shape) == "gemm"}
    out = []
    for (m, n, k), p in by.items():
        t = by.get((m, n, twin_k(k)))
        if t is not None and aligned(k):
            # as many runs of each, oldest first: a sweep measures the twin right after its shape's first run, and the
            # shape may run again minutes later (its drift re-run), when the host is faster or slower (one such pair
            # here read K = 1024 39% faster than K = 1152 at M = 1 from the medians, 3% from the first runs); but a
            # shape run ``REPEAT_RUNS`` times by its median, the model's own verdict on runs that disagreed (a first
            # run 2.2x slow, outvoted by two more, had read fp32's alignment as 85%)
            n_runs = min(len(p.efficiencies), len(t.efficiencies))

            def value(x: Point) -> float:
                judged = len(x.efficiencies) >= REPEAT_RUNS
                return x.log_eff if judged else Point(x.shape, x.efficiencies[:n_runs]).log_eff
            out.append((k_level(k), p, value(p) - value(t)))
    return out


def _align_out(pts: list[Point]):
    """(``pts`` with their K's alignment residual taken out, the residual at a shape): an interpolation in log M, N
    and K cannot see whether K is a multiple of 4096, and on one host (AMD Zen 4, torch 2.13's int8 ``_int_mm``) a GEMM
    at M = 8 ran K = 4096 2.7x slower per FLOP than K = 4352, at M = 64 1.6x, none at M = 1 or in any other path;
    a grid of such K then bent every other K's expected time 30-54% slow. The residual at a shape: the pairs
    (``align_pairs``) of its K's level and its kind (GEMV or GEMM) within ``NEAR_OCTAVES``, the nearest
    ``LOO_NEIGHBOURS``, weighted by closeness, where there are at least ``ALIGN_MIN_PAIRS`` and every one lies past
    ``ALIGN_MIN_LOG`` the same way; else 0. One pair is two runs: on a shared host one read K = 1024 59% slower than
    K = 1152 where the pairs around it lay within 15%, and the effect is local (int8 above: none from M = 256 on)."""
    pairs = align_pairs(pts)
    if sum(abs(r) > ALIGN_MIN_LOG for _, _, r in pairs) < ALIGN_MIN_PAIRS:  # no shape can have enough: skip the work
        none = lambda shape: 0.0  # noqa: E731
        none.spread = none
        return pts, none

    def used(shape: dict) -> list[tuple[float, float]]:
        """(weight, residual) of the pairs the residual at ``shape`` is read from; none where it is 0."""
        if _class_of(shape) != "gemm" or int(shape.get("k", 1)) <= 0:
            return []
        lvl, f = k_level(shape["k"]), _features(shape)
        own = sorted((math.dist(f, p.features), r) for lv, p, r in pairs
                     if lv == lvl and _decode(p.features) == _decode(f)
                     and octaves_apart(p.shape, shape) <= NEAR_OCTAVES + 1e-9)[:LOO_NEIGHBOURS]
        if len(own) < ALIGN_MIN_PAIRS or not (all(r > ALIGN_MIN_LOG for _, r in own)
                                              or all(r < -ALIGN_MIN_LOG for _, r in own)):
            return []
        return [(1.0 / (d + DISTANCE_SOFTENING) ** 2, r) for d, r in own]

    def rho(shape: dict) -> float:
        w = used(shape)
        return sum(wi * ri for wi, ri in w) / sum(wi for wi, _ in w) if w else 0.0

    def spread(shape: dict) -> float:
        """How far (log, weighted RMS) the pairs the residual is read from lie from it: what the residual itself may
        be off by at ``shape`` (0 where there is none). Two pairs near one shape read int8's K = 4096 on a Zen 4
        host 2.0x and 3.4x slower than K + 128: a residual taken into account carries that into the +-."""
        w, r0 = used(shape), rho(shape)
        return math.sqrt(sum(wi * (ri - r0) ** 2 for wi, ri in w) / sum(wi for wi, _ in w)) if w else 0.0
    rho.spread = spread
    return [p.shifted(-rho(p.shape)) for p in pts], rho


def _off_line(m: int, residuals: dict[int, float]) -> bool:
    """An M that may carry a residual of its own the M lines did not measure: no power of two, below an octave past
    the largest M they measured one for (left-over rows weigh less as M grows; fp32 here still ran 12% off at M = 24)."""
    return (bool(residuals) and m & (m - 1) != 0 and m not in residuals
            and m < 2 << max(residuals).bit_length())


def _decode(features: tuple[float, ...]) -> bool:
    """M = 1 (a GEMV) or seq_q = 1 (decode attention): the first axis of either class, at log2(1) = 0."""
    return features[0] < 1e-9


def _near_noise(q, pts: list[Point]) -> tuple[float, list[Point]]:
    """(the run-to-run noise near features ``q``, the repeated shapes it is read from): of the ``LOO_NEIGHBOURS``
    measured shapes nearest ``q``, those run more than once, and the median of their spreads (the upper one of an
    even count); (0.0, []) where none was. The expected time's +- and a young history's regression band both read it."""
    near = sorted(pts, key=lambda p: math.dist(q, p.features))[:LOO_NEIGHBOURS]
    repeated = [p for p in near if p.noise is not None]
    noise = sorted(p.noise for p in repeated)
    return (noise[len(noise) // 2] if noise else 0.0), repeated


def _same_kind(pts: list[Point], shape: dict) -> list[Point]:
    """The measured shapes a query is fitted from: a GEMV from GEMVs and decode attention from decode (a library runs
    another kernel for one row than for several: one sweep here streamed its M = 1 shapes at 45-50% of the roof and
    its M = 2 ones at 25%, and a line through both bends each toward the other), the rest from the rest, where one
    of its own kind lies within ``NEAR_OCTAVES`` of it; else all (what is near decides, as it always did)."""
    q = _features(shape)
    kind = [p for p in pts if _decode(p.features) == _decode(q)]
    if kind and min(octaves_apart(p.shape, shape) for p in kind) <= NEAR_OCTAVES + 1e-9:
        return kind
    return pts


def _own_compute_roof(pts: list[Point], memory_roof: bool):
    """For a path held to the memory roof alone (its compute peak a software kernel's speed, no ceiling): a function
    of a shape's ``intensity`` (log2 FLOPs per byte) giving how far (log) its memory-roof efficiency falls short
    because it is compute-bound, against a compute roof the path's own measured shapes ``pts`` show; zero for
    other paths and where an intensity is unknown. Against the memory roof a compute-bound kernel's efficiency falls
    as 1 / intensity, which no line in log M, N and K follows across a neighbourhood (software bf16 here: GEMMs of
    M 700-2000 were predicted 20-36% fast from neighbours at other N x K); with this roof taken out, what is left to
    interpolate is flat where the path is compute-bound. The roof is the best FLOP rate measured over the best
    fraction of the memory roof measured: a path that streams at 80% and computes at R bends where bytes / (0.8 x
    bandwidth) = FLOPs / R; a path measured only memory-bound bends past its highest intensity, not inside it."""
    if not memory_roof or not pts or any(p.intensity is None for p in pts):
        return lambda intensity: 0.0
    best_rate = max(p.log_eff + p.intensity * math.log(2) for p in pts)  # log(best FLOPs/s over the bandwidth)
    ridge = best_rate - min(0.0, max(p.log_eff for p in pts))

    def shortfall(intensity):
        return 0.0 if intensity is None else max(0.0, intensity * math.log(2) - ridge)
    return shortfall


def _interpolate(q: tuple[float, ...], pts: list[Point], intensity: float | None = None,
                 memory_roof: bool = False) -> float:
    """log efficiency at features ``q`` (``_intensity`` ``intensity``) from ``pts`` (non-empty; the caller picks
    them, ``_same_kind``): local-linear over the nearest, within their range. A memory-roof path is interpolated with
    its own compute roof taken out (``_own_compute_roof``, of the kernels it is fitted from: a decode kernel's best
    FLOP rate is not a prefill kernel's), so the range is of what is left; a query whose intensity is unknown is
    fitted on the efficiencies as measured. A query past the neighbours' intensities is held compute-bound only
    where some neighbour is."""
    dist = sorted(((math.dist(q, p.features), p) for p in pts), key=lambda t: t[0])[:NEIGHBOURS]
    if dist[0][0] < 1e-9:
        return dist[0][1].log_eff
    shortfall = _own_compute_roof(pts, memory_roof) if intensity is not None else (lambda i: 0.0)
    short = [shortfall(p.intensity) for _, p in dist]
    ys = [p.log_eff + s for (_, p), s in zip(dist, short)]
    # beyond the sampled region a slope would extrapolate without limit: stay within the neighbours
    y = min(max(_local_linear(q, [(p.features, y, d) for (d, p), y in zip(dist, ys)]), min(ys)), max(ys))
    return y - (shortfall(intensity) if max(short) > 0 else 0.0)


@dataclass
class EfficiencyModel:
    """Measured efficiencies per (op class, precision): ``samples[key] = [(shape, efficiency), ...]`` (a shape
    measured in several runs appears once per run, the last ``REPEATS_KEPT`` kept)."""
    samples: dict[str, list[tuple[dict, float]]] = field(default_factory=dict)
    meta: dict = field(default_factory=dict)  # the sweep it came from: when, budget, calibration, skipped
    roofs: dict[str, str] = field(default_factory=dict)  # key -> "full" or "memory": the roof efficiency is of

    def add(self, op: str, precision: str, shape: dict, efficiency: float, roof: str = "full") -> None:
        if not (efficiency > 0 and math.isfinite(efficiency)):
            raise ValueError(f"efficiency {efficiency!r} of {op} {precision} {shape} must be a positive number")
        if roof not in ("full", "memory"):
            raise ValueError(f"roof {roof!r}: 'full' (the roofline) or 'memory' (bytes / bandwidth alone)")
        shape = model_shape(op, shape)  # a shape refused here leaves nothing behind
        key = model_key(op, precision)
        if self.roofs.setdefault(key, roof) != roof:
            raise ValueError(f"{key}: samples against both the {self.roofs[key]} and the {roof} roof")
        rows = self.samples.setdefault(key, [])
        rows.append((shape, float(efficiency)))
        same = [i for i, (s, _) in enumerate(rows) if s == shape]
        for i in reversed(same[:-REPEATS_KEPT]):  # the oldest runs of this shape beyond the ones kept
            del rows[i]

    def rescale(self, factor) -> None:
        """Every sample's efficiency times ``factor(key, shape)``: the model held to other roofs (a roof raised
        where a sweep ran faster than it, ``roofline_kernels.efficiency.raise_roofs``)."""
        self.samples = {key: [(s, e * factor(key, s)) for s, e in rows] for key, rows in self.samples.items()}

    def _memory_roof(self, op: str, precision: str) -> bool:
        return self.roofs.get(model_key(op, precision)) == "memory"

    def covers(self, op: str, precision: str) -> bool:
        return bool(self.samples.get(model_key(op, precision)))

    def points(self, op: str, precision: str, exclude: dict | None = None) -> list[Point]:
        """The measured shapes of a path, each with its runs (``exclude``: one shape left out, and its twin at K + 128
        with it: a shape's twin predicts it across K's alignment alone, and left in, a full sweep's leave-one-out
        error read 1.6% where without the twins it read 106%)."""
        runs: dict[tuple, list] = {}
        left = model_shape(op, exclude) if exclude is not None else None
        skip = _shape_key(left) if left is not None else None
        for s, e in self.samples.get(model_key(op, precision), []):
            if _shape_key(s) != skip and not (left is not None and twins(s, left)):
                runs.setdefault(_shape_key(s), [s, []])[1].append(e)
        return [Point(s, tuple(es), _intensity(precision, s)) for s, es in runs.values()]

    def nearest(self, op: str, precision: str, shape: dict) -> tuple[Point, float] | None:
        pts = self.points(op, precision)
        if not pts:
            return None
        shape = model_shape(op, shape)
        q = _features(shape)
        p = min(pts, key=lambda p: (octaves_apart(p.shape, shape), math.dist(q, p.features)))
        return p, octaves_apart(p.shape, shape)

    def expected(self, op: str, precision: str, shape: dict, exclude: dict | None = None) -> Expected:
        """The interpolated efficiency at ``shape``, with its uncertainty; no number where nothing was measured
        within ``NEAR_OCTAVES`` of it on every axis. ``exclude`` leaves one shape out (for scoring). A grouped GEMM
        is read at one expert's GEMM (``expert_gemm``)."""
        if op == "grouped_gemm":
            one_op, one, each = expert_gemm(shape)
            return _as_grouped(self.expected(one_op, precision, one, exclude), each)
        pts = self.points(op, precision, exclude)
        if not pts:
            return NONE
        unlike = unlike_swept(op, shape)
        if unlike:
            return Expected(None, "none", unlike[1], reason=unlike[0])
        shape = model_shape(op, shape)
        q = _features(shape)
        near = min(pts, key=lambda p: (octaves_apart(p.shape, shape), math.dist(q, p.features)))
        away = octaves_apart(near.shape, shape)
        if away > NEAR_OCTAVES + 1e-9:
            return Expected(None, "none", f"not measured near this shape (nearest: {_fmt_shape(near.shape)}, "
                                          f"{away:.2g} units away on one axis; within {NEAR_OCTAVES:g} counts: {UNITS[_class_of(shape)]})",
                            reason="not measured near this shape")
        own = [p for p in pts if _decode(p.features) == _decode(q)]
        mine = min(own, key=lambda p: (octaves_apart(p.shape, shape), math.dist(q, p.features))) if own else None
        if mine is None or octaves_apart(mine.shape, shape) > NEAR_OCTAVES + 1e-9:
            # near only shapes of the other kind (a GEMM near GEMVs, a prefill near decodes): a library runs another
            # kernel there (M = 1 at 45-50% of the roof, M = 2 at 25%), so they say nothing of this one
            kinds = ("GEMVs (M = 1)", "GEMMs") if _class_of(shape) == "gemm" else ("decodes", "prefills")
            theirs, its = kinds if _decode(near.features) else kinds[::-1]
            return Expected(None, "none", f"not measured near this shape (nearest: {_fmt_shape(near.shape)}, one of "
                                          f"the {theirs}, another kernel than its {its}"
                                          + (f"; nearest of its own kind: {_fmt_shape(mine.shape)})" if mine else ")"),
                            reason="not measured near this shape")
        memory_roof = self._memory_roof(op, precision)
        # an M's own residual (``m_residuals``) is taken out of every shape at that M, the rest interpolated, and
        # the query's put back
        pts, res = _residuals_out(pts)
        pts, align = _align_out(pts)  # and K's alignment residual, likewise
        a_q = align(shape)
        m_q = int(shape["m"]) if res else 0
        off_line = (math.sqrt(sum(r * r for r in res.values()) / len(res))
                    if _off_line(m_q, res) else 0.0)
        kind = _same_kind(pts, shape)  # what it is fitted from; the nearest named is among them
        near = min(kind, key=lambda p: (octaves_apart(p.shape, shape), math.dist(q, p.features)))
        away = octaves_apart(near.shape, shape)
        eff = min(math.exp(_interpolate(q, kind, _intensity(precision, shape), memory_roof) + res.get(m_q, 0.0)
                           + a_q), MAX_EFFICIENCY)
        a_spread = align.spread(shape) if a_q else 0.0
        unc, why = self._uncertainty(q, kind, memory_roof, self.drift(op, precision), off_line, a_spread)
        if m_q in res:
            slower = math.exp(-res[m_q]) - 1
            why += (f"; M = {m_q} runs {abs(slower):.0%} {'slower' if slower > 0 else 'faster'} than the line in log M "
                    "through the powers of two around it (measured on an M line; taken into account)")
        elif off_line:
            why += (f"; M = {m_q} was not on an M line here, whose other M ran +-{math.exp(off_line) - 1:.0%} "
                    "(RMS) off the line through the powers of two: that joins the +-")
        if a_q:
            slower = math.exp(-a_q) - 1
            why += (f"; K = {shape['k']} (a multiple of {1 << k_level(shape['k'])}) runs {abs(slower):.0%} "
                    f"{'slower' if slower > 0 else 'faster'} than K + {TWIN_STEP} near here (measured in pairs; taken "
                    f"into account; the pairs lie +-{math.exp(a_spread) - 1:.0%} apart about it)")
        note = (f"fitted on {len(kind)} measured shapes of this device; nearest {_fmt_shape(near.shape)} "
                f"({away:.2g} units away); {why}")
        if self.meta.get("calibration"):
            note += f"; against calibration {self.meta['calibration']}"
        return Expected(eff, "profile", note, self.roofs.get(model_key(op, precision), "full"), unc)

    def run_to_run(self, op: str, precision: str, shape: dict) -> tuple[float, str] | None:
        """How far two runs of a shape near ``shape`` lie apart on this device: the run-to-run noise the expected
        time's +- carries there (``_near_noise``: the median spread of the repeated shapes among the
        ``LOO_NEIGHBOURS`` of its own kind nearest it, the shape's own runs among them where the model holds them: the
        sweep's re-runs, and the last ``REPEATS_KEPT`` accepted runs that a suite or ``measure`` added), as a
        relative sigma. None where none of them was run twice. A young history's regression band is never narrower
        than this (``roofline.regress``): one run is no witness of how far the next may lie, the device's runs here are
        (a 2-core Zen 5 VM ran one int8 GEMV at 0.57, 0.33 and 0.58 ms in three healthy suite runs)."""
        if op == "grouped_gemm":
            one_op, one, _ = expert_gemm(shape)
            return self.run_to_run(one_op, precision, one)
        if op_class(op) is None:
            return None
        shape = model_shape(op, shape)
        pts = self.points(op, precision)
        if not pts:
            return None
        noise, near = _near_noise(_features(shape), _same_kind(pts, shape))
        if not near:
            return None
        sigma = math.exp(noise) - 1
        own = next((p for p in near if _shape_key(p.shape) == _shape_key(shape)), None)
        return sigma, (f"{sigma:.1%} sigma, the run-to-run noise of the {len(near)} repeated shape(s) nearest it in "
                       "this device's efficiency model" + (f", this shape's own {len(own.efficiencies)} runs among "
                                                           "them" if own else ""))

    def drift(self, op: str, precision: str) -> float:
        """How far (log) this device's speed moves between a run and a later one: the spread of the sweep's first
        shapes measured again at its end (``meta["drift"]["sigma"]``, pooled over the paths: the host's, not one
        path's); 0 where not measured. ``op`` and ``precision`` name the path asked about."""
        d = self.meta.get("drift") or {}
        return float(d.get("sigma", 0.0)) if d.get("n") else 0.0

    @staticmethod
    def _uncertainty(q, pts: list[Point], memory_roof: bool = False, drift: float = 0.0,
                     off_line: float = 0.0, align: float = 0.0) -> tuple[float | None, str]:
        """How far off the estimate may be: the leave-one-out error of the measured shapes nearest ``q`` (how well
        the model predicts a shape from its neighbours here) combined with the run-to-run noise seen near ``q``, the
        path's ``drift`` (how far the host's speed moved while it was swept: a later run may find it moved as far)
        and ``off_line`` (an M whose own residual no M line measured: the RMS of the residuals that were) and ``align``
        (K's alignment residual taken into account: how far the pairs it is read from lie apart about it)."""
        noise_s, repeated = _near_noise(q, pts)
        near = sorted(pts, key=lambda p: math.dist(q, p.features))[:LOO_NEIGHBOURS]
        loo = []
        for p in near:
            rest = [r for r in pts if r is not p and not twins(r.shape, p.shape)]  # as ``points(exclude=...)`` does
            if rest and min(octaves_apart(r.shape, p.shape) for r in rest) <= NEAR_OCTAVES + 1e-9:
                loo.append((_interpolate(p.features, rest, p.intensity, memory_roof) - p.log_eff) ** 2)
        if not loo:  # the run-to-run noise alone would read as the model's error: a 16% move off the one shape
            # near, stated +-1%
            seen = f"; its runs alone lie +-{math.exp(noise_s) - 1:.0%} apart" if repeated else ""
            return None, f"uncertainty unknown (no measured shape near it has a neighbour to judge it by{seen})"
        loo_s = math.sqrt(sum(loo) / len(loo)) if loo else 0.0
        unc = math.exp(math.sqrt(loo_s ** 2 + noise_s ** 2 + drift ** 2 + off_line ** 2 + align ** 2)) - 1
        parts = [f"leave-one-out {math.exp(loo_s) - 1:.0%}",
                 f"run-to-run {math.exp(noise_s) - 1:.0%} ({len(repeated)} repeated shapes)" if repeated else
                 "run-to-run noise not yet seen here (one run per shape)"]
        if drift:
            parts.append(f"the host's speed moved +-{math.exp(drift) - 1:.0%} while the sweep ran")
        if align:
            parts.append(f"K's alignment pairs +-{math.exp(align) - 1:.0%}")
        return unc, f"+-{unc:.0%} ({', '.join(parts)})"

    def disagreement(self, op: str, precision: str, shape: dict) -> float:
        """How far a measured shape's runs lie from what its neighbours predict there without it (|log| of the
        ratio): large for a run a busy moment slowed, and for a real change of kernel the neighbours do not show;
        0 where the shape is unmeasured or has no measured neighbour near."""
        shape = model_shape(op, shape)
        pts = self.points(op, precision)
        own = [p for p in pts if _shape_key(p.shape) == _shape_key(shape)]
        # its twin left out too (``twins``): timed seconds apart, no witness of a slow spell; and with one of the two
        # left out the pair is gone, so the other would judge it raw across K's alignment (a twin of a K run 2.5x
        # slower read 0.72 off its shape, every twin then running twice)
        rest = [p for p in pts if _shape_key(p.shape) != _shape_key(shape) and not twins(p.shape, shape)]
        if not own or not rest or min(octaves_apart(r.shape, shape) for r in rest) > NEAR_OCTAVES + 1e-9:
            return 0.0
        # an M's residual measured on an M line elsewhere explains that much of its distance (its own line's
        # residual is itself, so it is judged raw)
        rest, res = _residuals_out(rest)
        r_own = res.get(int(shape["m"]), 0.0) if res else 0.0
        rest, align = _align_out(rest)
        r_own += align(shape)
        rest = _same_kind(rest, shape)
        fit = _interpolate(own[0].features, rest, own[0].intensity, self._memory_roof(op, precision))
        return abs(fit + r_own - own[0].log_eff)

    def uncertainty_of(self, op: str, precision: str, shape: dict) -> float:
        """How unsure the model is at a shape it may measure next (see ``uncertainties``)."""
        return self.uncertainties(op, precision, [shape])[0]

    def uncertainties(self, op: str, precision: str, shapes: list[dict]) -> list[float]:
        """For each shape: the distance to the nearest measured shape (octaves) times the neighbours'
        disagreement there (the spread of their log efficiency, as ``_interpolate`` sees it, plus a floor so distance
        alone still counts; at least ``UNKNOWN_SPREAD`` while the shape's kind has fewer measured shapes than a plane
        over its axes needs); 0 at a measured shape, infinite with nothing measured. A sweep measures where this is
        largest first."""
        import numpy as np
        pts, _ = _residuals_out(self.points(op, precision))  # as the fit sees them
        pts, _ = _align_out(pts)
        if not pts:
            return [math.inf] * len(shapes)
        f = np.array([p.features for p in pts])
        q = np.array([_features(model_shape(op, s)) for s in shapes]).reshape(-1, f.shape[1])
        d = np.sqrt(((q[:, None, :] - f[None, :, :]) ** 2).sum(axis=2))
        apart = np.abs(q[:, None, :] - f[None, :, :]).max(axis=2)  # octaves_apart, every pair
        # as ``expected`` fits them: each candidate from its own kind where one lies near it, each with its own roof
        decode = np.array([_decode(p.features) for p in pts])
        same = decode[None, :] == np.array([_decode(row) for row in q])[:, None]
        use_kind = (same & (apart <= NEAR_OCTAVES + 1e-9)).any(axis=1)
        memory_roof = self._memory_roof(op, precision)
        y_all = np.array([p.log_eff for p in pts])
        y_kind = y_all.copy()
        if memory_roof:
            every = _own_compute_roof(pts, True)
            y_all += [every(p.intensity) for p in pts]
            for k in (True, False):
                idx = [i for i, p in enumerate(pts) if decode[i] == k]
                own = _own_compute_roof([pts[i] for i in idx], True)
                for i in idx:
                    y_kind[i] += own(pts[i].intensity)
        d = np.where(use_kind[:, None] & ~same, np.inf, d)
        order = np.argsort(d, axis=1)[:, :LOO_NEIGHBOURS]
        near_y = np.where(use_kind[:, None], y_kind[order], y_all[order])
        near_d = np.take_along_axis(d, order, axis=1)
        near_y = np.where(np.isfinite(near_d), near_y, np.nan)
        spread = np.nanmax(near_y, axis=1) - np.nanmin(near_y, axis=1)
        # a kind (GEMV or GEMM; decode or prefill) with fewer points than a plane over its axes needs is not known to
        # be flat, though its few points agree: two causal prefills that the own-roof transform makes equal showed a
        # spread of 0, and a sweep then spent an attention path's whole share on decode (held-out prefill 21-62% off)
        kind_size = {k: int((decode == k).sum()) for k in (True, False)}
        few = np.array([kind_size[_decode(row)] < f.shape[1] + 1 for row in q])
        spread = np.where(few, np.maximum(spread, UNKNOWN_SPREAD), spread)
        nearest = near_d[:, 0]
        return [0.0 if dn < 1e-9 else float(dn * (sp + 0.05)) for dn, sp in zip(nearest, spread)]

    def to_dict(self) -> dict:
        return {"meta": dict(self.meta), "roofs": dict(self.roofs),
                "samples": {k: [[s, e] for s, e in v] for k, v in self.samples.items()}}

    @classmethod
    def from_dict(cls, d: dict) -> "EfficiencyModel":
        try:
            model = cls(meta=dict(d.get("meta", {})))
            roofs = d.get("roofs", {})
            for key, rows in d["samples"].items():
                op, _, prec = key.partition(":")
                for shape, eff in rows:
                    model.add(op, prec, shape, eff, roofs.get(key, "full"))
            return model
        except (KeyError, TypeError, ValueError, AttributeError) as e:
            raise ValueError(f"malformed efficiency model ({e!r}); expected {{'samples': {{'gemm:bf16': "
                             "[[{'m':..,'n':..,'k':..}, efficiency], ...]}}}}") from None


def model_of(cal) -> EfficiencyModel | None:
    """A calibration profile's model (``details["efficiency"]``), if it was fitted against that very calibration."""
    d = (cal.details or {}).get("efficiency") if cal is not None else None
    if not d or d.get("meta", {}).get("calibration") != cal.timestamp:
        return None
    return EfficiencyModel.from_dict(d)


@dataclass(frozen=True)
class Prior:
    """A published measurement: ``achieved`` (GB/s when memory-bound, TFLOP/s when compute-bound) on a
    device, for these weight formats (or compute classes), on this operator class (``op_class``: a cuBLAS GEMM's
    83% says nothing of a flash-attention kernel's), and where it was published."""
    hardware: str
    bound: str
    formats: tuple[str, ...]
    achieved: float
    source: str
    op_class: str = "gemm"


# hardware.md, "Measured figures others published". Each becomes a fraction of that device's datasheet roof.
PRIORS = (
    Prior("gb10", "memory", ("int8", "int4_tinygemm", "int4_g128", "int4", "nvfp4", "mxfp4", "nf4"), 207.5,
          "lablup/mlxcel PR 684: quantized 4/8-bit decode GEMVs at 201-214 GB/s (74-78% of 273)"),
    Prior("gb10", "compute", ("nvfp4",), 356.0, "NVIDIA developer forum thread 359960: CUTLASS sm121 NVFP4 GEMM "
          "356 TFLOP/s at 4096x14336x4096"),
    Prior("gb10", "compute", ("fp8_e4m3", "fp8_e5m2"), 188.0, "NVIDIA developer forum thread 359960: CUTLASS "
          "sm121 FP8 GEMM 188 TFLOP/s"),
    Prior("h100_pcie", "compute", ("fp16", "bf16"), 627.0, "public H100 ceiling write-up: cuBLAS FP16 GEMM "
          "627 TFLOP/s (83% of 756)"),
    Prior("h100_sxm", "memory", ("fp16", "bf16", "fp8_e4m3", "int8"), 2700.0, "blog, low confidence: "
          "weight-streaming GEMV-like kernels at 2.6-2.8 TB/s (78-84%)"),
)


def prior_for(hw, op: str, bound: str, weight_format: str | None, act_format: str) -> Expected:
    """The published fraction of ``hw``'s datasheet roof for this operator's class, bound and format, if one
    exists. Every figure of ``hardware.md`` is a GEMM's or GEMV's, so attention has none."""
    fmt = weight_format or act_format
    cls = op_class(op)
    for p in PRIORS:
        # memory-bound: the weight stream is what was measured (a quantized GEMV's 4-bit weights, whatever its
        # activations); compute-bound: a native GEMM of both formats (CUTLASS NVFP4 x NVFP4 says nothing of a kernel
        # that dequantizes NVFP4 weights to meet fp16 activations)
        matches = fmt in p.formats if bound == "memory" else fmt in p.formats and act_format in p.formats
        if p.hardware == hw.key and p.op_class == cls and p.bound == bound and matches:
            if bound == "memory":
                roof = hw.bandwidth.value if hw.bandwidth else None
            else:
                from .predict import compute_path
                spec = hw.peaks.get(compute_path(hw, weight_format, act_format).compute_class)
                roof = spec.value if spec else None
            if roof:
                return Expected(min(p.achieved / roof, MAX_EFFICIENCY), "prior",
                                f"{p.achieved:g} {'GB/s' if bound == 'memory' else 'TFLOP/s'} of {roof:g} "
                                f"published: {p.source}")
    return NONE


def expected_efficiency(op: str, precision: str, shape: dict, hw, peaks: str, bound: str, weight_format, act_format,
                        model: EfficiencyModel | None = None, memory_only: bool | None = None,
                        mode: str = "cold") -> Expected:
    """The one rule for what to expect: this device's fitted model where it covers the path, on the calibrated
    roof it was fitted against (``memory_only``, when known, must match the roof kind the model holds), for
    cold runs as it was measured; else a published prior against the datasheet roof; else none."""
    if mode != "cold":
        return NONE
    if op == "grouped_gemm":
        return _grouped_expected(precision, shape, hw, peaks, bound, weight_format, act_format, model, memory_only)
    if model is not None and peaks == "calibrated" and model.covers(op, precision):
        e = model.expected(op, precision, shape)
        # no number ("not measured near ..."): its reason stands, whatever roof the path is held to
        return e if e.efficiency is None or memory_only is None or (e.roof == "memory") == memory_only else NONE
    if peaks == "datasheet" and not memory_only:
        return prior_for(hw, op, bound, weight_format, act_format)
    return NONE


def expert_gemm(shape: dict) -> tuple[str, dict, str]:
    """(op, shape, words) of the one GEMM a grouped GEMM's expected time is read at. A grouped GEMM (MoE experts) is
    one GEMM per expert it touches over that expert's rows (``roofline.moe``, assumption 2), so its time is its
    experts' GEMMs' times: its bound over the efficiency the device reaches on ONE expert's GEMM (the grouped bound
    is the experts' bounds summed, each the same), rows per expert rounded to a whole row. What this does not know:
    a fused kernel's saving over GEMMs one after another (``make_grouped_gemm`` times its experts so, except where CUDA
    runs ``torch._grouped_mm``'s fused kernel: there the score's grouped row shows the saving), and skewed routing's
    uneven rows (prefill; decode at batch 1 is one row per expert, skew or not)."""
    groups, rows, n, k = per_expert(shape)
    m = max(1, math.floor(rows + 0.5))  # halves up (round() takes 2.5 rows to 2 and 3.5 to 4)
    experts = f"{groups:.0f}" if groups == int(groups) else f"{groups:.2f}"
    return ("gemm" if m > 1 else "gemv"), {"m": m, "n": n, "k": k}, f"{experts} x {m}x{n}x{k}"


def _as_grouped(e: Expected, each: str) -> Expected:
    """One expert's GEMM's ``Expected`` said of the grouped GEMM it stands for (``expert_gemm``)."""
    if e.efficiency is None:
        if e.source == "none" and e.note.startswith("not measured near"):
            return replace(e, note=e.note.replace("this shape (", f"its experts' GEMMs ({each}; ", 1),
                           reason="not measured near its experts' GEMMs")
        return e
    return replace(e, note=f"its experts' GEMMs, {each} one after another, at one GEMM's efficiency: {e.note}")


def _grouped_expected(precision, shape, hw, peaks, bound, weight_format, act_format, model, memory_only) -> Expected:
    """``expected_efficiency`` of a grouped GEMM: its one expert's GEMM's (``expert_gemm``), the model's or a prior,
    with its uncertainty; where that has no number, neither has this."""
    op, one, each = expert_gemm(shape)
    return _as_grouped(expected_efficiency(op, precision, one, hw, peaks, bound, weight_format, act_format, model,
                                           memory_only), each)


def expected_for(prediction, hw, model: EfficiencyModel | None = None) -> Expected:
    """``expected_efficiency`` for a ``Prediction`` (its roof kind follows the model's)."""
    return expected_efficiency(prediction.op, prediction.precision, prediction.shape or {}, hw, prediction.peaks,
                               prediction.bound, prediction.weight_format, prediction.act_format, model)


def expected_time(prediction, hw, model: EfficiencyModel | None = None) -> float | None:
    """The expected time of one ``Prediction`` (see ``expected_for``), or None where nothing is known."""
    e = expected_for(prediction, hw, model)
    return e.time_s(e.roof_time_s(prediction)) if e.efficiency else None


def expected_fields(result, hw, model: EfficiencyModel | None = None) -> dict:
    """``expected_*`` fields for a ``Prediction``, or for a composite (layer, model step): the sum of its kernels'
    expected times, where a kernel nothing is known about counts at its bound (and the source says how many)."""
    if not hasattr(result, "flat"):
        return expected_for(result, hw, model).to_dict(result)
    total, known, sources, n, covered = 0.0, 0, set(), 0, 0.0
    bare: dict[str, list] = {}  # why a kernel has no expected time -> [its names, its share of the bound]
    for p, mult in result.flat():
        n += 1
        e = expected_for(p, hw, model)
        t = e.time_s(e.roof_time_s(p)) if e.efficiency else None
        if t is not None:
            known += 1
            sources.add(e.source)
            covered += p.time_s * mult
        else:
            why = (f"{p.op}: not modelled" if op_class(p.op) is None and p.op != "grouped_gemm"
                   else e.reason or e.note)
            entry = bare.setdefault(why, [[], 0.0])
            entry[0] += [p.name] if p.name not in entry[0] else []
            entry[1] += p.time_s * mult / result.time_s
        total += (t if t is not None else p.time_s) * mult
    if not known:
        return NONE.to_dict(result) | {"expected_time_s": None}
    # which kernels stand at their bound, and how much of it: a step whose experts (88% of Mixtral's decode bound)
    # have no number is known far less than "5 of 14 kernels" says
    share = covered / result.time_s
    share_text = "over 99%" if 0.99 < share < 1 else f"{share:.0%}"  # elementwise kernels at their bound: not "100%"
    source = "/".join(sorted(sources)) + ("" if known == n else f" for {known} of {n} kernels, {share_text}"
                                          " of the bound (the rest at their bound)")
    note = "sum of the kernels' expected times" + ("; at their bound: " + "; ".join(
        f"{', '.join(names)} ({share:.1%} of the bound; {why})"
        for why, (names, share) in sorted(bare.items(), key=lambda kv: -kv[1][1])) if bare else "")
    return {"expected_time_s": total, "expected_efficiency": result.time_s / total, "expected_source": source,
            "expected_note": note, "expected_against": "full"}


def score(model: EfficiencyModel, held_out: list[tuple[str, str, dict, float, float]] | None = None,
          anchors: list[tuple[str, str, dict, float, float]] | None = None) -> dict:
    """Accuracy per model key (``gemm:bf16``): leave-one-out over the model's own measured shapes, and on
    ``held_out`` shapes it never saw (op, precision, shape, bound time, measured median or the medians of
    several runs, held against their median). Error =
    |log(predicted / measured)|, reported as geomean and worst, for the expected time and for the bound alone;
    ``not_near`` counts the shapes the model gave no number for (nothing measured near them: no number is
    the honest answer there, and it is counted, not hidden). ``meets_target``: held-out geomean within
    ``TARGET_GEOMEAN`` and worst within ``TARGET_WORST``. ``run_to_run``: where a shape ran more than once, how
    far two runs of it lie apart (geomean / worst of |log(a / b)| over pairs): the host's noise, under which no
    model can score (a model exact in the mean still errs by about that against one run). ``anchors``: the model's own
    measured shapes measured again while scoring (same form as ``held_out``); ``drift`` is how much slower (+) or
    faster (-) the host ran them than during the sweep (the geomean of their ratios, and the worst), a move no
    model fitted then can follow, and ``held_out["expected_drift_removed"]`` the held-out error with that move taken
    out: what is the model's own. The target is judged on the error as measured, never with the drift removed.
    ``held_out["shapes"]``: each held-out shape, worst first (measured, expected, its stated +-, the signed error,
    whether the error lies within the +-); ``held_out["within_uncertainty"]``: how many did, and ``understated``
    where fewer than ``COVERAGE_FLOOR`` of at least ``COVERAGE_MIN_N`` did (the +- is an RMS error: about 2 in 3)."""
    def summary(errors):
        if not errors:
            return None
        return {"n": len(errors), "geomean": math.exp(sum(errors) / len(errors)) - 1,
                "worst": math.exp(max(errors)) - 1}

    out = {}
    for key in model.samples:
        op, _, prec = key.partition(":")
        loo_e, loo_b, skipped = [], [], 0
        for p in model.points(op, prec):
            got = model.expected(op, prec, p.shape, exclude=p.shape)
            eff = math.exp(p.log_eff)
            loo_b.append(abs(math.log(eff)))                         # the bound alone: measured/bound = 1/eff
            if got.efficiency:
                loo_e.append(abs(math.log(got.efficiency / eff)))  # expected/measured = eff_true/eff_pred
            else:
                skipped += 1
        out.setdefault(key, {})["leave_one_out"] = {"expected": summary(loo_e), "bound": summary(loo_b),
                                                    "not_near": skipped}
    for op, prec, shape, bound_s, measured in held_out or ():  # bound_s: the roof the model's key is of
        runs = list(measured) if isinstance(measured, (list, tuple)) else [measured]
        if not runs or min(runs) <= 0:
            raise ValueError(f"held-out {op} {prec} {_fmt_scored(op, shape)}: measured times {runs!r} must be > 0")
        measured_s = statistics.median(runs)
        got = model.expected(op, prec, shape)
        entry = out.setdefault(model_key(op, prec), {}).setdefault(
            "held_out_errors", {"expected": [], "bound": [], "not_near": 0, "runs": [], "signed": [], "shapes": []})
        entry["runs"].extend(abs(math.log(a / b)) for i, a in enumerate(runs) for b in runs[i + 1:])
        row = {"shape": _fmt_scored(op, shape), "op": op, "measured_s": measured_s, "runs": runs,
               "bound_s": bound_s, "expected_s": got.time_s(bound_s), "uncertainty": got.uncertainty}
        if got.efficiency:
            err = math.log(measured_s / got.time_s(bound_s))
            entry["expected"].append(abs(err))
            entry["signed"].append(err)
            row["error"] = math.exp(err) - 1  # + : ran slower than expected
            if got.uncertainty is not None:
                row["within_uncertainty"] = abs(err) <= math.log1p(got.uncertainty) + 1e-12
        else:
            entry["not_near"] += 1
            row["note"] = got.note
        entry["shapes"].append(row)
        entry["bound"].append(abs(math.log(bound_s / measured_s)))
    drift: dict[str, list[float]] = {}
    for op, prec, shape, bound_s, measured in anchors or ():
        runs = list(measured) if isinstance(measured, (list, tuple)) else [measured]
        own = _shape_key(model_shape(op, shape))
        point = next((p for p in model.points(op, prec) if _shape_key(p.shape) == own), None)
        if point is not None and runs and min(runs) > 0:  # the sweep's own runs there, not the capped estimate
            drift.setdefault(model_key(op, prec), []).append(
                math.log(statistics.median(runs) * math.exp(point.log_eff) / bound_s))
    for key, moves in drift.items():
        mean = sum(moves) / len(moves)
        # a grouped GEMM is read from its GEMM path's model (``expert_gemm``): the host moved under both alike
        for k in (key, "grouped_gemm:" + key.partition(":")[2]) if key.startswith("gemm:") else (key,):
            if k != key and k not in out:
                continue
            out.setdefault(k, {})["drift"] = {"n": len(moves), "mean": math.exp(mean) - 1,
                                              "worst": math.exp(max(moves, key=abs)) - 1}
            errs = out[k].get("held_out_errors")
            if errs is not None:
                errs["signed"] = [x - mean for x in errs["signed"]]
    for d in out.values():
        errs = d.pop("held_out_errors", None)
        if errs is not None:
            e = summary(errs["expected"])
            judged = [r["within_uncertainty"] for r in errs["shapes"] if "within_uncertainty" in r]
            d["held_out"] = {"expected": e, "bound": summary(errs["bound"]), "not_near": errs["not_near"],
                             "meets_target": bool(e) and e["geomean"] <= TARGET_GEOMEAN and e["worst"] <= TARGET_WORST,
                             "run_to_run": summary(errs["runs"]),
                             "within_uncertainty": {"n": len(judged), "within": sum(judged),
                                                    "understated": len(judged) >= COVERAGE_MIN_N and
                                                    sum(judged) < COVERAGE_FLOOR * len(judged)},
                             "shapes": sorted(errs["shapes"], key=lambda r: -abs(r.get("error", 0.0)))}
            if "drift" in d:
                d["held_out"]["expected_drift_removed"] = summary([abs(x) for x in errs["signed"]])
    return out
