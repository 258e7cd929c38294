#!/usr/bin/env python3
"""OpenDP (Polars API) reference for the Candor DP benchmark.

    python opendp_ref.py --csv FILE --epsilon 1.0 --delta 1e-6 --max-groups 4 \
        --lo 0 --hi 50 --runs N --out OUT.json [--truncation exact|literal|declared]

Query: group by (category, age_band); per released group dp.len() (rows after truncating
to one row per subject and group == distinct subjects) and the DP sum of value clamped
per row to [lo, hi]. Privacy unit = subject (identifier column); partition keys are private:
OpenDP releases only groups whose noisy len passes a threshold it derives from delta.

Used the way OpenDP's "Identifier Truncation" guide shows
(docs/source/getting-started/tabular-data/identifier-truncation.rst in opendp/opendp):
Context.compositor(privacy_unit=dp.unit_of(contributions=1, identifier=...), margins=[...]),
then context.query().truncate_per_group(1, by=keys).truncate_num_groups(k, by=keys)
.group_by(keys).agg(dp.len(), pl.col(v).fill_null(0).dp.sum((lo, hi))).release().collect().

Two defects of opendp 0.16.0 (see README.md) shape --truncation:
  * truncate_num_groups(k) filters `dense_rank < k` with ranks starting at 1, so it keeps
    only k-1 groups per subject, while the privacy analysis (Rust) assumes k groups;
  * its default keep="sample" fails at release with polars' "multiple fields with name
    'category' found", so keep="first" (keeps the groups with the smallest keys) is used.
--truncation exact (default): truncate_num_groups(k+1, keep="first") -> keeps exactly k
    groups per subject; OpenDP accounts for k+1 groups (conservative: more noise than needed).
--truncation literal: truncate_num_groups(k, keep="first") -> keeps k-1, accounts for k.
--truncation declared: a uniformly random sample of k groups per subject is taken with
    plain polars (timed as part of the run) and the bound is declared in the privacy unit
    (dp.polars.Bound(by=keys, num_groups=k, per_group=1)); accounts exactly k.
"""
import time
from importlib.metadata import version

import opendp.prelude as dp
import polars as pl
from opendp.accuracy import summarize_polars_measurement

from dpref_common import int_bound, log, parse_args, write_result

dp.enable_features("contrib")

OPENDP_VERSION = version("opendp")
KEYS = ["category", "age_band"]
# Public, data-independent upper bound on the rows in any group (OpenDP requires a
# max_length margin for grouped sums; the docs suggest a loose population-size bound).
MAX_GROUP_LENGTH = 1_000_000_000


def load(path: str) -> pl.DataFrame:
    return pl.read_csv(path, schema={"subject": pl.Int64, "category": pl.Utf8,
                                     "age_band": pl.Utf8, "value": pl.Int64})


def build_query(df: pl.DataFrame, a, mode: str, lo: int, hi: int, seed: int):
    k = a.max_groups
    if mode == "declared":
        # Contribution bounding done here, outside OpenDP: one row per (subject, group),
        # then a uniformly random set of k groups per subject. Each subject's output rows
        # depend only on its own rows, so declaring the bound in the privacy unit is sound.
        df = (df.lazy()
              .unique(subset=["subject", *KEYS], keep="any")
              .filter(pl.int_range(pl.len()).shuffle(seed=seed).over("subject") < k)
              .collect())
        # Rows now stand for (subject, group) pairs: a subject has at most k rows in
        # total, at most 1 per group, in at most k groups.
        unit = dp.unit_of(contributions=[
            dp.polars.Bound(per_group=k),
            dp.polars.Bound(by=KEYS, per_group=1, num_groups=k),
        ])
    else:
        unit = dp.unit_of(contributions=1, identifier="subject")

    context = dp.Context.compositor(
        data=df.lazy(),
        privacy_unit=unit,
        privacy_loss=dp.loss_of(epsilon=a.epsilon, delta=a.delta),
        split_evenly_over=1,
        margins=[dp.polars.Margin(by=KEYS, max_length=MAX_GROUP_LENGTH)],
    )
    q = context.query()
    if mode == "exact":
        q = q.truncate_per_group(1, by=KEYS).truncate_num_groups(k + 1, by=KEYS, keep="first")
    elif mode == "literal":
        q = q.truncate_per_group(1, by=KEYS).truncate_num_groups(k, by=KEYS, keep="first")
    return q.group_by(KEYS).agg(
        dp.len(signed=True),
        pl.col("value").fill_null(0).dp.sum((lo, hi)),
    )


def main():
    import argparse
    import sys

    # extra option, not part of the shared CLI
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--truncation", choices=["exact", "literal", "declared"], default="exact")
    extra, rest = pre.parse_known_args()
    sys.argv = [sys.argv[0], *rest]
    a = parse_args(__doc__.splitlines()[1])
    lo, hi = int_bound(a.lo, "lo"), int_bound(a.hi, "hi")

    t0 = time.perf_counter()
    df = load(a.csv)
    load_s = time.perf_counter() - t0
    log(f"opendp {OPENDP_VERSION}: loaded {df.height} rows in {load_s:.2f}s")

    # Noise scales / threshold chosen by OpenDP, for the record (not timed; releases
    # nothing). resolve() is OpenDP's search for the noise scale and threshold that meet
    # (epsilon, delta); it does not touch the data and is part of every run's "seconds".
    q0 = build_query(df, a, extra.truncation, lo, hi, seed=0)
    t = time.perf_counter()
    measurement = q0.resolve()
    resolve_s = time.perf_counter() - t
    mechanisms = summarize_polars_measurement(measurement).to_dicts()

    runs = []
    for i in range(a.runs):
        t = time.perf_counter()
        q = build_query(df, a, extra.truncation, lo, hi, seed=None)
        out = q.release().collect()
        secs = time.perf_counter() - t
        groups = [{"category": r["category"], "age_band": r["age_band"],
                   "count": float(r["len"]), "sum": float(r["value"])}
                  for r in out.sort(KEYS).iter_rows(named=True)]
        runs.append({"seconds": secs, "load_seconds": load_s, "groups": groups})
        log(f"opendp run {i + 1}/{a.runs}: {secs:.2f}s, {len(groups)} groups released")

    k = a.max_groups
    write_result(a.out, {
        "library": "opendp",
        "version": OPENDP_VERSION,
        "params": {"epsilon": a.epsilon, "delta": a.delta, "max_groups": k,
                   "lo": a.lo, "hi": a.hi, "rows": df.height},
        "truncation": {
            "mode": extra.truncation,
            "groups_kept_per_subject": k - 1 if extra.truncation == "literal" else k,
            "groups_accounted_per_subject": k + 1 if extra.truncation == "exact" else k,
        },
        # per-aggregate noise scale, and the len threshold for partition selection
        "mechanisms": mechanisms,
        "resolve_seconds": resolve_s,
        "runs": runs,
    })


if __name__ == "__main__":
    main()
