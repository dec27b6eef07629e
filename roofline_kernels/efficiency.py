"""The efficiency sweep: this device's measured fraction of its roof over GEMV/GEMM and attention shapes, fitted
on first use.

For each path with a real kernel here (emulated paths have no roof worth a fraction), shapes are measured cold from
a candidate grid that spans decode to prefill: for a GEMM, M 1..8192 in octaves and N, K 1024..8192 in half
octaves, powers of two and not, so the registry models' projections lie within an octave of a candidate; for
attention (SDPA), decode over KV lengths 256..8192 and causal prefill over 128..4096 tokens, at batch 1 and 4,
32 query heads over 4, 8 or 32 KV heads, head_dim 64 or 128. An attention path gets ``ATTENTION_SHARE`` of a GEMM
path's budget.

1. a **seed** that spans the range (GEMM: M 1, 16, 256, 2048 at a small and a large N x K, and in a full sweep the
   Ms that leave no M of the grid further than an octave from a seed or the M line, ``cover_m``; attention: three
   decodes, at two KV lengths and without GQA, and two prefill lengths), cheapest first (an attention path's
   prefills before its decodes);
2. then, until the path's share of the budget is spent, the candidate where the model is **least sure**
   (``EfficiencyModel.uncertainties``: distance from what was measured times the neighbours' disagreement),
   per the square root of its estimated cost, so a short budget buys the most accuracy;
3. where a GEMM path's share of the budget allows (``LINE_MIN_S``), once it has spent ``LINE_AFTER`` of it, an
   **M line**: every M of 2..16 at one N x K, so each decode batch size's own residual off the line in log M is
   known (``roofline.efficiency.m_residuals``); when it ends its powers of two, and each M lying over 10% off its
   line, run again within half of what is left of the path's share (a third time where two runs disagree);
4. a shape whose run lies more than ``RECHECK_LOG`` off what its neighbours predict (``recheck``: its
   leave-one-out error) runs **again** a few shapes later, and a third time if its two runs disagree, so one run a
   busy moment slowed on a shared host does not bend the model (the median of its runs is what it keeps); a shape
   measured before it had a neighbour is judged so when its first neighbour is measured;
5. in a full sweep, right after a GEMM shape whose K is a multiple of a large power of two, its **twin** at K + 128
   (``_Path.wants_twin``), where the model has too few such pairs near it and the path has not shown that K's
   alignment costs it nothing: what alignment costs is read from the pair (``roofline.efficiency._align_out``);
6. when the budget is spent (room was kept for it): each path's first shapes run again (how far the host's speed
   moved meanwhile, which every expected time's +- carries), and in a full sweep each shape still **alone** (no
   measured shape near it: the model leans on it alone, and no neighbour could judge its run) or **flagged** by
   step 4 and not yet run again; then every shape whose two runs disagree gets its third, whatever the budget did.

A candidate one call of which would take longer than ``MAX_CALL_S`` is not measured (the model says "not
measured near" there rather than guess). Efficiency is against the roof ``measure_kernel`` holds the kernel to
(the calibrated roofline, or the memory roof alone where the compute peak is a software kernel's speed), so
it is ``roofline.efficiency``'s job to apply it to the same roof. The model rides in the calibration profile
(``details["efficiency"]``), tied to that calibration: a new calibration starts a new model. It grows with
use: every cold measurement against that calibration (the suite's cases, ``measure``, the spot check) adds its
sample (``learn``), so a shape measured in several runs carries its run-to-run noise into the uncertainty. The
quantize pipeline does not: it times whole model steps, whose kernels run hot inside the model, and the model is
of cold runs of one kernel.

``HELD_OUT`` (GEMM: N and K not powers of two, M 1..2048), ``GROUPED_HELD_OUT`` (MoE experts, read from the GEMM
model at one expert's shape) and ``ATTN_HELD_OUT`` (other head counts, batches and
lengths) are shapes off the grid, for scoring the model on what it never saw (``calibrate --score``).
"""
from __future__ import annotations

import dataclasses
import datetime as dt
import functools
import math
import statistics
import time
from pathlib import Path

from roofline import attention as attention_cost, gemm as gemm_cost, get_format, predict
from roofline.atomic import locked, write_json_atomic
from roofline.efficiency import (ALIGN_CAP, ALIGN_MIN_LOG, ALIGN_MIN_PAIRS, AXES, NEAR_OCTAVES, REPEAT_RUNS,
                                 TWIN_STEP, EfficiencyModel, align_pairs, aligned, expert_gemm, k_level, m_residuals,
                                 model_key, model_of, model_shape, octaves_apart, op_class, twin_k, twins)
from roofline.judge import RESOLUTION
from roofline.moe import grouped_gemm
from roofline.predict import BYTES_PER_GB, FLOPS_PER_TFLOP, UnsupportedPathError, roofline_time

from . import telemetry
from .measure import measure_kernel, rotation_short
from .kernel import _cuda_capability
from .ops import (ATTENTION_KERNELS, GEMM_KERNELS, UnsupportedKernel, attention_refusal, gemm_formats,
                  gemm_refusal, make_attention, make_gemm, make_grouped_gemm)
from .timer import BudgetExceeded

GRID_M = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096, 8192)  # decode (M = 1) through prefill
GRID_NK = (1024, 1536, 2048, 3072, 4096, 6144, 8192)  # half octaves: powers of two and not
SEED_M = (1, 16, 256, 2048)
SEED_NK = ((1024, 1024), (4096, 4096))
# a full sweep's GEMVs off the diagonal N = K as well: a GEMV's efficiency follows K (each output row's stream) far more
# than N, and GEMVs at N = K alone cannot tell the two apart (a Zen 4 host, `_measure`, two rounds: fp32 0.44-0.49 of its
# roof at 4096x1024 and 8192x1024, 0.64-0.65 at 1024x8192; int8 0.42-0.58 and 0.70-0.78). Without them the planner,
# finding the diagonal's GEMVs agree, measured none off it for fp32 and int8 W8A8, and their held-out GEMVs at K = 2944
# and 6912 ran 13-27% faster than expected; K = 8192 brackets the long K of models' down projections
GEMV_SEED_NK = ((1024, 4096), (4096, 1024), (4096, 8192))
# a full sweep's seeds add the Ms that leave no M of the grid's range further than NEAR_OCTAVES from a seed or its M
# line (``cover_m``: 64, 512 and 4096 here), so the planner, which picks by uncertainty per cost and finds a flat
# compute-bound region sure, cannot leave the prefill Ms between the quick seeds unmeasured, where the model then has
# no number (a Zen 4 host: held-out 700x2096x2176 "not measured near" on four GEMM paths, int4 weight-only's
# 48x5200x1408 and 96x1808x3584 as well)
# every decode batch of 2..16 rows at one N x K (``roofline.efficiency.m_residuals``): a library runs rows in blocks,
# and an M it runs as a block plus a remainder lies off the line through the powers of two around it, alike at every
# N x K; measured where a GEMM path's share of the budget is at least LINE_MIN_S: a full calibration's share on every
# device the suite simulates and on a CPU lies at 8.6 s (B200: 10.5 shares of 90 s) to 15 s (a CPU's 6), a quick one's at
# 1.9-3.3 s, and LINE_MIN_S lies between (at 11 s, what a fake clock of 200 ms a measurement needs for the seeds, twins
# and line, a default calibration of an H100, H200, GB10 or B200 was no full sweep).
# LINE_MIN_S also makes a path's sweep full (``_Path.full``: its twins, and its end's re-runs of shapes alone or
# flagged). K = 2176, not 2048: a K that is a multiple of a large power of two takes a kernel some libraries run slower,
# by a factor that moves with M (int8 on a Zen 4 host: 2048 x 2048 ran M = 8 1.6x slower than M = 7 and 9), and a
# line there read that as each M's own residual and carried it to every K (held-out int8 M = 7 and 11 came out 34-41%
# slow); K + 128 is the twin the model reads alignment against (``roofline.efficiency.twin_k``)
LINE_M = tuple(range(2, 17))
LINE_NK = (2048, twin_k(2048))
LINE_MIN_S = 6.0
# once the path has spent this much of its share: the seed and the planner's first picks reach the shapes far from
# any (M 32-128 and 700 were "not near" for two paths here when the line ran right after the seed)
LINE_AFTER = 0.5
# each power of two of the line runs once more when the line is done: every residual of an octave leans on its two
# ends, and one run a busy moment sped or slowed moves them all (a single M = 2 run read high here: M = 3's residual
# came out 41% where five N x K had said 19-34%, and held-out M = 3 ran 15% faster than expected); two runs minutes
# apart that differ by over LINE_CONFIRM_LOG get a third (``recheck``), whose median then stands
LINE_ANCHOR_RUNS = 2
# and so does each other M of the line whose first run lies more than this (log) off the line through its powers
# of two: a residual is one run against two, and one run a busy moment slowed reads as a residual (int8 weight-only
# M = 11 read 36% slow on one sweep, 14% on another; held-out M = 11 then ran 27% faster than expected); a real one
# shows again, and the model keeps the median of the runs. Under it a residual moves an expected time by less
# than the noise of one run here
LINE_CONFIRM_LOG = math.log(1.1)
# two runs of a line's M further apart than LINE_CONFIRM_LOG get a third, whose median then stands: the mean of a
# clean run and one 36% slow is still 17% off, a residual of its own. The line's re-runs take at most this share of
# what is left of the path's own when the line ends (the Ms furthest off their line first): the grid keeps the rest
LINE_RERUN_SHARE = 0.5
# off the grid: N and K not powers of two (N % 16 and K % 128 as the packed INT4 kernel needs), M 1..2048
HELD_OUT = [(1, 1744, 2944), (1, 4880, 2176), (1, 2800, 6912), (3, 3312, 1920), (7, 1200, 4480), (24, 2608, 2560),
            (48, 5200, 1408), (96, 1808, 3584), (200, 3008, 1280), (384, 1408, 2944), (700, 2096, 2176),
            (1536, 1296, 1664), (2000, 2512, 1152), (5, 2224, 3712), (11, 1456, 2432)]
# MoE experts (groups, M, N, K), N and K not powers of two (multiples of 128, as the packed INT4 kernel needs): a
# decode's experts (one row each) and a prefill's (tens of rows each). Scored apart (``grouped_gemm:bf16``): each is
# read from the GEMM model at one expert's shape (``roofline.efficiency.expert_gemm``), so its error is that reading's
# on this device, its experts measured as ``ops.make_grouped_gemm`` runs them (one kernel an expert, or the fused
# torch._grouped_mm call where CUDA has one)
GROUPED_HELD_OUT = [(4, 1, 1408, 2176), (8, 1, 2432, 1664), (8, 40, 1408, 2176)]
# attention (batch, heads, kv_heads, seq_q, seq_kv, head_dim): decode (seq_q = 1, a KV-cache read) over KV lengths
# 256..8192 and causal prefill (seq_q = seq_kv) over 128..4096 tokens, at batch 1 and 4, 32 query heads over 4, 8 or
# 32 KV heads (GQA 8 as Llama 3 70B, gpt-oss and Qwen3-30B-A3B; GQA 4 as Llama 3 8B; or none), head_dim 64 or 128.
# The registry's models group 1 to 8 query heads a KV head, and the grid spans them all: the model interpolates
# within what was measured and holds the edge beyond it, and a decode's efficiency falls with the group where a
# kernel reads each KV head once per query head (here fp32 decode at 2048: 0.40, 0.27, 0.20, 0.12 of its roof at
# groups 1, 2, 4, 8; with groups 1 and 4 alone Qwen2.5's group 7 decode ran 15-41% slower than expected in four scores)
ATTN_DECODE_KV = (256, 512, 1024, 2048, 4096, 8192)
ATTN_PREFILL = (128, 256, 512, 1024, 2048, 4096)
ATTN_BATCH, ATTN_HEADS, ATTN_KV_HEADS, ATTN_HEAD_DIM = (1, 4), 32, (4, 8, 32), (64, 128)
# GQA 4 decode and prefill, and one decode without GQA (where fp32 SDPA refuses grouped KV heads: CUDA). No seed at
# GQA 8: with one (a sixth seed, or in place of either GQA 4 decode) a quick sweep's attention share reached the
# prefill seed the suite's own case lies near in 8 of 20 path-sweeps here (two suites from nothing, eight quick
# sweeps), against 11 of 12 without; a full sweep's planner measures GQA 8 shapes of its own (3-5 a path here)
ATTN_SEED = ((1, 32, 8, 1, 1024, 128), (1, 32, 8, 1, 4096, 128), (1, 32, 8, 256, 256, 128), (1, 32, 8, 1024, 1024, 128),
             (1, 32, 32, 1, 2048, 128))
# off the grid: other head counts (28 over 4: Qwen-like, 16 over 16), batch 2 and 3, lengths not powers of two
ATTN_HELD_OUT = [(1, 28, 4, 1, 3000, 128), (2, 16, 16, 1, 1500, 64), (3, 32, 8, 1, 700, 128), (1, 28, 4, 300, 300, 128),
                 (2, 16, 16, 200, 200, 64), (1, 32, 8, 700, 700, 128)]
ATTENTION_SHARE = 0.5  # an attention path's share of the sweep budget, against a GEMM path's 1
MAX_CALL_S = 0.3       # one call longer than this is too dear for a sweep: its region is left "not measured near"
PER_SHAPE_S = 2.0      # one shape's timing budget
# REPEAT_RUNS (roofline.efficiency's): a shape whose run disagrees with its neighbours is run again, up to this many
# runs (``recheck``)
# "disagrees": 40% off. A busy moment slows a run 1.5-2x or more; the model's own error between neighbours is
# ~15% geomean. At 25% a full sweep here ran 59 of 204 shapes again and scored no better on held-out shapes
# (14.6% vs 14.1% from their first runs alone): most of what it ran again was the model's error, not noise.
RECHECK_LOG = math.log(1.4)
RECHECK_AFTER = 3      # a shape runs again only after this many other shapes: a busy moment passes meanwhile
ALIGN_PROBE_PAIRS = 2  # aligned shapes get twins until this many pairs at K's top level showed alignment does not matter
MIN_REPS = 5           # cold samples per shape (FEW_REPS when a call is estimated over FEW_REPS_OVER_S)
FEW_REPS, FEW_REPS_OVER_S = 3, 0.05  # not timer.LONG_CALL_S (0.1 s), where the timer's own sampling changes
QUICK_BUDGET_S = 20.0  # the sweep of a quick calibration (the suite's first): keeps `pytest -m cpu` from nothing short
FULL_BUDGET_S = 90.0   # the sweep of a full calibration (`python -m roofline calibrate`)
DEFAULT_BUDGET_S = FULL_BUDGET_S
ANCHORS = 3            # swept shapes a path measured again while scoring: how far the host moved since the sweep
DRIFT_SHAPES = 3       # a path's first measured shapes, measured again when the sweep ends: how far the host's speed
                       # moved while it swept, which the expected time's +- then carries (``EfficiencyModel.drift``)
# A full sweep (a GEMM path's share at least LINE_MIN_S) also measures again, when it ends, every shape it ran once that no
# other measured shape lies near (``NEAR_OCTAVES``): the model leans on it alone over its region, and no neighbour can
# show a run a slow spell took (``recheck`` compares a run with its neighbours). Seen here: int8's 256x1024x1024 seed,
# the only int8 GEMM within an octave of M = 256, ran 1.5x slow early in two sweeps (efficiency 3.7e-4 and 3.8e-4;
# 5.5e-4 to 6.1e-4 in a probe minutes later), and held-out int8 GEMMs at M = 200 and 384 then ran 32-35% faster than
# expected, where the same held-out shapes lay within 6% over three sweeps the day before. A re-run that disagrees
# with its first run by over RECHECK_LOG gets a third after every path's re-runs, and the model keeps the median (the
# drift's re-runs too: int8's first GEMVs of those sweeps ran at 0.038-0.052 of their roof, 0.064-0.071 at the end). A
# shape that had no neighbour when first measured is judged (``recheck``) once its first neighbour is measured.

SCORE_PASSES = 3       # held-out runs a shape: scored against their median; their spread is the noise floor
# ... and this many more for a shape whose runs lie further apart than SCORE_SETTLE_LOG (a max / min, which more runs
# never shrink): on a 2-core Zen 4 VM a 2-thread kernel ran at half speed for as long as a whole pass, and where two of
# three passes fell in such spells the median was a spell's run (bf16: passes 1-2 1.7-1.8x slower than pass 3, which
# matched the model within 3-14%). Five runs a whole pass apart outvote two such; every run stays in the score's
# run-to-run figure
SCORE_EXTRA_PASSES = 2
SCORE_SETTLE_LOG = math.log(1.25)
GUESS_EFFICIENCY = 0.3  # a cost guess before anything of a precision was measured


def default_budget_s(quick: bool) -> float:
    return QUICK_BUDGET_S if quick else FULL_BUDGET_S


def _is_attention(kwargs) -> bool:
    return kwargs.get("op") == "attention"


def grid_shapes(kwargs=None) -> list[tuple[int, ...]]:
    """Every candidate shape of a path: (M, N, K) for a GEMM path, (batch, heads, kv_heads, seq_q, seq_kv,
    head_dim) for an attention path (``kwargs`` with ``op="attention"``)."""
    if kwargs is not None and _is_attention(kwargs):
        out = []
        for b in ATTN_BATCH:
            for kvh in ATTN_KV_HEADS:
                for d in ATTN_HEAD_DIM:
                    out += [(b, ATTN_HEADS, kvh, 1, s, d) for s in ATTN_DECODE_KV]
                    out += [(b, ATTN_HEADS, kvh, s, s, d) for s in ATTN_PREFILL]
        return out
    return [(m, n, k) for m in GRID_M for n in GRID_NK for k in GRID_NK]


def cover_m(base=SEED_M, refused=()) -> tuple[int, ...]:
    """The Ms of the grid a sweep seeds beside ``base`` (Ms it measures anyway) so that every M from the grid's
    least to its largest lies within ``NEAR_OCTAVES`` of a measured one (as ``roofline.efficiency.AXES`` weighs M):
    from the least M not so covered, the grid M near it that covers the most of what is not, the cheapest (least)
    of those that cover as much. ``refused``: Ms the path does not build (torch._int_mm on CUDA: M <= 16), neither
    seeded nor counted in ``base``; what only they could cover is left. Checked on every eighth of an octave."""
    reach = NEAR_OCTAVES / AXES["gemm"]["m"]
    lo, hi = math.log2(GRID_M[0]), math.log2(GRID_M[-1])
    live = [m for m in GRID_M if m not in refused]
    have, out = [math.log2(m) for m in base if m not in refused], []
    points = [x for x in (lo + i / 8 for i in range(int((hi - lo) * 8) + 1))
              if any(abs(x - math.log2(m)) <= reach + 1e-9 for m in live)]

    def open_points():
        return [x for x in points if all(abs(x - h) > reach + 1e-9 for h in have)]

    while (gap := open_points()):
        near = [m for m in live if abs(math.log2(m) - gap[0]) <= reach + 1e-9]
        m = max(near, key=lambda c: (sum(abs(x - math.log2(c)) <= reach + 1e-9 for x in gap), -c))
        have.append(math.log2(m))
        out.append(m)
    return tuple(sorted(out))


@functools.lru_cache(maxsize=1)
def _registry_gemms() -> tuple[tuple[int, int, int], ...]:
    from roofline.models import DEFAULT_CONTEXT, MODEL_CONFIGS, model_step
    out = set()
    for cfg in MODEL_CONFIGS.values():
        for phase in ("decode", "prefill"):
            for op, _ in model_step(cfg, phase, 1, DEFAULT_CONTEXT).flat():
                if op_class(op.op) == "gemm":
                    out.add(tuple(int(op.shape.get(a, 1)) for a in "mnk"))
                elif op.op == "grouped_gemm":  # MoE experts are read at one expert's GEMM: that is what to cover
                    out.add(tuple(expert_gemm(op.shape)[1][a] for a in "mnk"))
    return tuple(sorted(out))


def registry_gemms() -> list[tuple[int, int, int]]:
    """The GEMM shapes (M, N, K) the registry's models run (``roofline.models``: a decode step at batch 1 and a prefill
    of ``DEFAULT_CONTEXT`` tokens), the MoE routers (N 8-128) and LM heads (N 128k-201k) among them, and the one
    expert's GEMM each MoE expert layer is read at (``roofline.efficiency.expert_gemm``)."""
    return list(_registry_gemms())


# the largest N x K a registry seed may have: twice the grid's largest, 537 MB of fp32 weights, so that one 65536 x 2048
# GEMV (``bridges``) reaches every LM head of the registry (N 128256-201088 at K 2048-8192) where the budget affords it.
# What it costs is priced where it is measured (``_Costs.wall``): one 128256 x 2048 GEMV took 2.8-11.2 s of a Zen 4
# host's wall time a path to build and time (int4 weight-only's packing the most) against a full sweep's 15 s share,
# where a GPU builds it in milliseconds
REGISTRY_MAX_NK = 2 * GRID_NK[-1] ** 2


def _bridge(x: int) -> int:
    """An N or K no grid shape lies near (more than two octaves past its largest or under its least) as the power of
    two within two octaves of it, toward the grid: one unit away (``NEAR_OCTAVES``), so a shape there lies near it;
    else ``x``."""
    if x > 4 * GRID_NK[-1]:
        return 2 ** (math.ceil(math.log2(x)) - 2)
    if 4 * x < GRID_NK[0]:
        return 2 ** (math.floor(math.log2(x)) + 2)
    return x


def bridges(targets) -> list[tuple[int, int, int]]:
    """Shapes that reach registry GEMMs past the grid's N and K (``_bridge`` on each axis): an LM head of a 152k
    vocabulary from a 65536-wide GEMV, a router of N = 8 from an N = 32 one; ``cover_registry`` picks among them."""
    return sorted({(m, _bridge(n), _bridge(k)) for m, n, k in targets} - set(map(tuple, targets)))


def cover_registry(have, candidates, cost, targets=None) -> tuple[list[tuple[int, ...]], list[tuple[int, ...]]]:
    """(seeds, left): shapes a full sweep measures so that every registry GEMM (``registry_gemms``, or ``targets``) lies
    within ``NEAR_OCTAVES`` of a measured shape, beside ``have`` (shapes it measures anyway: seeds, M line). A greedy
    cover: each time the shape that covers the most targets not yet covered per second of ``cost`` (plus 50 ms a
    shape: its build and warmup), none whose call costs over ``MAX_CALL_S``; first from ``candidates`` and the
    registry's shapes within the grid's largest N x K, then, for what those leave, also from the registry's wider
    shapes and its ``bridges`` (N x K at most ``REGISTRY_MAX_NK``). In one greedy pass the LM heads' 65536-wide bridge,
    which also reaches the MLP GEMVs of N 18944 and 28672, displaced the 8192 x 2048 GEMV that reaches those alone:
    its build (seconds on a CPU, unpriced here) did not fit bf16's share, and both went uncovered. ``left``: the
    targets no such shape covers (on a 2-core CPU the 70B models' MLP prefills, whose cover costs ~0.5 s a call in
    fp32)."""
    def near(a, b):
        return octaves_apart(dict(zip("mnk", a)), dict(zip("mnk", b))) <= NEAR_OCTAVES + 1e-9
    targets = registry_gemms() if targets is None else list(targets)
    left = [t for t in targets if not any(near(t, h) for h in have)]
    seeds = []
    wider = [t for t in targets + bridges(targets) if t[1] * t[2] <= REGISTRY_MAX_NK]
    for pool in (set(candidates) | {t for t in targets if t[1] * t[2] <= GRID_NK[-1] ** 2}, set(wider)):
        pool = sorted(c for c in pool if c not in seeds)
        priced = {c: cost(c) for c in pool}
        pool = [c for c in pool if priced[c] <= MAX_CALL_S]
        covers = {c: [t for t in left if near(c, t)] for c in pool}
        while left:
            gain = {c: sum(t in left for t in covers[c]) for c in pool}
            best = max(pool, key=lambda c: (gain[c] / (priced[c] + 0.05), -priced[c], c), default=None)
            if best is None or not gain[best]:
                break
            seeds.append(best)
            left = [t for t in left if not near(best, t)]
    return seeds, left


def seed_shapes(kwargs=None, full: bool = False, refused_m=()) -> list[tuple[int, ...]]:
    """A path's seeds, measured before the planner picks (those too dear for a sweep are left, ``plan_next``); a
    ``full`` sweep's GEMM seeds add the Ms that its seeds and its M line (``LINE_M``) leave uncovered (``cover_m``),
    ``refused_m`` (Ms the device refuses at every N x K, ``_refused``) counted out, and GEMVs off the diagonal N = K
    (``GEMV_SEED_NK``)."""
    if kwargs is not None and _is_attention(kwargs):
        return list(ATTN_SEED)
    ms = sorted(set(SEED_M) | set(cover_m(SEED_M + LINE_M, refused_m))) if full else SEED_M
    gemvs = [(1, n, k) for n, k in GEMV_SEED_NK] if full and 1 not in refused_m else []
    return [(m, n, k) for m in ms for n, k in SEED_NK] + gemvs


def line_shapes(kwargs=None) -> list[tuple[int, ...]]:
    """A GEMM path's M line (``LINE_M`` at ``LINE_NK``); none for attention."""
    return [] if kwargs is not None and _is_attention(kwargs) else [(m,) + LINE_NK for m in LINE_M]


def line_anchors(line) -> list[tuple[int, ...]]:
    """The shapes of an M line at a power of two of M: the ends of every octave its residuals are read against."""
    return [c for c in line if c[0] & (c[0] - 1) == 0]


def held_out_shapes(kwargs) -> list[tuple[int, ...]]:
    return list(ATTN_HELD_OUT) if _is_attention(kwargs) else list(HELD_OUT) + list(GROUPED_HELD_OUT)


def shape_dict(kwargs, shape) -> dict:
    keys = ("batch", "heads", "kv_heads", "seq_q", "seq_kv", "head_dim") if _is_attention(kwargs) else ("m", "n", "k")
    return dict(zip(keys, shape))


def _target(info) -> str:
    return "cpu" if info.kind == "cpu" else "cuda"


def _build(kwargs, shape, info):
    if _is_attention(kwargs):
        return make_attention(*shape, precision=kwargs["precision"], device=info.torch_device, target=_target(info))
    if len(shape) == 4:  # a grouped GEMM (``GROUPED_HELD_OUT``)
        return make_grouped_gemm(*shape, device=info.torch_device, target=_target(info), **kwargs)
    m, n, k = shape
    return make_gemm(m, n, k, device=info.torch_device, target=_target(info), op="gemv" if m == 1 else "gemm",
                     **kwargs)


def _precision_label(kwargs, info) -> str:
    """The model key's precision of a path, without building a seed shape (a seed may be refused where the probe
    built: fp32 SDPA with grouped KV heads on CUDA)."""
    if _is_attention(kwargs):
        return get_format(kwargs["precision"]).name
    return _probe(kwargs, info).precision


# small shapes a path is probed at (its precision label, whether it builds here), the first that builds: int8's
# torch._int_mm on CUDA needs M > 16 (aten/src/ATen/native/cuda/Blas.cpp _int_mm_out_cuda), so a probe at M = 16 alone
# left the int8 W8A8 path out of every GPU's sweep (found by the sweep's first run on a simulated H100)
GEMM_PROBES = ((16, 256, 256), (32, 256, 256))
ATTENTION_PROBES = ((1, 4, 4, 16, 16, 64),)


def _probe(kwargs, info):
    """A path's kernel at the first of its probe shapes that builds here (the last refusal raised if none does)."""
    probes = ATTENTION_PROBES if _is_attention(kwargs) else GEMM_PROBES
    for i, shape in enumerate(probes):
        try:
            return _build(kwargs, shape, info)
        except UnsupportedKernel:
            if i == len(probes) - 1:
                raise


def sweep_precisions(info, hw) -> list[tuple[str, dict]]:
    """The paths to sweep: the GEMM kernels and the attention kernels (``op="attention"``, labelled ``attention
    bf16``) that build here, are not emulated, and have a roof on ``hw`` (a probe at a small shape, ``_probe``)."""
    paths = list(GEMM_KERNELS) + [(f"attention {p}", {"op": "attention", "precision": p}) for p in ATTENTION_KERNELS]
    out = []
    for label, kwargs in paths:
        try:
            k = _probe(kwargs, info)
            predict(k.cost, hw, "calibrated")
        except (UnsupportedKernel, UnsupportedPathError, ValueError):
            continue
        if not k.emulated:
            out.append((label, kwargs))
    return out


def _cost(kwargs, shape):
    if _is_attention(kwargs):
        b, h, kvh, sq, skv, d = shape
        return attention_cost(b, h, kvh, sq, skv, d, precision=kwargs["precision"], causal=sq > 1)
    if len(shape) == 4:
        return grouped_gemm(*shape, **kwargs)
    m, n, k = shape
    return gemm_cost(m, n, k, **kwargs)


def _measure(label, kwargs, shape, info, hw, est_call_s: float | None = None, max_wall_s: float = PER_SHAPE_S):
    kernel = _build(kwargs, shape, info)
    reps = FEW_REPS if est_call_s and est_call_s > FEW_REPS_OVER_S else MIN_REPS
    m = measure_kernel(kernel, info, hw, "cold", "calibrated", warmup_ms=5, rep_ms=25, with_telemetry=False,
                       max_wall_s=max_wall_s, min_reps=reps)
    return kernel, m


class _Costs:
    """Seconds one call of a shape is estimated to take: the nearest measured shape's time scaled by work
    (the larger of the FLOP and byte ratios), or the roof time over a guessed efficiency before any."""

    def __init__(self, kwargs, hw):
        self.kwargs, self.hw, self.seen, self.walls = kwargs, hw, [], []

    def add(self, shape, seconds):
        self.seen.append((shape, _cost(self.kwargs, shape), seconds))

    def add_wall(self, shape, seconds):
        """A first run's whole wall time: building the kernel (a weight's random values, its quantization or packing),
        its cold buffers, warmup and timed calls."""
        self.walls.append((_cost(self.kwargs, shape).bytes, seconds))

    def wall(self, shape) -> float:
        """Seconds a first run of ``shape`` is estimated to take in all: the first run nearest in bytes, scaled up by
        the bytes ratio (a weight's build and packing grow with it; int4 weight-only packed a 128256 x 2048 weight in
        seconds on a 2-core CPU, where its calls took milliseconds); 0 before any run."""
        if not self.walls:
            return 0.0
        nbytes = _cost(self.kwargs, shape).bytes
        b0, w0 = min(self.walls, key=lambda r: abs(math.log(r[0] / nbytes)))
        return w0 * max(1.0, nbytes / b0)

    def __call__(self, shape) -> float:
        if len(shape) == 4 and not _is_attention(self.kwargs):  # a grouped GEMM: its experts' GEMMs, one after another
            return shape[0] * self(tuple(shape[1:]))
        c = _cost(self.kwargs, shape)
        seen = [r for r in self.seen if len(r[0]) == len(shape)]
        if not seen:
            try:
                p = predict(c, self.hw, "calibrated")
                return (p.t_memory_s + p.t_compute_s) / GUESS_EFFICIENCY
            except (UnsupportedPathError, ValueError):
                return math.inf
        q = [math.log2(x) for x in shape]
        s, c0, t0 = min(seen, key=lambda r: math.dist(q, [math.log2(x) for x in r[0]]))
        return t0 * max(c.flops / c0.flops, c.bytes / c0.bytes)


def plan_next(model: EfficiencyModel, op_label: str, precision: str, candidates, cost, remaining_s: float,
              measured: set, kwargs=None, again=(), line=(), full: bool = False, refused_m=(), extra_seeds=()):
    """The next shape to measure: an unmeasured seed first (cheapest first), then an unmeasured shape of ``line`` (the
    M line, in order, once offered), then a shape of ``again`` (the ones ``recheck`` flagged, oldest first) whose cost
    fits, then one of ``extra_seeds`` (a full sweep's registry seeds, ``cover_registry``, once its line is done; in the
    cover's order, the grid's and the registry's own shapes before bridges) whose whole first run fits (``_Costs.wall``;
    twice that where nothing measured lies near it: such a shape runs again when the sweep ends, ``_Path.alone``),
    else the candidate with the most uncertainty per square root of its estimated cost, among those whose cost fits
    what is left."""
    def affordable(c):
        # MIN_REPS calls: a long call's first, its estimate and its 3 samples (``timer._bench_cpu``)
        return c not in measured and cost(c) <= MAX_CALL_S and cost(c) * MIN_REPS < remaining_s
    fits = [c for c in candidates if affordable(c)]
    # cheapest first; an attention path's prefills before its decodes: the prefill seeds are its dear ones, and a
    # quick sweep's share, spent on the cheap decodes first, often no longer afforded the 1024-token prefill the
    # suite's own case lies near (4 of 16 path-sweeps in four suites from nothing), where a decode fits at the end
    seeds = sorted((c for c in seed_shapes(kwargs, full, refused_m) if c in fits),
                   key=lambda c: (kwargs is not None and _is_attention(kwargs) and c[3] == 1, cost(c)))
    if seeds:
        return seeds[0]
    # the line, once offered, before the re-runs: on a noisy host (a 2-core VM moving +-19% while it swept) the re-runs
    # ``recheck`` queued took the rest of int8's share after half of it was spent, its line never ran, and held-out
    # M = 3, 5 and 7 were "not measured near"; a re-run waits (the thirds owed still run at the end, ``owed``)
    line = [c for c in line if affordable(c)]
    if line:
        return line[0]
    for c in again:
        if cost(c) * MIN_REPS < remaining_s:
            return c
    # after the line: on a 2-core CPU two of them cost an int4 path ~2.5 s of its 15 s, and taken first (as seeds) they
    # left two paths no share for the line (held-out M = 3, 5 and 7 "not measured near"); priced by their whole wall
    # time where the cost knows it (``_Costs.wall``): the LM heads' bridge builds a weight 8x an 8192 x 2048 GEMV's.
    # In the cover's order: sorted by call cost, a bridge (27 ms a call on a CPU, seconds to build) ran before a dearer
    # first-stage prefill and could spend the share that one needed
    wall = getattr(cost, "wall", lambda c: 0.0)

    def alone(c):
        here = shape_dict(kwargs or {}, c)
        return not any(octaves_apart(here, shape_dict(kwargs or {}, m)) <= NEAR_OCTAVES + 1e-9 for m in measured)
    extra = [c for c in extra_seeds if affordable(c) and wall(c) * (2 if alone(c) else 1) < remaining_s]
    if extra:
        return extra[0]
    if not fits:
        return None
    op = "attention" if kwargs is not None and _is_attention(kwargs) else "gemm"
    u = model.uncertainties(op, precision, [shape_dict(kwargs or {}, c) for c in fits])
    best = max(range(len(fits)), key=lambda i: (u[i] / math.sqrt(cost(fits[i]) + 0.02), -cost(fits[i])))
    return fits[best] if u[best] > 0 else None


def recheck(model: EfficiencyModel, op: str, precision: str, shape: dict, runs: int,
            apart: float = RECHECK_LOG) -> str | None:
    """Why a shape just measured should run again, or None. On a shared host one run a busy moment slowed would
    bend the model around it for good, so a first run that lies more than ``RECHECK_LOG`` from what its neighbours
    predict there is run again, later; a second run that disagrees with the first by as much gets a third, and the
    model keeps the median of the shape's runs. A real change of kernel the neighbours do not show costs one run more: its
    second run agrees with its first. ``apart``: how far two runs may lie apart before a third (an M line's runs:
    ``LINE_CONFIRM_LOG``, since each residual of the line rests on them)."""
    if runs >= REPEAT_RUNS:
        return None
    if runs == 1:
        off = model.disagreement(op, precision, shape)
        return f"{math.exp(off) - 1:.0%} off its neighbours" if off > RECHECK_LOG else None
    point = next((p for p in model.points(op, precision) if p.shape == model_shape(op, shape)), None)
    effs = point.efficiencies[-runs:] if point else ()
    spread = abs(math.log(max(effs) / min(effs))) if len(effs) >= 2 else 0.0
    return f"its runs {math.exp(spread) - 1:.0%} apart" if spread > apart else None


def _refused(kwargs, shape, info) -> bool:
    """Whether the device refuses a sweep shape by the kernels' own rules, before anything is built (CUDA's:
    ``roofline_kernels.kernel.GEMM_RULES``, torch._int_mm's M > 16 among them; ``ops.attention_refusal``, fp32 SDPA
    with grouped KV heads): the sweep never plans it. Without them a simulated H100's sweep tried 211 such shapes,
    each a plan's time and a line of the profile's "skipped"."""
    if info is None or _target(info) != "cuda":
        return False
    if _is_attention(kwargs):
        _, heads, kv_heads, seq_q, seq_kv, _ = shape
        return attention_refusal(kwargs["precision"], heads, kv_heads, seq_q, seq_kv, "cuda") is not None
    w, a, _ = gemm_formats(**kwargs)
    return gemm_refusal(w, a, *shape, _cuda_capability("cuda")) is not None


def _share(kwargs) -> float:
    return ATTENTION_SHARE if _is_attention(kwargs) else 1.0


class _Path:
    """One path's state in a sweep: what it measured, how often, what waits to run again, the time it spent."""

    def __init__(self, label, kwargs, hw, shapes, allowance_s=0.0, info=None):
        self.label, self.kwargs, self.allowance_s = label, kwargs, allowance_s
        # the grid and M line less what the device refuses (``_refused``); the Ms it refuses whole (``cover_m``)
        grid, line = grid_shapes(kwargs), line_shapes(kwargs)
        refused = {c for c in grid + line if _refused(kwargs, c, info)}
        self.candidates = [c for c in grid if c not in refused]
        self.line = [c for c in line if c not in refused] if allowance_s >= LINE_MIN_S and shapes is None else []
        self.refused_m = set() if _is_attention(kwargs) else (
            {c[0] for c in refused} - {c[0] for c in grid + line if c not in refused})
        self.costs, self.measured, self.dead, self.runs, self.queue = _Costs(kwargs, hw), set(), set(), {}, []
        self.todo = list(shapes) if shapes is not None else None
        # shape -> its model shape; its first run's efficiency; its kernel's op and cost shape (``recheck``'s)
        self._mshapes, self.eff1, self.cost_shape = {}, {}, {}
        self.precision, self.spent, self.count, self.again, self.started = None, 0.0, 0, 0, False
        self.first = []  # (shape, efficiency, wall seconds) of the first DRIFT_SHAPES measured: run again at the end
        self.line_done, self.line_s = False, 0.0  # the line's first runs took line_s seconds of wall time
        self.wall = {}  # shape -> wall seconds its last run took
        self.near = {}  # shape measured -> how many other measured shapes lie near it (``NEAR_OCTAVES``)
        self.full = allowance_s / _share(kwargs) >= LINE_MIN_S and shapes is None  # a full sweep's path
        # aligned shapes' twins (``wants_twin``) and confirmations' aligned shapes (``confirm``) to measure next; the
        # twins measured
        self.twins, self.twinned = [], set()
        # a full GEMM sweep's registry seeds (``cover_registry``): priced before anything is measured, from the roof
        self.registry_seeds: list = []
        if self.full and not _is_attention(kwargs):
            registry = [c for c in registry_gemms() if not _refused(kwargs, c, info)]
            # what the sweep will measure anyway: its seeds it affords and builds (``plan_next`` measures no other)
            have = [c for c in seed_shapes(kwargs, True, self.refused_m)
                    if c in self.candidates and self.costs(c) <= MAX_CALL_S] + self.line
            # measured as ``plan_next``'s extra seeds alone, each priced there by its whole first run; never among the
            # candidates, whose pick by uncertainty prices a call only (the bridges, far from every grid shape, were
            # the most uncertain of all, and the planner took a 65536-wide one whose build did not fit)
            self.registry_seeds, _ = cover_registry(have, self.candidates, self.costs, registry)

    def meet(self, shape, mshape: dict) -> list:
        """Count ``shape`` (first measured now; ``mshape`` its model shape) among its neighbours; returns the shapes
        that had none so far (``recheck`` could not judge their first run then: it can now)."""
        self.near[shape], woken = 0, []
        for other, m in self._mshapes.items():
            if octaves_apart(m, mshape) <= NEAR_OCTAVES + 1e-9 and not twins(shape, other):  # a twin runs
                # seconds after its shape, in the same slow spell if one: no witness of that shape's run
                self.near[shape] += 1
                self.near[other] += 1
                if self.near[other] == 1:
                    woken.append(other)
        self._mshapes[shape] = mshape
        return woken

    def alone(self) -> list:
        """Shapes a full sweep runs again at its end: measured once, with no other measured shape near, not among
        the drift's (which run again anyway); in the order first measured."""
        first = {f[0] for f in self.first}
        return [c for c, n in self.near.items()
                if self.full and n == 0 and self.runs.get(c) == 1 and c not in first and c not in self.dead]

    def flagged(self) -> list:
        """Shapes a full sweep runs again at its end: queued by ``recheck`` after their first run (or when their
        first neighbour came) but not run again before the loop ended, not among the drift's nor the M line's (whose
        re-runs stay within ``LINE_RERUN_SHARE``); in queue order."""
        first = {f[0] for f in self.first}
        return [q for _, q in self.queue
                if self.full and self.runs.get(q) == 1 and q not in first and q not in self.line]

    def owed(self) -> list:
        """Queued shapes whose two runs disagree (``recheck``): the model holds their mean until a third runs, which
        the sweep owes them whatever its budget did (``run_sweep`` keeps room for them; ``_measure_drift`` runs them)."""
        return [q for _, q in self.queue if self.runs.get(q, 0) == REPEAT_RUNS - 1]

    def _pairs(self, model, m: int) -> list:
        """The path's pairs (``align_pairs``) of the kind (GEMV or GEMM) an M is."""
        return [t for t in align_pairs(model.points("gemm", self.precision)) if (int(t[1].shape["m"]) == 1) == (m == 1)]

    def wants_twin(self, model, shape, mshape: dict):
        """The twin (``roofline.efficiency.twin_k``) a full sweep measures right after a GEMM shape whose K is aligned
        (``k_level``), where fewer than ``ALIGN_MIN_PAIRS`` pairs of that level and kind (GEMV or GEMM) lie near it
        (the model takes a residual only where as many agree); None otherwise, and once ``ALIGN_PROBE_PAIRS`` pairs
        of the kind at the top level (K a multiple of 4096, where a row stride maps the fewest cache sets) were
        measured and no pair of the kind says alignment matters (each under ``ALIGN_MIN_LOG``):
        there a twin is a shape the planner did not choose. (Its first pairs at K = 1024 alone are no such evidence:
        int8 on a Zen 4 host ran K = 1024 as fast as K = 1152, K = 4096 and 8192 2.0-3.4x slower than K + 128.) Right
        after its shape, so the host's speed has no time to move between the two runs a residual is read from."""
        if not self.full or _is_attention(self.kwargs) or self.precision is None:
            return None
        m, n, k = shape
        twin = (m, n, twin_k(k))
        if not aligned(k) or twin in self.measured or twin in self.dead or twin in self.twins:
            return None
        pairs = self._pairs(model, m)
        if sum(lv == ALIGN_CAP for lv, _, _ in pairs) >= ALIGN_PROBE_PAIRS and all(
                abs(r) <= ALIGN_MIN_LOG for _, _, r in pairs):
            return None  # K a multiple of 4096 costs nothing here, nor any lower level measured: no more twins
        near = sum(lv == k_level(k) and octaves_apart(p.shape, mshape) <= NEAR_OCTAVES + 1e-9 for lv, p, _ in pairs)
        return twin if near < ALIGN_MIN_PAIRS else None

    def confirm(self, model, twin):
        """After a twin's run: where its pair says alignment costs more than ``ALIGN_MIN_LOG`` and it is the only pair
        of its level and kind near its shape, a second aligned shape near it (the same M and K, the nearest other N
        of the grid), whose own twin then follows (``wants_twin``): the model takes a residual only where
        ``ALIGN_MIN_PAIRS`` pairs near agree, and a sweep that left each pair alone would have measured them for
        nothing. None otherwise."""
        m, n, k = twin[0], twin[1], twin[2] - TWIN_STEP
        if not twins(twin, (m, n, k)):
            return None
        pairs = [(lv, p, r) for lv, p, r in self._pairs(model, m) if lv == k_level(k)]
        mine = next((r for _, p, r in pairs if (p.shape["m"], p.shape["n"], p.shape["k"]) == (m, n, k)), None)
        if mine is None or abs(mine) <= ALIGN_MIN_LOG:
            return None
        at = {"m": m, "n": n, "k": k}
        if sum(octaves_apart(p.shape, at) <= NEAR_OCTAVES + 1e-9 for _, p, _ in pairs) >= ALIGN_MIN_PAIRS:
            return None
        for n2 in sorted(GRID_NK, key=lambda x: abs(math.log2(x / n))):
            c = (m, n2, k)
            if n2 != n and c not in self.measured and c not in self.dead and c not in self.twins:
                return c
        return None

    @property
    def share(self) -> float:
        return _share(self.kwargs)

    def next_shape(self, model, info, left):
        if self.todo is not None:
            return self.todo.pop(0) if self.todo else None
        if self.precision is None:  # the model key's precision label, known once a kernel was built
            self.precision = _precision_label(self.kwargs, info)
        if self.line and not self.line_done and all(c in self.measured or c in self.dead for c in self.line):
            self.line_done = True  # its powers of two run again now (``LINE_ANCHOR_RUNS``), before anything new,
            # then the Ms whose residual is large enough to matter (``LINE_CONFIRM_LOG``)
            queued = {q for _, q in self.queue}
            nk = dict(zip(("n", "k"), LINE_NK))
            res = m_residuals([p for p in model.points("gemm", self.precision)
                               if all(p.shape.get(a) == v for a, v in nk.items())])
            anchors = line_anchors(self.line)
            want = [c for c in anchors if 0 < self.runs.get(c, 0) < LINE_ANCHOR_RUNS and c not in queued]
            want += sorted((c for c in self.line if c not in anchors and c not in queued and self.runs.get(c, 0) == 1
                            and abs(res.get(c[0], 0.0)) > LINE_CONFIRM_LOG), key=lambda c: -abs(res[c[0]]))
            each = self.line_s / max(1, sum(self.runs.get(c, 0) > 0 for c in self.line))  # a line run's wall time
            room = LINE_RERUN_SHARE * max(0.0, self.allowance_s - self.spent)
            take = set(want[:int(room / each)] if each > 0 else want)
            # ahead of the re-runs queued meanwhile (the line runs before them, ``plan_next``): its ends are what every
            # residual of the line is read against
            self.queue = [(self.count, c) for c in anchors + [c for c in self.line if c not in anchors]
                          if c in take] + self.queue
        while self.twins:  # an aligned shape's twin: right after it, or not at all
            twin = self.twins.pop(0)
            if self.costs(twin) <= MAX_CALL_S and self.costs(twin) * MIN_REPS < left and self.costs.wall(twin) < left:
                # (its whole first run priced too: the LM heads' 65536-wide bridge has a twin as dear to build)
                if twins(twin, (twin[0], twin[1], twin[2] - TWIN_STEP)):  # not a confirmation's aligned shape
                    self.twinned.add(twin)
                return twin
        due = [q for n, q in self.queue if n <= self.count]
        shape = plan_next(model, self.label, self.precision, self.candidates, self.costs, left,
                          self.measured | self.dead, self.kwargs, due,
                          self.line if self.spent >= LINE_AFTER * self.allowance_s else (), self.full, self.refused_m,
                          self.registry_seeds if all(c in self.measured or c in self.dead for c in self.line) else ())
        if shape is None and self.queue:  # nothing new fits: the re-runs still waiting go now rather than never
            shape = next((q for _, q in self.queue if self.costs(q) * MIN_REPS < left), None)
        self.queue = [(n, q) for n, q in self.queue if q != shape]
        return shape


def run_sweep(info, hw, shapes=None, precisions=None, budget_s: float = DEFAULT_BUDGET_S,
              progress=lambda s: None) -> tuple[EfficiencyModel, list[dict]]:
    """(model, rows): shapes of every path measured **interleaved** (next: the path that has spent the least of its
    share), within ``budget_s`` (past it by the thirds the end's re-runs may owe, ``_measure_drift``, and by the end's
    re-run of the loop's last shapes where they have no neighbour: the plan prices a shape's own run only); an
    attention path's share is ``ATTENTION_SHARE`` of a GEMM path's. A slow minute of
    a shared host then falls on a few shapes of each path, which ``recheck`` can catch against their neighbours,
    instead of on all of one path, which nothing could tell from that path being slow. ``shapes`` given: those, in
    that order (no planning; GEMM paths only); else seed then least-sure-first over ``grid_shapes(kwargs)``. A new
    model, of this sweep's runs alone (each row says what its roof was made of, for ``raise_roofs``)."""
    precisions = precisions if precisions is not None else sweep_precisions(info, hw)
    if shapes is not None:
        precisions = [(label, kwargs) for label, kwargs in precisions if not _is_attention(kwargs)]
    model = EfficiencyModel()
    rows, skipped, contention = [], {}, {}
    t_start = time.perf_counter()
    shares = sum(_share(kwargs) for _, kwargs in precisions) or 1.0
    active = [_Path(label, kwargs, hw, shapes, budget_s * _share(kwargs) / shares, info) for label, kwargs in precisions]
    paths = list(active)

    def finish(p):
        active.remove(p)
        progress(f"efficiency sweep {p.label}: {p.count - p.again} shapes" + (f", {p.again} run again" if p.again else ""))

    planned = shapes is None

    def reserve():  # what the re-runs at the end will take (the drift's, the shapes still alone or flagged and never
        # run again, the third runs owed): as much as their shapes' runs before took
        return (sum(w for p in paths for _, _, w in p.first) if planned else 0.0) + sum(
            p.wall[q] for p in paths for q in p.owed() + p.alone() + p.flagged())

    def run(p, shape, t0):  # one run of one shape of path p, begun (planning included) at t0
        try:
            kernel, m = _measure(p.label, p.kwargs, shape, info, hw, p.costs(shape))
        except (UnsupportedKernel, BudgetExceeded, ValueError, RuntimeError) as e:
            skipped.setdefault(f"{p.label} {'x'.join(map(str, shape))}", str(e)[:160])
            p.dead.add(shape)
            p.spent += time.perf_counter() - t0
            return
        p.measured.add(shape)
        if rotation_short(m):  # partly cached: no cold sample (``learn`` refuses one too)
            again = p.runs.get(shape, 0) > 0
            skipped.setdefault(f"{p.label} {'x'.join(map(str, shape))}{' again' if again else ''}", SHORT_NO_SAMPLE)
            if not again:  # no neighbour and no re-run; a shape with a sample keeps it, and its due re-runs
                p.dead.add(shape)
            p.spent += time.perf_counter() - t0
            return
        p.runs[shape] = p.runs.get(shape, 0) + 1
        woken = []
        if p.runs[shape] == 1:
            woken = p.meet(shape, model_shape(kernel.op, kernel.cost.shape))
            p.eff1[shape], p.cost_shape[shape] = m.efficiency, (kernel.op, kernel.cost.shape)
        if planned and len(p.first) < DRIFT_SHAPES and p.runs[shape] == 1 and shape not in p.twinned:  # a twin is
            # its aligned shape's double, no other shape
            p.first.append((shape, m.efficiency, time.perf_counter() - t0))
        p.costs.add(shape, m.timing.median_s)
        eff = m.efficiency  # against the roof measure_kernel held it to
        roof = "memory" if m.memory_roof_only else "full"
        model.add(kernel.op, kernel.precision, kernel.cost.shape, eff, roof)
        p.count += 1
        p.again += p.runs[shape] > 1
        on_line = shape in p.line
        twin = p.wants_twin(model, shape, model_shape(kernel.op, kernel.cost.shape)) if p.runs[shape] == 1 else None
        if twin is not None:
            p.twins.append(twin)
        confirm = p.confirm(model, shape) if shape in p.twinned and p.runs[shape] == 1 else None
        if confirm is not None:
            p.twins.insert(0, confirm)  # measured next, its twin right after it
        if p.todo is None and recheck(model, kernel.op, kernel.precision, kernel.cost.shape, p.runs[shape],
                                      LINE_CONFIRM_LOG if on_line else RECHECK_LOG):
            p.queue.append((p.count + RECHECK_AFTER, shape))
        queued = {q for _, q in p.queue}
        for other in woken:  # measured once before it had a neighbour, which it has now: judged as it would have been
            op, cost_shape = p.cost_shape[other]
            if p.todo is None and p.runs[other] == 1 and other not in queued and recheck(
                    model, op, kernel.precision, cost_shape, 1):
                p.queue.append((p.count + RECHECK_AFTER, other))
        rows.append(_row(kernel, m, shape, p.runs[shape]))
        p.spent += time.perf_counter() - t0
        p.wall[shape] = time.perf_counter() - t0
        if p.runs[shape] == 1:
            p.costs.add_wall(shape, p.wall[shape])
        if on_line and p.runs[shape] == 1:
            p.line_s += time.perf_counter() - t0

    while active:
        remaining = budget_s - (time.perf_counter() - t_start) - reserve()
        if remaining <= 0:
            break
        # a twin waiting goes first, whatever path: its pair is read from runs taken together
        p = next((a for a in active if a.twins), None) or min(active, key=lambda a: a.spent / a.share)
        if not p.started:
            # a busy neighbour slows every shape measured meanwhile: said beside the model
            flags = telemetry.snapshot(info.kind, busy_interval_s=0.05, info=info).get("contention") or []
            if flags:
                contention[p.label] = list(flags)
            p.started = True
        t0 = time.perf_counter()
        shape = p.next_shape(model, info, remaining * p.share / sum(a.share for a in active))
        if shape is None:
            finish(p)
            continue
        run(p, shape, t0)
    for p in list(active):
        finish(p)
    drift = _measure_drift(paths, model, rows, info, hw, skipped) if planned else {}
    if drift:
        progress(f"efficiency sweep: its first shapes measured again, the host's speed moved +-{math.exp(drift['sigma']) - 1:.0%} ("
                 + ", ".join(f"{k.partition(':')[2] if k.startswith('gemm') else k.replace(':', ' ')} "
                             f"{math.exp(d['mean']) - 1:+.0%}" for k, d in drift["paths"].items())
                 + ", + slower now); every expected time's +- carries it")
    model.meta.update(measured=len({(r["op"], r["precision"], tuple(r["shape"])) for r in rows}), runs=len(rows),
                      repeated=sum(r["run"] > 1 for r in rows), seconds=round(time.perf_counter() - t_start, 1),
                      budget_s=budget_s, when=dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
                      grid={"m": list(GRID_M), "nk": list(GRID_NK), "attention_decode_kv": list(ATTN_DECODE_KV),
                            "attention_prefill": list(ATTN_PREFILL)},
                      skipped=skipped, contention=contention, interleaved=[p.label for p in paths], drift=drift)
    return model, rows


SHORT_NO_SAMPLE = "its cold rotation fell SHORT of its target (partly cached: no cold sample)"


def _row(kernel, m, shape, run: int, **mark) -> dict:
    """One run of a sweep, as ``run_sweep`` returns it: with what its roof was made of (the prediction's FLOPs,
    bytes, compute class and both roof times, where ``measure_kernel`` gave one), which ``raise_roofs`` reads."""
    pred = getattr(m, "prediction", None) or {}
    return {"op": op_class(kernel.op), "precision": kernel.precision, "shape": list(shape), "run": run,
            "median_s": m.timing.median_s, "roof_s": m.predicted_time_s,
            "roof": "memory" if m.memory_roof_only else "full", "efficiency": m.efficiency,
            "rel_iqr": m.timing.rel_iqr, "key": model_key(kernel.op, kernel.precision),
            "model_shape": model_shape(kernel.op, kernel.cost.shape),
            "short": rotation_short(m),  # partly cached: raises no roof
            **{k: pred.get(k) for k in ("flops", "bytes", "compute_class", "peak_tflops", "bandwidth_gbs", "t_memory_s",
                                        "t_compute_s")}, **mark}


def raise_roofs(cal, model: EfficiencyModel, rows: list, ceiling: dict | None = None) -> tuple:
    """A calibrated roof the sweep ran faster than is no roof: raised to the fastest run that beat it, and every
    sample of the model (and every row) held to the raised roofs, so efficiency stays under 1 and the model's cap at
    the roof (``MAX_EFFICIENCY``) no longer holds an expected time slower than this device runs. Seen on a Zen 4 host:
    int8 calibrated at 0.76 TFLOP/s while the host ran slow, its sweep's GEMMs at up to 1.12 of it; bf16's cubes
    (the calibration's shapes) at 0.94 of a 512x2048x8192 GEMM's rate. A run beats the bandwidth where its bytes over
    its median do, its compute class's peak where its FLOPs over its median do (a run held to the memory roof alone:
    the bandwidth only), by more than the timer's resolution (``roofline.judge.RESOLUTION``); a run may beat both.
    Only what the profile calibrated is raised (a class at its datasheet stand-in is not), and never past ``ceiling``
    ({compute class or "bandwidth": value}, ``roofline_kernels.ceiling``: what truly bounds): a run beyond it is a bug
    to explain, said (``beyond_ceiling``), not a roof, and the fastest run within it still raises the roof. A raise
    is never undone by a later sweep (``calibrate --efficiency``): a new calibration (``--refresh``) measures anew.
    Returns (the calibration, raised: its ``peaks_tflops``,
    ``bandwidth_gbs``, and ``details["raised_by_sweep"]``: what each was calibrated at and which run raised it;
    ``{"raised": {what: {...}}, "beyond_ceiling": {what: {...}}}``, empty where nothing beat a roof). The model and
    the rows are changed in place."""
    ceiling = ceiling or {}
    beat: dict[str, list[tuple[float, dict]]] = {}  # roof -> (rate, run) of every run past it by more than the
    # timer's resolution; a run may beat both (a compute-bound run that also read faster than the bandwidth)
    for r in rows:
        if r.get("flops") is None or r.get("peak_tflops") is None or r.get("short"):
            continue  # a rotation kept short of its target read partly from cache: no evidence of a roof
        gbs = r["bytes"] / r["median_s"] / BYTES_PER_GB
        if gbs > r["bandwidth_gbs"] * (1 + RESOLUTION):
            beat.setdefault("bandwidth", []).append((gbs, r))
        tflops = r["flops"] / r["median_s"] / FLOPS_PER_TFLOP
        if r["roof"] == "full" and r["compute_class"] in cal.peaks_tflops and tflops > r["peak_tflops"] * (1 + RESOLUTION):
            beat.setdefault(r["compute_class"], []).append((tflops, r))
    before = dict(cal.details.get("raised_by_sweep") or {})
    raised, beyond, new = {}, {}, {}
    for what, runs in beat.items():
        old = cal.bandwidth_gbs if what == "bandwidth" else cal.peaks_tflops[what]

        def said(rate, r):
            return {"shape": f"{r['op']} {r['precision']} {'x'.join(map(str, r['shape']))}", "times": rate / old,
                    "rate": rate, "unit": "GB/s" if what == "bandwidth" else "TFLOP/s"}
        bound = ceiling.get(what, math.inf)
        past = [x for x in runs if x[0] > bound]
        if past:  # a bug to explain, said; the runs within the ceiling still raise the roof
            beyond[what] = dict(said(*max(past, key=lambda x: x[0])), ceiling=bound, runs=len(past))
        within = [x for x in runs if x[0] <= bound]
        if within:
            rate, r = max(within, key=lambda x: x[0])
            new[what] = rate
            raised[what] = dict(said(rate, r), calibrated=before.get(what, {}).get("calibrated", old), was=old)
    if not raised:
        return cal, ({"raised": {}, "beyond_ceiling": beyond} if beyond else {})
    bw_new = new.get("bandwidth")

    def roof(r, raised_too: bool) -> float:
        peak, bw = r["peak_tflops"], r["bandwidth_gbs"]
        if raised_too:
            peak, bw = new.get(r["compute_class"], peak), bw_new or bw
        t_memory, _, t = roofline_time(r["flops"], r["bytes"], peak, bw)
        return float(t_memory if r["roof"] == "memory" else t)

    factor = {}
    for r in rows:
        if r.get("flops") is None or r.get("peak_tflops") is None:
            continue
        f = roof(r, True) / roof(r, False)
        factor[(r["key"], tuple(sorted(r["model_shape"].items())))] = f
        r["roof_s"], r["efficiency"] = r["roof_s"] * f, r["efficiency"] * f
    model.rescale(lambda key, shape: factor.get((key, tuple(sorted(shape.items()))), 1.0))
    model.meta["raised_roofs"] = raised
    cal = dataclasses.replace(cal, peaks_tflops={**cal.peaks_tflops, **{k: v for k, v in new.items() if k != "bandwidth"}},
                              bandwidth_gbs=bw_new or cal.bandwidth_gbs,
                              details={**cal.details, "raised_by_sweep": {**before, **raised}})
    return cal, {"raised": raised, "beyond_ceiling": beyond}


def raised_text(what: str, r: dict) -> str:
    """One line of what ``raise_roofs`` raised."""
    name = "DRAM bandwidth" if what == "bandwidth" else f"compute {what}"
    return (f"{name} raised {r['was']:.4g} -> {r['rate']:.4g} {r['unit']}: the efficiency sweep's {r['shape']} ran "
            f"{r['times']:.2f}x that roof, so the calibration's own shapes fell short of what this device reaches "
            "(every sample is held to the raised roof)")


def _measure_drift(paths, model: EfficiencyModel, rows: list, info, hw, skipped: dict) -> dict:
    """The sweep's end, past its loop (``run_sweep`` kept room for it): each path's first measured shapes measured
    again, and in a full sweep each shape still alone (``_Path.alone``) or flagged and never run again
    (``_Path.flagged``); then a third run of every shape whose two runs
    disagree (``recheck``), owed from the loop (``_Path.owed``: int8's M = 7 line shape here ran twice 72% apart as
    its share ended, the model held their mean, and a held-out M = 7 then ran 37% faster than expected) or from these
    re-runs, once all re-runs are done (a slow spell that took a second run has had time to pass); those re-runs'
    thirds may take the sweep past its budget, by at most the re-runs' time again. Every run joins the model as a run
    of its shape, and the model keeps the median.

    Returns ``{"n", "sigma", "paths": {model key: {"n", "mean"}}}`` over x = log(time now / time then) of the first
    shapes' re-runs: ``mean`` a path's move since it started, ``sigma`` the host's, 1.4826 x the median |x| of all
    paths (the spread of x, which is what a later run differs from a swept one by). Pooled, not per path: three
    re-runs a path are too few (one tiny int8 GEMV here ran 73% slower at the end where its path's held-out shapes
    were 5% off), and the host's speed moves under every path. On a shared host it moves over minutes; a model
    fitted meanwhile cannot follow that, and its +- says so only if told."""
    moves = []

    def again(p, shape, **mark):
        try:
            kernel, m = _measure(p.label, p.kwargs, shape, info, hw, p.costs(shape))
        except (UnsupportedKernel, BudgetExceeded, ValueError, RuntimeError) as e:
            skipped.setdefault(f"{p.label} {'x'.join(map(str, shape))} again", str(e)[:160])
            return None, None
        if rotation_short(m):  # no cold sample: neither the model's nor the drift's
            skipped.setdefault(f"{p.label} {'x'.join(map(str, shape))} again", SHORT_NO_SAMPLE)
            return None, None
        roof = "memory" if m.memory_roof_only else "full"
        model.add(kernel.op, kernel.precision, kernel.cost.shape, m.efficiency, roof)
        p.runs[shape] += 1
        rows.append(_row(kernel, m, shape, p.runs[shape], **mark))
        return kernel, m

    # a first shape owed a third gets it from its drift re-run
    owed = [(p, c) for p in paths for c in p.owed() if c not in {f[0] for f in p.first}]
    for p in paths:
        first = [(c, e) for c, e, _ in p.first]
        for shape, eff_then in first + [(c, None) for c in p.alone() + p.flagged()]:
            kernel, m = again(p, shape, drift=True)
            if kernel is None:
                continue
            if eff_then is not None:
                moves.append((model_key(kernel.op, kernel.precision), math.log(eff_then / m.efficiency)))
            if p.runs[shape] == 2 and recheck(model, kernel.op, kernel.precision, kernel.cost.shape, 2):
                owed.append((p, shape))
    for p, shape in owed:
        again(p, shape)
    if not moves:
        return {}
    by_path = {}
    for key in dict.fromkeys(k for k, _ in moves):
        logs = [x for k, x in moves if k == key]
        by_path[key] = {"n": len(logs), "mean": sum(logs) / len(logs)}
    return {"n": len(moves), "sigma": 1.4826 * statistics.median(abs(x) for _, x in moves), "paths": by_path}


def _builder_shape(kwargs, shape: dict) -> tuple[int, ...]:
    """A model point's shape as the sweep's builder takes it (the inverse of ``model_shape`` on the sweep's grid)."""
    if _is_attention(kwargs):
        bh, group = shape["batch_heads"], shape["group"]
        heads = ATTN_HEADS if bh % ATTN_HEADS == 0 and ATTN_HEADS % group == 0 else bh  # else batch 1, bh heads
        return bh // heads, heads, heads // group, shape["seq_q"], shape["seq_kv"], shape["head_dim"]
    return shape["m"], shape["n"], shape["k"]


def anchor_shapes(model: EfficiencyModel, kwargs, precision: str, n: int | None = None) -> list[tuple[int, ...]]:
    """``n`` of the model's own measured shapes of a path, spread over its range (smallest, middle, largest work):
    measured again while scoring, they tell how far the host's speed moved since the sweep."""
    n = ANCHORS if n is None else n
    op = "attention" if _is_attention(kwargs) else "gemm"
    work = {}
    for p in model.points(op, precision):
        s = _builder_shape(kwargs, p.shape)
        try:
            work[s] = _cost(kwargs, s).flops
        except ValueError:  # a learned shape no builder shape reproduces (heads not a multiple of its KV heads)
            continue
    shapes = sorted(work, key=work.get)
    if len(shapes) <= n:
        return shapes
    return [shapes[round(i * (len(shapes) - 1) / (n - 1))] for i in range(n)] if n > 1 else shapes[:1]


def measure_held_out(model: EfficiencyModel, info, hw, precisions, shapes=None, progress=lambda s: None,
                     max_call_s: float = 2.0, passes: int = SCORE_PASSES, anchors: list | None = None):
    """(op, precision, shape, roof time, [measured medians, one a pass]) on shapes off the grid, for
    ``roofline.efficiency.score``. Each shape is measured in ``passes`` passes over every path's shapes, and in
    ``SCORE_EXTRA_PASSES`` more where its runs lie further apart than ``SCORE_SETTLE_LOG`` (so a path's
    runs of a shape lie a whole pass apart: a slow minute of a shared host falls on one pass of several paths,
    not on all three passes of one path, as when each path ran its passes back to back, ~10-30 s apart; seen:
    two of int4 weight-only's three passes 45-53% slower than the third): a model is scored against their median,
    and their spread is this host's run-to-run noise, the floor under any score. A shape one call of which would
    take longer than ``max_call_s`` is left out (said in the progress line). ``shapes``: the GEMM shapes (default
    ``HELD_OUT`` and ``GROUPED_HELD_OUT``); attention paths use ``ATTN_HELD_OUT``. ``anchors`` (a list): ``ANCHORS`` of the model's own
    swept shapes a path are measured in the same passes and their rows appended to it, in the same form: how far
    the host moved since the sweep."""
    if passes < 1:
        raise ValueError(f"passes={passes!r}: must be >= 1")
    plans = []
    for label, kwargs in precisions:
        todo = held_out_shapes(kwargs) if shapes is None or _is_attention(kwargs) else list(shapes)
        if anchors is not None and model is not None:
            precision = _precision_label(kwargs, info)
            marked = [("anchor", a) for a in anchor_shapes(model, kwargs, precision) if a not in todo]
        else:
            marked = []
        order = sorted([("held", s) for s in todo] + marked, key=lambda t: _cost(kwargs, t[1]).flops)
        plans.append({"label": label, "kwargs": kwargs, "order": order, "costs": _Costs(kwargs, hw), "dear": [],
                      "rows": {}, "refused": {}})
    def unsettled(runs):
        return len(runs) >= passes and math.log(max(runs) / min(runs)) > SCORE_SETTLE_LOG

    extra = SCORE_EXTRA_PASSES if passes > 1 else 0
    for p in range(passes + extra):
        for plan in plans:
            label, kwargs, costs, rows = plan["label"], plan["kwargs"], plan["costs"], plan["rows"]
            for kind, shape in plan["order"]:
                if p and (kind, shape) not in rows:
                    continue
                if p >= passes and not unsettled(rows[(kind, shape)][4]):
                    continue
                if not p and costs.seen and costs(shape) > max_call_s:
                    plan["dear"].append("x".join(map(str, shape)))
                    continue
                try:  # a shape up to max_call_s a call is scored: its 3 samples get the wall time they need
                    kernel, m = _measure(label, kwargs, shape, info, hw, costs(shape) if costs.seen else None,
                                         max_wall_s=max(PER_SHAPE_S, 3 * max_call_s))
                except (UnsupportedKernel, BudgetExceeded, ValueError, RuntimeError) as e:  # said below, never
                    # dropped unsaid (RuntimeError: torch.OutOfMemoryError and CUDA's errors, as the sweep takes them)
                    plan["refused"].setdefault("x".join(map(str, shape)), f"{type(e).__name__}: {str(e)[:80]}")
                    continue
                costs.add(shape, m.timing.median_s)
                row = rows.setdefault((kind, shape), (kernel.op, kernel.precision, dict(kernel.cost.shape),
                                                      m.predicted_time_s, []))
                row[4].append(m.timing.median_s)
        again = sum(unsettled(r[4]) for plan in plans for r in plan["rows"].values()) if p + 1 >= passes else 0
        if passes > 1 and (p + 1 <= passes or again):
            progress(f"held-out pass {p + 1} of {passes} done" if p + 1 < passes else
                     f"held-out pass {p + 1} done" + (f"; {again} shapes whose runs lie over "
                                                      f"{math.exp(SCORE_SETTLE_LOG) - 1:.0%} apart run once more"
                                                      if again and p + 1 < passes + extra else ""))
    out = []
    for plan in plans:
        rows, dear, refused = plan["rows"], plan["dear"], plan["refused"]
        out.extend(r for (kind, _), r in rows.items() if kind == "held")
        if anchors is not None:
            anchors.extend(r for (kind, _), r in rows.items() if kind == "anchor")
        held = sum(kind == "held" for kind, _ in rows)
        more = sum(len(r[4]) > passes for (kind, _), r in rows.items() if kind == "held")
        progress(f"held-out {plan['label']}: {held} shapes x {passes} passes"
                 + (f", {more} run more where their runs lay apart" if more else "")
                 + (f", {len(rows) - held} of its swept shapes again" if len(rows) > held else "")
                 + (f" ({len(dear)} over {max_call_s:g} s a call left out: {', '.join(dear)})" if dear else "")
                 + (f" ({len(refused)} not measured: " + "; ".join(f"{k} {why}" for k, why in refused.items()) + ")"
                    if refused else ""))
    return out


def attach(cal, model: EfficiencyModel) -> None:
    """Store the model in the calibration profile it was measured against."""
    model.meta["calibration"] = cal.timestamp
    cal.details["efficiency"] = model.to_dict()


def sweep(cal, info, hw, precisions, budget_s: float, progress=lambda s: None) -> tuple:
    """(model, calibration): a sweep of ``cal``'s efficiency model (``run_sweep``), and ``cal`` with any roof the
    sweep ran faster than raised (``raise_roofs``, never past what truly bounds this device); the model is not yet
    attached, nor the profile saved."""
    model, rows = run_sweep(info, hw, precisions=precisions, budget_s=budget_s, progress=progress)
    from .ceiling import ceiling_hardware, dram_settled
    store = Path(cal.path).parent if cal.path else None
    c = ceiling_hardware(info, hw, store) if hw is not None else None
    # a CPU's best DRAM shown bounds only once a look was taken on a quiet machine (before, it may be a neighbour's
    # figure: physics against it is reported, not enforced), so until then it caps no raise
    settled = info.kind != "cpu" or (store is not None and dram_settled(info, store))
    bounds = {} if c is None else {**{cls: spec.value for cls, spec in c.peaks.items() if spec is not None},
                                   **({"bandwidth": c.bandwidth.value} if c.bandwidth is not None and settled else {})}
    cal, out = raise_roofs(cal, model, rows, bounds)
    for what, r in out.get("raised", {}).items():
        progress(raised_text(what, r))
    for what, r in out.get("beyond_ceiling", {}).items():
        progress(f"WARNING: the efficiency sweep's {r['shape']} ran at {r['rate']:.4g} {r['unit']}"
                 + (f" ({r['runs']} runs past it)" if r["runs"] > 1 else "") + f", beyond what truly bounds this "
                 f"device ({r['ceiling']:.4g}): a bug to explain (a cold run that was not cold?), not taken as a roof")
    return model, cal


def ensure_model(cal, info, hw, budget_s: float, progress=lambda s: None):
    """The calibration with its efficiency model (``model_of``): swept now (``budget_s``) and saved into its profile
    if it has none, its roofs raised where the sweep ran faster (``sweep``). ``budget_s`` 0: no sweep (the
    calibration is returned as it is)."""
    model = model_of(cal)
    if model is not None or budget_s <= 0 or info.simulated:
        return cal
    precisions = sweep_precisions(info, hw)
    if not precisions:
        return cal
    progress(f"efficiency sweep of {', '.join(p for p, _ in precisions)} (the expected time beside the bound): "
             f"up to {budget_s:g} s")
    model, cal = sweep(cal, info, hw, precisions, budget_s, progress)
    if cal.path:
        with locked(cal.path):
            from roofline import load_calibration
            try:
                fresh = load_calibration(cal.path)
            except (OSError, ValueError):
                fresh = None
            if fresh is not None and fresh.timestamp == cal.timestamp:
                learned = model_of(fresh)  # samples another process added while this swept stay, unless held to
                # roofs the sweep raised since
                if learned is not None and not learned.meta.get("learned_only"):
                    # another process's sweep of this very profile finished first: its model and any roof it raised
                    # stand. Merged, its samples (held to its raised roofs) and these (to the roofs before) were one
                    # model while the profile said the roof was both raised and not
                    progress("another process's efficiency sweep of this profile finished first: its model and roofs "
                             "are kept, this sweep's are not")
                    return fresh
                if learned and model.meta.get("raised_roofs"):
                    progress(f"{sum(map(len, learned.samples.values()))} samples learned while the sweep ran were "
                             "held to the roofs before it raised them: not kept")
                elif learned:
                    for key, rows in learned.samples.items():
                        op, _, prec = key.partition(":")
                        for shape, eff in rows:
                            model.add(op, prec, shape, eff, learned.roofs.get(key, "full"))
                fresh = dataclasses.replace(fresh, peaks_tflops=dict(cal.peaks_tflops), bandwidth_gbs=cal.bandwidth_gbs,
                                            details={**fresh.details, **{k: v for k, v in cal.details.items()
                                                                         if k == "raised_by_sweep"}})
                attach(fresh, model)
                write_json_atomic(cal.path, fresh.to_dict())
    attach(cal, model)
    if model.meta.get("contention"):
        progress("efficiency sweep measured under contention (" + "; ".join(
            f"{p}: {', '.join(f)}" for p, f in model.meta["contention"].items()) + "): refit on a quiet machine "
            "with `calibrate --efficiency --refresh`")
    return cal


def device_spread(cal, kernel) -> tuple[float, str] | None:
    """This device's run-to-run spread near a kernel's shape, from its calibration's efficiency model
    (``EfficiencyModel.run_to_run``): what a regression band is never narrower than. None without a model, for an
    emulated kernel (the model has none) or an operator it does not cover."""
    model = model_of(cal) if cal is not None else None
    if model is None or kernel.emulated:
        return None
    return model.run_to_run(kernel.op, kernel.precision, kernel.cost.shape)


def learn(cal, kernel, m, info) -> str | None:
    """Add a measured case's efficiency to its calibration's model (saved in the profile, atomically, under a
    lock), so the model grows with use. Returns None when added, else why not (said, never an error)."""
    why = (("no stored calibration profile" if cal is None or not getattr(cal, "path", None) else None)
           or (None if Path(cal.path).name.startswith("calibration-") else
               f"{cal.path} was given by path (only the store's profiles learn; a file of yours is not rewritten)")
           or ("a simulated device" if info.simulated else None)
           or (f"{m.timing.mode} timing (the model is of cold runs)" if m.timing.mode != "cold" else None)
           or ("an emulated kernel" if kernel.emulated else None)
           or (f"held to the {m.peaks} roof, the model to the calibrated one" if m.peaks != "calibrated" else None)
           or (f"measured under contention ({', '.join(m.contention)})" if m.contention else None)
           or ("it beats its ceiling: a bug to explain (bytes or FLOPs mis-counted, or the ceiling is wrong), not this "
               "device's speed" if m.beats_ceiling else None)
           or (SHORT_NO_SAMPLE if rotation_short(m) else None)
           or ("a grouped_gemm: its expected time is read from the GEMM model at one expert's shape, which a grouped "
               "kernel does not sample" if kernel.op == "grouped_gemm" else None)
           or (f"a {kernel.op} (the model covers GEMV, GEMM and attention)" if op_class(kernel.op) is None
               else None)
           or (None if m.efficiency > 0 and math.isfinite(m.efficiency) else f"efficiency {m.efficiency!r}"))
    if why:
        return why
    from roofline import load_calibration
    roof = "memory" if m.memory_roof_only else "full"
    with locked(cal.path):
        try:
            fresh = load_calibration(cal.path)
        except (OSError, ValueError) as e:
            return f"profile unreadable ({e})"
        if fresh.timestamp != cal.timestamp:
            return f"the profile was recalibrated ({fresh.timestamp}) since this measurement's calibration"
        if (fresh.peaks_tflops, fresh.bandwidth_gbs) != (cal.peaks_tflops, cal.bandwidth_gbs):
            return "the profile's roofs were raised by a sweep since this measurement's calibration was loaded"
        model = model_of(fresh) or EfficiencyModel(meta={"learned_only": True})
        try:
            model.add(kernel.op, kernel.precision, kernel.cost.shape, m.efficiency, roof)
        except ValueError as e:
            return str(e)
        attach(fresh, model)
        write_json_atomic(cal.path, fresh.to_dict())
    cal.details["efficiency"] = fresh.details["efficiency"]
    return None
