"""Command line and output format shared by pipelinedp_ref.py and opendp_ref.py."""
import argparse
import json
import os
import sys


def parse_args(description: str) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=description)
    ap.add_argument("--csv", required=True, help="subject,category,age_band,value (with header)")
    ap.add_argument("--epsilon", type=float, required=True, help="total epsilon (counts + sums + selection)")
    ap.add_argument("--delta", type=float, required=True, help="total delta")
    ap.add_argument("--max-groups", type=int, required=True,
                    help="max (category, age_band) groups a subject may contribute to")
    ap.add_argument("--lo", type=float, required=True, help="per-row clamp lower bound of value")
    ap.add_argument("--hi", type=float, required=True, help="per-row clamp upper bound of value")
    ap.add_argument("--runs", type=int, default=1, help="DP computations to run (CSV loaded once)")
    ap.add_argument("--out", required=True, help="output JSON path")
    a = ap.parse_args()
    if a.epsilon <= 0 or not (0 < a.delta < 1) or a.max_groups < 1 or a.lo > a.hi or a.runs < 1:
        ap.error("need epsilon > 0, 0 < delta < 1, max-groups >= 1, lo <= hi, runs >= 1")
    return a


def int_bound(x: float, name: str) -> int:
    if x != int(x):
        raise SystemExit(f"--{name} must be an integer (value is an integer column), got {x}")
    return int(x)


def write_result(path: str, doc: dict) -> None:
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        json.dump(doc, f)
    os.replace(tmp, path)


def log(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)
