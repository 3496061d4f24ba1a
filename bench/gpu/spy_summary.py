"""Where the time went, from a py-spy speedscope file: per thread, the top functions.

    python bench/gpu/spy_summary.py pyspy-ragserve.json [--top 15]

Self time is the share of samples with the function on top of the stack; total time the
share with it anywhere on the stack (each function counted once per sample).
"""

from __future__ import annotations

import argparse
import json
from collections import Counter


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("path")
    ap.add_argument("--top", type=int, default=15)
    args = ap.parse_args()
    with open(args.path) as f:
        data = json.load(f)
    frames = data["shared"]["frames"]

    def name(i: int) -> str:
        fr = frames[i]
        where = (fr.get("file") or "").rsplit("/", 2)[-2:]
        return f"{fr['name']} ({'/'.join(where)}:{fr.get('line', '?')})"

    for prof in data["profiles"]:
        samples, weights = prof["samples"], prof["weights"]
        total = sum(weights)
        if not total:
            continue
        own: Counter[int] = Counter()
        incl: Counter[int] = Counter()
        for stack, w in zip(samples, weights, strict=True):
            if stack:
                own[stack[-1]] += w
            for i in set(stack):
                incl[i] += w
        print(f"== {prof['name']}: {total} samples")
        print("   self:")
        for i, w in own.most_common(args.top):
            print(f"   {100 * w / total:5.1f}%  {name(i)}")
        print("   total:")
        for i, w in incl.most_common(args.top):
            print(f"   {100 * w / total:5.1f}%  {name(i)}")


if __name__ == "__main__":
    main()
