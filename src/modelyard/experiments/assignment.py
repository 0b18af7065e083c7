"""Deterministic assignment: a unit's bucket is a hash of salt and unit, the same in every process.

``bucket(salt, unit)`` is the first 8 bytes of SHA-256 over ``salt:unit`` modulo 10,000 (GrowthBook
and Statsig hash the same way, with their own hash functions). A *layout* splits ``[0, 10000)`` into
ranges owned by variants; a unit keeps its variant as long as the layout is unchanged. When weights
change, :func:`relayout` keeps each variant's ranges where it can: a shrinking variant gives up the end
of its ranges, a growing one takes the freed space, so only the share that must move does (for a
50/50 → 60/40 change, exactly 10 % of units). The traffic share uses a second, independent hash
(``salt:traffic:unit``) so that widening the share only adds units.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping, Sequence

BUCKETS = 10_000
Range = tuple[int, int, str]  # [start, end) owned by a variant


def bucket(salt: str, unit: str) -> int:
    digest = hashlib.sha256(f"{salt}:{unit}".encode()).digest()
    return int.from_bytes(digest[:8], "big") % BUCKETS


def in_traffic(salt: str, unit: str, percent: int) -> bool:
    """Whether ``unit`` is among the ``percent`` % of units that enter the experiment."""
    return percent >= 100 or bucket(f"{salt}:traffic", unit) < percent * (BUCKETS // 100)


def layout(weights: Sequence[tuple[str, int]]) -> list[Range]:
    """The first layout: contiguous ranges in variant order, ``weight`` % each."""
    out: list[Range] = []
    start = 0
    for name, weight in weights:
        size = weight * (BUCKETS // 100)
        if size:
            out.append((start, start + size, name))
        start += size
    return out


def relayout(current: Sequence[Range], weights: Mapping[str, int]) -> list[Range]:
    """A layout for ``weights`` that moves the fewest buckets away from ``current``."""
    target = {name: w * (BUCKETS // 100) for name, w in weights.items()}
    kept: list[Range] = []
    owned = dict.fromkeys(target, 0)
    for start, end, name in sorted(current):
        room = target.get(name, 0) - owned.get(name, 0)
        if room <= 0:
            continue
        take = min(room, end - start)
        kept.append((start, start + take, name))
        owned[name] += take
    free: list[tuple[int, int]] = []
    cursor = 0
    for start, end, _ in sorted(kept):
        if start > cursor:
            free.append((cursor, start))
        cursor = end
    if cursor < BUCKETS:
        free.append((cursor, BUCKETS))
    out = list(kept)
    for name in weights:
        need = target[name] - owned[name]
        while need > 0:
            start, end = free.pop(0)
            take = min(need, end - start)
            out.append((start, start + take, name))
            if start + take < end:
                free.insert(0, (start + take, end))
            need -= take
    return _merge(sorted(out))


def _merge(ranges: list[Range]) -> list[Range]:
    out: list[Range] = []
    for r in ranges:
        if out and out[-1][2] == r[2] and out[-1][1] == r[0]:
            out[-1] = (out[-1][0], r[1], r[2])
        else:
            out.append(r)
    return out


def variant_of(ranges: Sequence[Range], b: int) -> str | None:
    for start, end, name in ranges:
        if start <= b < end:
            return name
    return None


def assign(salt: str, unit: str, ranges: Sequence[Range], traffic_percent: int) -> str | None:
    """The variant of ``unit``, or None when it is outside the traffic share."""
    if not in_traffic(salt, unit, traffic_percent):
        return None
    return variant_of(ranges, bucket(salt, unit))
