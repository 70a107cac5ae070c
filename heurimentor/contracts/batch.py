"""The split of the global batch over device pools and ranks (heterogeneous data parallelism).

One function, two callers: the operator shows each pool's rows in ``.status.pools[].batchShare``;
every trainer rank computes its own rows after each rendezvous from the (pool, relative
throughput) all ranks gathered. The inputs are static facts of the job (which pool a rank is in,
how fast that pool is), so a worker whose mounted ConfigMap is older than its peers' still agrees
with them: nothing in the split depends on how many replicas the config was rendered for.

A pool's rows are proportional to ``ranks x relative_throughput``, rounded by largest remainder
(ties broken by pool name, so every caller gets the same answer whatever order it lists pools in)
so the rows add up to the global batch exactly; every rank gets at least one sequence. Inside a
pool the rows are spread evenly over its ranks, lower ranks taking the remainder.
"""

from __future__ import annotations

import math
from collections.abc import Sequence


class BatchSplitError(ValueError):
    """A global batch that cannot be split over these ranks; the message names the numbers."""


def split_global_batch(global_batch: int, pools: Sequence[tuple[str, int, float]], ranks_per_replica: int = 1) -> dict[str, int]:
    """Rows of the global batch per pool; ``pools`` is ``[(name, replicas, relative_throughput)]``.

    A pool with no replicas gets 0 rows. When the global batch is barely above the rank count the
    per-rank minimum wins over proportionality (the CRD rejects batches smaller than the ranks).
    """
    active = sorted(((name, n * ranks_per_replica, t) for name, n, t in pools if n > 0), key=lambda a: a[0])
    rows = {name: 0 for name, _, _ in pools}
    if not active:
        return rows
    weight = sum(k * t for _, k, t in active)
    exact = {name: global_batch * k * t / weight for name, k, t in active}
    floors = {name: max(math.floor(exact[name]), k) for name, k, _ in active}
    leftover = global_batch - sum(floors.values())
    # Hand out what rounding left, largest fractional part first; take back from the largest if
    # the per-rank minimum overshot.
    order = sorted(active, key=lambda a: exact[a[0]] - math.floor(exact[a[0]]), reverse=True)
    i = 0
    while leftover > 0:
        floors[order[i % len(order)][0]] += 1
        leftover -= 1
        i += 1
    while leftover < 0:
        name, k, _ = max(active, key=lambda a: floors[a[0]] - a[1])
        if floors[name] <= k:
            break  # every rank already has one sequence
        floors[name] -= 1
        leftover += 1
    rows.update(floors)
    return rows


def pool_throughputs(ranks: Sequence[tuple[str, float]]) -> tuple[dict[str, float], dict[str, list[float]]]:
    """Each pool's throughput as its lowest rank states it, and the pools whose ranks disagree.

    Ranks of one pool disagree only while a changed spec reaches their pods at different times;
    taking the lowest rank's value keeps every rank on the same split meanwhile.
    """
    chosen: dict[str, float] = {}
    seen: dict[str, list[float]] = {}
    for pool, throughput in ranks:
        chosen.setdefault(pool, float(throughput))
        if float(throughput) not in seen.setdefault(pool, []):
            seen[pool].append(float(throughput))
    return chosen, {pool: values for pool, values in seen.items() if len(values) > 1}


def rows_per_rank(global_batch: int, ranks: Sequence[tuple[str, float]], *, micro_batch: int = 1) -> list[int]:
    """Rows of the global batch for each rank; ``ranks[r]`` is rank r's (pool, relative_throughput).

    Every rank's rows must be a positive multiple of ``micro_batch``: raises BatchSplitError
    naming the rank otherwise.
    """
    if not ranks:
        raise BatchSplitError("no ranks to split the global batch over")
    throughput, _ = pool_throughputs(ranks)
    for pool, value in throughput.items():
        if not value > 0:
            raise BatchSplitError(f"pool {pool!r}: relative_throughput must be > 0, got {value}")
    members: dict[str, list[int]] = {}
    for r, (pool, _) in enumerate(ranks):
        members.setdefault(pool, []).append(r)
    pool_rows = split_global_batch(global_batch, [(pool, len(rs), throughput[pool]) for pool, rs in members.items()])
    counts = [0] * len(ranks)
    for pool, rs in members.items():
        for j, r in enumerate(rs):
            counts[r] = pool_rows[pool] // len(rs) + (j < pool_rows[pool] % len(rs))
    for r, rows in enumerate(counts):
        if rows == 0 or rows % micro_batch:
            raise BatchSplitError(
                f"global_batch={global_batch} cannot be split into micro batches of micro_batch={micro_batch} "
                f"over world_size={len(ranks)} (rank {r} of pool {ranks[r][0]!r} would get {rows} sequences); "
                f"global_batch must be a multiple of world_size x micro_batch"
            )
    return counts


def describe_split(ranks: Sequence[tuple[str, float]], counts: Sequence[int]) -> dict[str, dict[str, float | int]]:
    """{pool: {ranks, rows, relative_throughput}}: the effective split, as rank 0 reports it."""
    throughput, _ = pool_throughputs(ranks)
    out: dict[str, dict[str, float | int]] = {}
    for (pool, _), rows in zip(ranks, counts):
        entry = out.setdefault(pool, {"ranks": 0, "rows": 0, "relative_throughput": throughput[pool]})
        entry["ranks"] += 1
        entry["rows"] += rows
    return out
