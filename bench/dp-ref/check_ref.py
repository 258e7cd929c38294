#!/usr/bin/env python3
"""Sanity check of a *_ref.py output against the exact answer (for testing this directory).

    python check_ref.py --csv FILE --result OUT.json --max-groups 4 --lo 0 --hi 50

Prints, per run: released vs true groups, RMSE of counts and sums over released groups
(vs the exact, untruncated answer, and vs the expected answer after uniformly random
bounding to k groups per subject, i.e. the noise alone), and the sum of released counts next to
sum_subjects(min(groups, k)) and the row total, which shows whether contributions were
bounded to k groups per subject.
"""
import argparse
import json
import math

import polars as pl


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--csv", required=True)
    ap.add_argument("--result", required=True)
    ap.add_argument("--max-groups", type=int, required=True)
    ap.add_argument("--lo", type=float, required=True)
    ap.add_argument("--hi", type=float, required=True)
    a = ap.parse_args()

    df = pl.read_csv(a.csv, schema={"subject": pl.Int64, "category": pl.Utf8,
                                    "age_band": pl.Utf8, "value": pl.Int64})
    truth = (df.group_by("category", "age_band")
             .agg(pl.col("subject").n_unique().alias("true_count"),
                  pl.col("value").clip(a.lo, a.hi).sum().cast(pl.Float64).alias("true_sum")))
    per_subject = df.group_by("subject").agg(pl.struct("category", "age_band").n_unique().alias("g"))
    # Expected answer after uniform random bounding to k groups per subject: a subject in
    # n groups stays in each of them with probability min(1, k/n). RMSE against this
    # isolates the noise from the bias of the bounding (all of which RMSE vs exact includes).
    p = (pl.lit(a.max_groups, pl.Float64) / pl.col("g")).clip(upper_bound=1.0)
    expected = (df.join(per_subject, on="subject")
                .group_by("category", "age_band")
                .agg(p.sum().alias("exp_count"),
                     (p * pl.col("value").clip(a.lo, a.hi)).sum().alias("exp_sum")))
    truth = truth.join(expected, on=["category", "age_band"])
    bounded_total = per_subject.select(pl.col("g").clip(upper_bound=a.max_groups).sum()).item()
    res = json.load(open(a.result))
    print(f"{res['library']} {res['version']}: {df.height} rows, {per_subject.height} subjects, "
          f"{truth.height} true groups; sum_subjects min(groups,{a.max_groups}) = {bounded_total}")
    for i, run in enumerate(res["runs"]):
        rel = pl.DataFrame(run["groups"], schema={"category": pl.Utf8, "age_band": pl.Utf8,
                                                  "count": pl.Float64, "sum": pl.Float64})
        j = rel.join(truth, on=["category", "age_band"], how="left")
        spurious = j.filter(pl.col("true_count").is_null()).height
        j = j.drop_nulls("true_count")
        rmse_c = math.sqrt(j.select(((pl.col("count") - pl.col("true_count")) ** 2).mean()).item())
        rmse_s = math.sqrt(j.select(((pl.col("sum") - pl.col("true_sum")) ** 2).mean()).item())
        rmse_ce = math.sqrt(j.select(((pl.col("count") - pl.col("exp_count")) ** 2).mean()).item())
        rmse_se = math.sqrt(j.select(((pl.col("sum") - pl.col("exp_sum")) ** 2).mean()).item())
        small = truth.filter(pl.col("true_count") < 20)
        small_rel = small.join(rel, on=["category", "age_band"], how="inner").height
        print(f"  run {i + 1}: {run['seconds']:.2f}s, released {rel.height}/{truth.height} groups "
              f"(spurious {spurious}, tiny groups (<20 subjects) released {small_rel}/{small.height}); "
              f"RMSE vs exact: count {rmse_c:.1f}, sum {rmse_s:.1f}; "
              f"vs E[random {a.max_groups}-group bounding]: count {rmse_ce:.1f}, sum {rmse_se:.1f}; "
              f"released count total {rel['count'].sum():.0f} vs bounded {bounded_total} vs rows {df.height}")


if __name__ == "__main__":
    main()
