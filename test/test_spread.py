"""Spread over seeds: the bootstrap interval on inputs with a known answer, and the ablation
table's intervals, overlap marks and paired differences; latency statistics of repeated
calls (bench/timing.py)."""

from __future__ import annotations

import numpy as np
import pytest

from hmr_ros.bench.spread import Interval, bootstrap_mean, paired_difference
from hmr_ros.bench.timing import Timing, time_calls


def test_bootstrap_interval_of_known_distribution():
    # Resampled means of [0, 0, 0, 0, 10] are 2k with k ~ Binomial(5, 0.2):
    # P(k <= 0) = 0.33, P(k <= 2) = 0.942, P(k <= 3) = 0.993, so the 2.5% and 97.5%
    # quantiles are 0 and 6.
    iv = bootstrap_mean([0.0, 0.0, 0.0, 0.0, 10.0])
    assert (iv.mean, iv.low, iv.high, iv.n, iv.level) == (2.0, 0.0, 6.0, 5, 0.95)
    # Two values: resampled means 0, 0.5, 1 with probabilities 1/4, 1/2, 1/4.
    assert bootstrap_mean([0.0, 1.0]) == Interval(0.5, 0.0, 1.0, 2)
    # A wider level never gives a narrower interval.
    v = np.random.default_rng(3).normal(50.0, 5.0, 8)
    narrow, wide = bootstrap_mean(v, level=0.5), bootstrap_mean(v, level=0.95)
    assert wide.low <= narrow.low < narrow.mean < narrow.high <= wide.high
    assert narrow.mean == pytest.approx(float(v.mean()))


def test_bootstrap_is_reproducible_and_handles_degenerate_input():
    v = [55.1, 57.3, 54.0, 60.2, 56.6]
    assert bootstrap_mean(v) == bootstrap_mean(list(v))  # fixed RNG seed
    assert bootstrap_mean(v, seed=1) != bootstrap_mean(v, seed=2)
    assert bootstrap_mean([4.0, 4.0, 4.0]) == Interval(4.0, 4.0, 4.0, 3)
    assert bootstrap_mean([7.5, float("nan")]) == Interval(7.5, 7.5, 7.5, 1)
    assert bootstrap_mean([]).n == 0 and np.isnan(bootstrap_mean([]).mean)


def test_overlap_and_paired_difference():
    a, b = Interval(55.0, 53.0, 57.0, 5), Interval(58.0, 56.5, 59.5, 5)
    assert a.overlaps(b) and b.overlaps(a)
    assert not a.overlaps(Interval(60.0, 57.5, 62.0, 5))
    # Seeds differ a lot in difficulty, the method gap does not: the unpaired intervals
    # overlap while the paired difference is 2 mm on every seed.
    hard = {1000: 50.0, 1001: 70.0, 1002: 60.0}
    worse = {s: v + 2.0 for s, v in hard.items()}
    assert bootstrap_mean(list(hard.values())).overlaps(bootstrap_mean(list(worse.values())))
    d = paired_difference(worse, hard)
    assert (d.mean, d.low, d.high, d.n) == (2.0, 2.0, 2.0, 3) and d.excludes_zero()
    assert paired_difference({1: 1.0, 2: 3.0}, {2: 1.0, 9: 0.0}) == Interval(2.0, 2.0, 2.0, 1)


def _row(seeds, pa, mpjpe=200.0):
    from hmr_ros.bench.adapt import _aggregate

    return _aggregate([{"seed": s, "mpjpe": mpjpe + p, "pa_mpjpe": p, "pve": 190.0,
                        "accel": 40.0, "detected": 1.0, "steps_per_second": 5.0,
                        "steps": 10, "rollbacks": 1} for s, p in zip(seeds, pa)])


def test_ablation_table_shows_intervals_marks_overlaps_and_per_seed_values():
    from hmr_ros.bench.adapt import format_table

    seeds = [1000, 1001, 1002, 1003, 1004]
    res = {"none": _row(seeds, [110.0, 120.0, 115.0, 125.0, 118.0]),
           "framewise": _row(seeds, [57.0, 59.0, 56.0, 60.0, 58.0]),
           "boa_2nd": _row(seeds, [56.0, 58.5, 55.0, 59.0, 57.0])}
    assert res["framewise"]["per_seed"]["pa_mpjpe"] == [57.0, 59.0, 56.0, 60.0, 58.0]
    assert res["framewise"]["interval"]["pa_mpjpe"]["n"] == 5
    table = format_table({"seeds": seeds, "duration_s": 10.0, "protocol": "before",
                          "results": {"pw3d_like": res}})
    iv = bootstrap_mean([57.0, 59.0, 56.0, 60.0, 58.0])
    # B1's interval overlaps BOA's (marked ~); frozen's does not; BOA is the best.
    assert f"| {iv.mean:.1f} [{iv.low:.1f}, {iv.high:.1f}] ~ |" in table
    frozen = bootstrap_mean([110.0, 120.0, 115.0, 125.0, 118.0])
    assert f"| {frozen.mean:.1f} [{frozen.low:.1f}, {frozen.high:.1f}] | +0.0% |" in table
    boa_line = next(line for line in table.splitlines() if line.startswith("| BOA 2nd"))
    assert "~" not in boa_line and boa_line.endswith("| best |")
    # B1 - BOA per seed: 1, 0.5, 1, 1, 1 -> mean +0.9, interval inside [+0.5, +1.0].
    b1_line = next(line for line in table.splitlines() if line.startswith("| B1"))
    d = paired_difference(dict(zip(seeds, res["framewise"]["per_seed"]["pa_mpjpe"])),
                          dict(zip(seeds, res["boa_2nd"]["per_seed"]["pa_mpjpe"])))
    assert d.mean == pytest.approx(0.9) and 0.5 <= d.low <= d.high <= 1.0
    assert b1_line.endswith(f"| {d.mean:+.1f} [{d.low:+.1f}, {d.high:+.1f}] |")
    assert "| method | 1000 | 1001 | 1002 | 1003 | 1004 |" in table
    assert "| B1: L_F | 57.0 | 59.0 | 56.0 | 60.0 | 58.0 |" in table
    assert "bootstrap interval of the mean over seeds" in table


def test_timing_of_repeated_calls():
    t = Timing.from_seconds([0.004, 0.001, 0.003, 0.002])
    assert (t.n, t.mean_ms, t.p50_ms, t.min_ms) == (4, 2.5, 2.5, 1.0)
    assert t.p95_ms == pytest.approx(3.85)
    calls = []
    t = time_calls(lambda: calls.append(1), repeats=4, warmup=2)
    assert len(calls) == 6 and t.n == 4 and 0 <= t.min_ms <= t.p50_ms <= t.p95_ms
