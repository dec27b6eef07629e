"""Does our calibrated DRAM bandwidth agree with a STREAM-type tool on this host? A script that prints ratios.

    python tests/benchmarks/stream_agreement.py --rounds 5      # needs likwid-bench (Debian: apt-get install likwid)

Alternates, ``--rounds`` times: a quick calibration of this project (``roofline_kernels.calibrate``: its DRAM
figure, the best of its read, copy and triad kernels over the DRAM working set in two looks; ``--look`` takes
one look alone, faster) and likwid-bench's load,
copy and stream (triad) kernels over the same working set with the same thread count, best of them, and
prints each round's ratio. Target: within 15% every round. Like with like: both count the bytes each kernel
names (read N, copy 2N, triad 3N: no write-allocate traffic), both take their best kernel.
Exit 0 with the figures, 2 when likwid-bench is missing or refuses.
"""
from __future__ import annotations

import argparse
import json
import re
import shutil
import statistics
import subprocess
import sys

LIKWID_KERNELS = ("load_avx", "copy_avx", "stream_avx")


def likwid_gbs(kernel: str, nbytes: int, threads: int) -> float:
    out = subprocess.run(["likwid-bench", "-t", kernel, "-w", f"S0:{nbytes // 2**20}MB:{threads}"],
                         capture_output=True, text=True, timeout=300).stdout
    m = re.search(r"MByte/s:\s*([\d.]+)", out)
    if not m:
        raise RuntimeError(f"likwid-bench -t {kernel} printed no MByte/s: {out[-300:]}")
    return float(m.group(1)) / 1e3


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--rounds", type=int, default=5)
    p.add_argument("--look", action="store_true", help="one DRAM look instead of a whole quick calibration")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    if not shutil.which("likwid-bench"):
        print("likwid-bench not on PATH (Debian/Ubuntu: apt-get install likwid)", file=sys.stderr)
        return 2
    import torch
    from roofline_kernels.calibrate import calibrate, dram_bandwidth_now, dram_working_set
    from roofline_kernels.device import detect
    info = detect("cpu")
    size, note = dram_working_set(info)
    threads = torch.get_num_threads()
    rounds = []
    for i in range(args.rounds):
        ours = dram_bandwidth_now(info, rep_ms=60) if args.look else calibrate(info, quick=True).bandwidth_gbs
        peer = {k: likwid_gbs(k, size, threads) for k in LIKWID_KERNELS}
        best = max(peer.values())
        rounds.append({"ours_gbs": ours, "likwid_gbs": peer, "likwid_best_gbs": best, "ratio": ours / best})
        print(f"round {i + 1}: ours {ours:.1f} GB/s, likwid-bench best {best:.1f} GB/s "
              f"({', '.join(f'{k} {v:.1f}' for k, v in peer.items())}): ratio {ours / best:.2f}", flush=True)
    ratios = [r["ratio"] for r in rounds]
    within = sum(abs(r - 1) <= 0.15 for r in ratios)
    print(f"working set {note}, {threads} threads; ratio median {statistics.median(ratios):.2f}, "
          f"range {min(ratios):.2f}-{max(ratios):.2f}; within 15%: {within} of {len(ratios)} rounds")
    if args.json:
        print(json.dumps({"working_set": note, "threads": threads, "rounds": rounds}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
