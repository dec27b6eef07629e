"""A host's limits on the same CPU: a cgroup's CPU quota on fake trees (cgroup v2, v1, hybrid, containers): read, keyed
into the profile and the timing history, and a stop by it during the timed calls flagged as contention; and boost
switched off or the clock capped, keyed likewise.

The layouts are the kernel's: cgroup v2 ``cpu.max`` ("$MAX $PERIOD", "max" for none; Documentation/admin-guide/
cgroup-v2.rst), v1 ``cpu.cfs_quota_us``/``cpu.cfs_period_us`` (-1 for none; Documentation/scheduler/sched-bwc.rst),
``cpu.stat``'s ``nr_throttled`` with ``throttled_usec`` (v2) or ``throttled_time`` in ns (v1)."""
import pytest

from roofline_kernels import cgroup
from roofline_kernels.calibrate import fingerprint, fingerprint_fields, quota_warning
from roofline_kernels.device import detect, history_dir
from roofline_kernels.region import RegionMonitor
from tests.fakes.host import fake_cpu_tree, write

V2_STAT = "usage_usec 900\nuser_usec 800\nsystem_usec 100\nnr_periods {periods}\nnr_throttled {n}\nthrottled_usec {us}\n"
V1_STAT = "nr_periods {periods}\nnr_throttled {n}\nthrottled_time {ns}\n"


def v2_host(root, limits: dict, own="/ci/job"):
    """A cgroup v2 host: the process in ``own``; ``limits`` maps a cgroup path to its cpu.max."""
    write(root, "proc/self/cgroup", f"0::{own}\n")
    write(root, "sys/fs/cgroup/cgroup.controllers", "cpuset cpu io memory pids\n")
    for path, words in limits.items():
        d = f"sys/fs/cgroup{path}".rstrip("/")
        write(root, f"{d}/cpu.max", words + "\n")
        write(root, f"{d}/cpu.stat", V2_STAT.format(periods=10, n=0, us=0))
    return root


def test_v2_the_smallest_quota_on_the_path_binds(tmp_path):
    """A job's own cgroup without a limit sits under a 2-CPU pod: the pod's quota binds, and its cpu.stat counts the
    stops."""
    v2_host(tmp_path, {"/ci": "200000 100000", "/ci/job": "max 100000", "": "max 100000"})
    q = cgroup.cpu_quota(tmp_path)
    assert q.cpus == 2.0 and "cpu.max: 200000 100000" in q.source
    assert q.stat == str(tmp_path / "sys/fs/cgroup/ci/cpu.stat")
    v2_host(tmp_path, {"/ci": "200000 100000", "/ci/job": "50000 100000"})
    assert cgroup.cpu_quota(tmp_path).cpus == 0.5  # the tighter child binds


def test_v2_in_a_container_reads_its_mounts_root(tmp_path):
    """/proc/self/cgroup names the host's path, which the container's mount lacks: its mount root is its cgroup."""
    write(tmp_path, "proc/self/cgroup", "0::/kubepods/burstable/pod1234/abcdef\n")
    write(tmp_path, "sys/fs/cgroup/cgroup.controllers", "cpu memory\n")
    write(tmp_path, "sys/fs/cgroup/cpu.max", "150000 100000\n")
    assert cgroup.cpu_quota(tmp_path).cpus == 1.5


@pytest.mark.parametrize("mount", ["cpu,cpuacct", "cpu"])
def test_v1_quota_and_period(tmp_path, mount):
    write(tmp_path, "proc/self/cgroup", "12:memory:/docker/abc\n4:cpu,cpuacct:/docker/abc\n1:name=systemd:/\n")
    write(tmp_path, f"sys/fs/cgroup/{mount}/cpu.cfs_quota_us", "50000\n")
    write(tmp_path, f"sys/fs/cgroup/{mount}/cpu.cfs_period_us", "100000\n")
    q = cgroup.cpu_quota(tmp_path)
    assert q.cpus == 0.5 and "50000 per 100000 us" in q.source


def test_a_quota_no_smaller_than_the_cpus_binds_nothing(tmp_path):
    """``docker --cpus=$(nproc)`` (or CPUQuota=400% on 4 CPUs) slows nothing: no quota, so no new profile key."""
    v2_host(tmp_path, {"/ci": "400000 100000"})
    assert cgroup.cpu_quota(tmp_path, cpus=4) is None
    assert cgroup.cpu_quota(tmp_path, cpus=8).cpus == 4.0


def test_an_unreadable_cgroup_tree_is_no_quota_not_a_crash(tmp_path, monkeypatch):
    """Detection must not raise where this user may not read the tree (pathlib's is_dir re-raises EACCES)."""
    v2_host(tmp_path, {"/ci": "200000 100000"})

    def denied(*a):
        raise PermissionError(13, "Permission denied", str(tmp_path / "sys/fs/cgroup/ci"))
    monkeypatch.setattr(cgroup, "_ancestry", denied)
    assert cgroup.cpu_quota(tmp_path) is None


@pytest.mark.parametrize("quota, threads, says", [
    (2.0, 4, "torch runs 4 threads under a cgroup CPU quota of 2 CPUs; OMP_NUM_THREADS=2 fits it"),
    (1.5, 2, "OMP_NUM_THREADS=1 fits it"),
    (0.5, 1, "torch runs 1 thread under a cgroup CPU quota of 0.5 CPUs, less than one: even one thread stops for it"),
    (2.0, 2, None), (None, 64, None)])
def test_what_a_quota_smaller_than_the_threads_does(quota, threads, says):
    got = cgroup.overrun(quota, threads)
    assert got == says if says is None or says.startswith("torch") else says in got


@pytest.mark.parametrize("layout", ["v2 max", "v1 -1", "hybrid", "no files"])
def test_no_limit_is_none(tmp_path, layout):
    if layout == "v2 max":
        v2_host(tmp_path, {"/ci/job": "max 100000"})
    elif layout in ("v1 -1", "hybrid"):  # hybrid: cpu on v1, the v2 hierarchy at unified/ with no cpu controller
        write(tmp_path, "proc/self/cgroup", "1:cpu:/\n0::/\n")
        write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_quota_us", "-1\n")
        write(tmp_path, "sys/fs/cgroup/cpu/cpu.cfs_period_us", "100000\n")
        if layout == "hybrid":
            write(tmp_path, "sys/fs/cgroup/unified/cpu.pressure", "some avg10=0.00\n")
            # a decoy where a pure v2 host keeps its cpu.max: without cgroup.controllers there, unified/ is the v2 base
            write(tmp_path, "sys/fs/cgroup/cpu.max", "50000 100000\n")
    else:
        write(tmp_path, "proc/self/cgroup", "0::/\n")
    assert cgroup.cpu_quota(tmp_path) is None


def test_throttle_counters_v1_and_v2(tmp_path):
    v2 = write(tmp_path, "a/cpu.stat", V2_STAT.format(periods=100, n=7, us=35000))
    v1 = write(tmp_path, "b/cpu.stat", V1_STAT.format(periods=100, n=3, ns=12_000_000))
    assert cgroup.throttled(v2) == (7, 0.035)
    assert cgroup.throttled(v1) == (3, 0.012)
    assert cgroup.throttled(tmp_path / "missing/cpu.stat") is None


def _cpu_host(tmp_path, limit: str | None):
    fake_cpu_tree(tmp_path)
    v2_host(tmp_path, {"/ci": limit or "max 100000"})
    return detect(root=tmp_path)


def test_the_quota_keys_the_profile_and_the_history(tmp_path, monkeypatch):
    """A profile calibrated under a 2-CPU limit is not reused under a 1-CPU one, nor its timing history; a host
    without a limit keeps the fingerprint it had before the quota was read (no key at all)."""
    import torch
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    two = _cpu_host(tmp_path / "two", "200000 100000")
    one = _cpu_host(tmp_path / "one", "100000 100000")
    free = _cpu_host(tmp_path / "free", None)
    assert (two.cpu.quota_cpus, one.cpu.quota_cpus, free.cpu.quota_cpus) == (2.0, 1.0, None)
    assert fingerprint_fields(two)["cpu_quota"] == 2.0 and "cpu_quota" not in fingerprint_fields(free)
    assert len({fingerprint(two), fingerprint(one), fingerprint(free)}) == 3
    assert history_dir(two).endswith("-2t-q2") and history_dir(one).endswith("-2t-q1")
    assert history_dir(free).endswith("-2t")


def test_more_threads_than_the_quota_is_warned(tmp_path, monkeypatch):
    import torch
    info = _cpu_host(tmp_path, "150000 100000")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 4)
    assert quota_warning(info).startswith("torch runs 4 threads under a cgroup CPU quota of 1.5 CPUs; "
                                          "OMP_NUM_THREADS=1 fits it (cgroup v2 ")
    monkeypatch.setattr(torch, "get_num_threads", lambda: 1)
    assert quota_warning(info) is None


@pytest.mark.parametrize("stopped, threads", [(0, 4), (4, 4), (0, 2), (4, 2)])
def test_a_stop_by_the_quota_during_the_timed_calls(tmp_path, monkeypatch, stopped, threads):
    """The timed calls that met the quota's stop lasted up to a period longer for no reason of the kernel. With
    torch's threads within the quota a stop is other work in the group: contention. With more threads than the
    quota has CPUs every region stops alike, a standing setting (keyed, warned): said on the record, not contention,
    or such a host's cases never start their history."""
    import torch
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    info = _cpu_host(tmp_path, "200000 100000")
    stat = tmp_path / "sys/fs/cgroup/ci/cpu.stat"
    region = RegionMonitor(info)
    region.start()
    stat.write_text(V2_STAT.format(periods=20, n=stopped, us=stopped * 25000))
    region.stop()
    r = region.result(10)
    stop = "4 period(s), 100.0 ms stopped"
    if not stopped:
        assert r["flags"] == [] and r["settings"] == []
    elif threads > 2:
        assert r["flags"] == [] and r["settings"] == [
            f"stopped by the cgroup's CPU quota during the timed region ({stop}): a standing setting, not contention: "
            "torch runs 4 threads under a cgroup CPU quota of 2 CPUs; OMP_NUM_THREADS=2 fits it"]
    else:
        assert r["settings"] == [] and r["flags"] == [
            f"throttled by the cgroup's CPU quota during the timed region: {stop}, with torch's 2 threads within its "
            "2 CPUs (other work in the group)"]



@pytest.mark.parametrize("files, boost, cap", [
    ({"cpufreq/boost": "0"}, False, None),                      # acpi-cpufreq / amd-pstate, boost off
    ({"cpufreq/boost": "1"}, True, None),
    ({"intel_pstate/no_turbo": "1"}, False, None),              # intel_pstate: turbo off
    ({"cpu0/cpufreq/scaling_max_freq": "2000000", "cpu1/cpufreq/scaling_max_freq": "3500000",
      "cpu1/cpufreq/cpuinfo_max_freq": "3500000"}, None, 2000.0),
    ({"cpu0/cpufreq/scaling_max_freq": "3500000"}, None, None),  # at the hardware's max: no cap
    # a hybrid part uncapped: an E-core tops out at 3.9 GHz, its own max, beside cpu0's 3.5 (here the P-core)
    ({"cpu0/cpufreq/scaling_max_freq": "3500000", "cpu1/cpufreq/scaling_max_freq": "2400000",
      "cpu1/cpufreq/cpuinfo_max_freq": "2400000"}, None, None),
    ({}, None, None)])                                          # a VM shows neither
def test_boost_and_a_clock_cap_key_the_profile(tmp_path, monkeypatch, files, boost, cap):
    """The same CPU with boost off or its clock capped (cpupower frequency-set -u) runs every roof slower: a profile
    calibrated with boost is not reused without it. Keys appear only where set, so a host with boost on, or a VM
    that shows neither, keeps the fingerprint it had."""
    import torch
    monkeypatch.setattr(torch, "get_num_threads", lambda: 2)
    fake_cpu_tree(tmp_path / "plain")  # cpuinfo_max_freq 3.5 GHz, nothing else
    plain = detect(root=tmp_path / "plain")
    fake_cpu_tree(tmp_path / "set")
    for rel, text in files.items():
        write(tmp_path / "set", f"sys/devices/system/cpu/{rel}", text + "\n")
    info = detect(root=tmp_path / "set")
    assert (info.cpu.boost, info.cpu.clock_cap_mhz) == (boost, cap)
    fields = fingerprint_fields(info)
    assert fields.get("cpu_boost") == (False if boost is False else None) and fields.get("cpu_clock_cap_mhz") == cap
    assert (fingerprint(info) == fingerprint(plain)) == (boost is not False and cap is None)
    assert history_dir(info).endswith({(False, None): "-noboost", (None, 2000.0): "-cap2000"}.get((boost, cap), "-2t"))


PSI = "some avg10=0.00 avg60=0.00 avg300=0.00 total={us}\nfull avg10=0.00 avg60=0.00 avg300=0.00 total=0\n"


def test_the_pressure_file_is_the_own_cgroups_else_the_systems(tmp_path):
    """PSI (Documentation/accounting/psi.rst): a process in a cgroup v2 of its own reads that cgroup's cpu.pressure
    (its own tasks' waits); in the root cgroup, or without one, the system's /proc/pressure/cpu; none without PSI."""
    assert cgroup.cpu_pressure_file(tmp_path) is None
    system = write(tmp_path, "proc/pressure/cpu", PSI.format(us=5))
    write(tmp_path, "proc/self/cgroup", "0::/\n")
    assert cgroup.cpu_pressure_file(tmp_path) == system  # no v2 hierarchy mounted: the system's
    # a container with its own cgroup namespace: "0::/" is its mount's root, its own cgroup, not the host's /proc
    write(tmp_path, "sys/fs/cgroup/cgroup.controllers", "cpu memory\n")
    container = write(tmp_path, "sys/fs/cgroup/cpu.pressure", PSI.format(us=6))
    assert cgroup.cpu_pressure_file(tmp_path) == container
    v2_host(tmp_path, {"/ci/job": "max 100000"})
    own = write(tmp_path, "sys/fs/cgroup/ci/job/cpu.pressure", PSI.format(us=7))
    assert cgroup.cpu_pressure_file(tmp_path) == own and cgroup.pressure_some_s(own) == 7e-6


@pytest.mark.parametrize("waited_s, threads, limit, flagged, said", [
    (0.0, 2, None, False, False), (5.0, 2, None, True, False),
    (0.001, 2, None, False, False),            # one daemon's wake-up: under CPU_WAIT_MIN_S, however short the region
    (5.0, 4, "200000 100000", False, True),    # torch's threads overrun the quota: they wait on each other, always
    (5.0, 16, None, False, True)])             # more threads than the host's 8 CPUs: the same, by setting
def test_other_work_that_starts_inside_the_timed_region_is_contention(tmp_path, monkeypatch, waited_s, threads,
                                                                      limit, flagged, said):
    """The busy-CPU snapshot is taken before the timed calls: load that starts while they run was unseen. PSI's
    "some" total says how long tasks waited for a CPU meanwhile; past CPU_WAIT_FRACTION of the region (and
    CPU_WAIT_MIN_S) it is contention. (On this project's 2-core VM a busy process started inside a 1 s region read
    44%, quiet 0.6%.) Where torch's own threads cannot all run at once the waits are theirs, in every region: said
    as a setting, as the quota's stops are, not contention."""
    import torch
    from roofline_kernels.region import CPU_WAIT_FRACTION
    monkeypatch.setattr(torch, "get_num_threads", lambda: threads)
    info = _cpu_host(tmp_path, limit)
    psi = write(tmp_path, "proc/pressure/cpu", PSI.format(us=1_000_000))
    write(tmp_path, "proc/self/cgroup", "0::/\n")  # the root cgroup: the system's pressure
    region = RegionMonitor(info)
    region.start()
    psi.write_text(PSI.format(us=1_000_000 + int(waited_s * 1e6)))
    region.stop()
    r = region.result(10)
    assert (r["cpu_wait_fraction"] > CPU_WAIT_FRACTION) == (waited_s >= 0.001)
    assert bool([f for f in r["flags"] if f.startswith("CPU pressure during the timed region")]) == flagged
    assert bool([n for n in r["settings"] if "waited for a CPU" in n and "a standing setting" in n]) == said
