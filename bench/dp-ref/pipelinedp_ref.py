#!/usr/bin/env python3
"""PipelineDP reference for the Candor DP benchmark.

    python pipelinedp_ref.py --csv FILE --epsilon 1.0 --delta 1e-6 --max-groups 4 \
        --lo 0 --hi 50 --runs N --out OUT.json

Query: group by (category, age_band); per released group the DP number of distinct
subjects (PRIVACY_ID_COUNT) and the DP sum of value clamped per row to [lo, hi] (SUM).
Privacy unit = subject; each subject is bounded to max-groups partitions and one
contribution per partition; partitions are NOT public (private partition selection).

Used exactly as PipelineDP's own example examples/movie_view_ratings/run_without_frameworks.py:
LocalBackend + NaiveBudgetAccountant(total_epsilon, total_delta) + DPEngine.aggregate(...)
with AggregateParams and DataExtractors, public_partitions=None, then compute_budgets()
and list(result). A fresh accountant/engine per run (compute_budgets may be called once).
"""
import time

import polars as pl
import pipeline_dp

from dpref_common import log, parse_args, write_result


def load(path: str) -> list:
    """CSV -> list of (subject, category, age_band, value) tuples (LocalBackend's input form)."""
    df = pl.read_csv(path, schema={"subject": pl.Int64, "category": pl.Utf8,
                                   "age_band": pl.Utf8, "value": pl.Int64})
    return df.rows()


def run_once(rows: list, a) -> list:
    backend = pipeline_dp.LocalBackend()
    accountant = pipeline_dp.NaiveBudgetAccountant(total_epsilon=a.epsilon, total_delta=a.delta)
    engine = pipeline_dp.DPEngine(accountant, backend)
    params = pipeline_dp.AggregateParams(
        metrics=[pipeline_dp.Metrics.PRIVACY_ID_COUNT, pipeline_dp.Metrics.SUM],
        noise_kind=pipeline_dp.NoiseKind.LAPLACE,  # the default, stated explicitly
        max_partitions_contributed=a.max_groups,
        max_contributions_per_partition=1,
        min_value=a.lo,
        max_value=a.hi,
        # default strategy, stated explicitly: private partition selection
        partition_selection_strategy=pipeline_dp.PartitionSelectionStrategy.TRUNCATED_GEOMETRIC,
    )
    extractors = pipeline_dp.DataExtractors(
        privacy_id_extractor=lambda r: r[0],
        partition_extractor=lambda r: (r[1], r[2]),
        value_extractor=lambda r: r[3],
    )
    result = engine.aggregate(rows, params, extractors, public_partitions=None)
    accountant.compute_budgets()
    out = list(result)  # the lazy LocalBackend pipeline runs here
    return out, accountant


def main():
    a = parse_args(__doc__.splitlines()[1])
    t0 = time.perf_counter()
    rows = load(a.csv)
    load_s = time.perf_counter() - t0
    log(f"pipeline-dp {pipeline_dp.__version__}: loaded {len(rows)} rows in {load_s:.2f}s")

    runs = []
    budgets = None
    for i in range(a.runs):
        t = time.perf_counter()
        out, accountant = run_once(rows, a)
        secs = time.perf_counter() - t
        groups = [{"category": pk[0], "age_band": pk[1],
                   "count": float(m.privacy_id_count), "sum": float(m.sum)} for pk, m in out]
        groups.sort(key=lambda g: (g["category"], g["age_band"]))
        runs.append({"seconds": secs, "load_seconds": load_s, "groups": groups})
        if budgets is None:
            budgets = [{"mechanism": str(s.mechanism_type.value), "epsilon": s.eps,
                        "delta": s.delta} for s in accountant.mechanism_specs]
        log(f"pipeline-dp run {i + 1}/{a.runs}: {secs:.2f}s, {len(groups)} groups released")

    write_result(a.out, {
        "library": "pipeline-dp",
        "version": pipeline_dp.__version__,
        "params": {"epsilon": a.epsilon, "delta": a.delta, "max_groups": a.max_groups,
                   "lo": a.lo, "hi": a.hi, "rows": len(rows)},
        # how NaiveBudgetAccountant split (epsilon, delta) over the mechanisms
        "budget_split": budgets,
        "runs": runs,
    })


if __name__ == "__main__":
    main()
