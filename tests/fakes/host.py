"""A fake host: /proc/cpuinfo and the cache and cpufreq sysfs files ``roofline_kernels.device.read_cpu_info`` reads."""
from __future__ import annotations

from pathlib import Path


def write(root: Path, rel: str, text: str) -> Path:
    p = Path(root) / rel
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(text)
    return p


def fake_cpu_tree(root: Path, flags: str = "fpu sse2 avx2 fma", max_khz: str = "3500000") -> Path:
    """8 threads on 4 cores of a "Fake CPU 9000": 32K L1d, 1M L2, 16M L3, ``max_khz`` ("" for none); 32768000 kB of
    RAM."""
    root = Path(root)
    write(root, "proc/cpuinfo", "".join(
        f"processor\t: {i}\nmodel name\t: Fake CPU 9000\ncpu MHz\t\t: 2000.000\nphysical id\t: 0\n"
        f"cpu cores\t: 4\nflags\t\t: {flags}\n\n" for i in range(8)))
    cache = "sys/devices/system/cpu/cpu0/cache"
    for i, (level, kind, size) in enumerate([(1, "Data", "32K"), (1, "Instruction", "32K"), (2, "Unified", "1024K"),
                                             (3, "Unified", "16384K")]):
        write(root, f"{cache}/index{i}/level", f"{level}\n")
        write(root, f"{cache}/index{i}/type", f"{kind}\n")
        write(root, f"{cache}/index{i}/size", f"{size}\n")
    if max_khz:
        write(root, "sys/devices/system/cpu/cpu0/cpufreq/cpuinfo_max_freq", max_khz + "\n")
    write(root, "proc/meminfo", "MemTotal:       32768000 kB\nMemFree:        30000000 kB\n")  # 33.6 GB
    return root
