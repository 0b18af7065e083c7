"""Assignment: deterministic across processes, balanced, sticky, and a weight change moves only the
units it must."""

from __future__ import annotations

import subprocess
import sys
from collections import Counter

from modelyard.experiments import assignment
from modelyard.experiments.assignment import BUCKETS, assign, layout, relayout, variant_of

UNITS = [f"user-{i}" for i in range(20_000)]


def test_the_bucket_is_the_same_in_another_process() -> None:
    here = [assignment.bucket("salt-1", u) for u in UNITS[:50]]
    code = (
        "from modelyard.experiments.assignment import bucket;"
        "print([bucket('salt-1', f'user-{i}') for i in range(50)])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == str(here)


def test_a_50_50_split_is_balanced_and_the_salt_reshuffles() -> None:
    ranges = layout([("a", 50), ("b", 50)])
    counts = Counter(assign("s", u, ranges, 100) for u in UNITS)
    assert abs(counts["a"] - 10_000) < 400  # 4 standard deviations of a fair binomial (71)
    other = [assign("t", u, ranges, 100) for u in UNITS[:2000]]
    same = sum(
        x == y for x, y in zip(other, (assign("s", u, ranges, 100) for u in UNITS[:2000]), strict=True)
    )
    assert 900 < same < 1100  # independent salts: agreement by chance only


def test_traffic_share_takes_that_share_and_widening_it_only_adds_units() -> None:
    ranges = layout([("a", 50), ("b", 50)])
    at10 = {u for u in UNITS if assign("s", u, ranges, 10) is not None}
    at30 = {u for u in UNITS if assign("s", u, ranges, 30) is not None}
    assert abs(len(at10) - 2000) < 200 and at10 <= at30
    assert all(assign("s", u, ranges, 10) == assign("s", u, ranges, 100) for u in at10)


def test_a_weight_change_moves_only_the_units_that_must_move() -> None:
    old = layout([("a", 50), ("b", 50)])
    new = relayout(old, {"a": 60, "b": 40})
    moved = sum(variant_of(old, b) != variant_of(new, b) for b in range(BUCKETS))
    assert moved == 1000  # 10 % of buckets: the least any layout can move
    assert sum(e - s for s, e, n in new if n == "a") == 6000
    three = relayout(new, {"a": 20, "b": 40, "c": 40})
    moved = sum(variant_of(new, b) != variant_of(three, b) for b in range(BUCKETS))
    assert moved == 4000
    assert all(variant_of(new, b) == "b" for b in range(BUCKETS) if variant_of(three, b) == "b")
    assert relayout(old, {"a": 50, "b": 50}) == old
