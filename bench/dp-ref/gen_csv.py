#!/usr/bin/env python3
"""Synthetic subjects CSV for testing the DP reference scripts (not used by the Rust bench).

Writes `subject,category,age_band,value`, one row per (subject, category):
  * ~4.5 rows per subject on average (1..=20 distinct categories, a few subjects have all 20),
  * 20 categories cat00..cat19 with Zipf-ish popularity,
  * 6 age bands, one per subject,
  * value = sessions over 30 days, geometric with mean ~12; ~2% heavy users in the hundreds.

    python gen_csv.py --subjects 100000 --seed 1 --out /tmp/s100k.csv [--rare 3]

--rare N adds N extra subjects, each with one row in its own category `rare00`.., so
their groups have a single subject: private partition selection must (almost surely) drop them.
"""
import argparse

import numpy as np
import polars as pl

CATEGORIES = [f"cat{i:02d}" for i in range(20)]
AGE_BANDS = ["18-24", "25-34", "35-44", "45-54", "55-64", "65+"]
AGE_WEIGHTS = np.array([0.14, 0.22, 0.20, 0.17, 0.15, 0.12])


def generate(n: int, seed: int, rare: int = 0) -> pl.DataFrame:
    rng = np.random.default_rng(seed)
    # number of categories per subject: geometric on 1.. (mean ~4.45), capped at 20
    k = np.minimum(rng.geometric(1 / 4.45, size=n), 20)
    k[rng.random(n) < 0.003] = 20  # a few subjects in every category
    # categories without replacement, Zipf-ish popularity: Gumbel top-k trick
    logw = -0.9 * np.log(np.arange(1, 21))
    keys = logw[None, :] + rng.gumbel(size=(n, 20))
    order = np.argsort(-keys, axis=1)
    mask = np.arange(20)[None, :] < k[:, None]
    subj = np.repeat(np.arange(1, n + 1, dtype=np.int64), k)
    cat = order[mask]
    age = rng.choice(len(AGE_BANDS), size=n, p=AGE_WEIGHTS)[subj - 1]
    heavy = (rng.random(n) < 0.02)[subj - 1]
    value = np.where(heavy, rng.geometric(1 / 250, size=len(subj)), rng.geometric(1 / 12, size=len(subj)) - 1)
    df = pl.DataFrame({
        "subject": subj,
        "category": np.array(CATEGORIES)[cat],
        "age_band": np.array(AGE_BANDS)[age],
        "value": value.astype(np.int64),
    })
    if rare:
        df = pl.concat([df, pl.DataFrame({
            "subject": np.arange(n + 1, n + rare + 1, dtype=np.int64),
            "category": [f"rare{i:02d}" for i in range(rare)],
            "age_band": ["25-34"] * rare,
            "value": np.full(rare, 10, dtype=np.int64),
        })])
    return df


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--subjects", type=int, required=True)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--rare", type=int, default=0)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    df = generate(a.subjects, a.seed, a.rare)
    df.write_csv(a.out)
    print(f"wrote {df.height} rows for {a.subjects + a.rare} subjects "
          f"({df.height / (a.subjects + a.rare):.2f} rows/subject) to {a.out}", file=__import__("sys").stderr)


if __name__ == "__main__":
    main()
