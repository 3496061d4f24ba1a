"""hnswlib as built here against another build of it (e.g. the portable one), in one run.

    python bench/hnswlib_bench.py --other PATH/TO/venv/bin/python [--vectors 20000] [--repeat 5]

Each interpreter builds an index of random unit vectors (384 dims, M 32, ef_construction 200,
one thread) and answers 500 queries one at a time (ef 128, k 20); the two alternate, and the
medians are compared. `.ci/hnswlib-wheel.sh` builds the host and portable variants; e.g.
`python3 -m venv /tmp/hv && /tmp/hv/bin/pip install numpy &&
RAGSERVE_WHEEL_CACHE=/tmp/hwc bash .ci/hnswlib-wheel.sh /tmp/hv/bin/python portable`.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import median, report

WORK = """
import json, sys, time, numpy as np, hnswlib
n = int(sys.argv[1])
rng = np.random.default_rng(0)
x = rng.standard_normal((n, 384)).astype(np.float32)
x /= np.linalg.norm(x, axis=1, keepdims=True)
q = x[:500] + 0.1 * rng.standard_normal((500, 384)).astype(np.float32)
t = time.perf_counter()
index = hnswlib.Index(space="ip", dim=384)
index.init_index(n, ef_construction=200, M=32)
index.add_items(x, num_threads=1)
built = time.perf_counter() - t
index.set_ef(128)
t = time.perf_counter()
for v in q:
    index.knn_query(v, k=20, num_threads=1)
print(json.dumps({"build_s": built, "query_us": (time.perf_counter() - t) / len(q) * 1e6}))
"""


def run(python: str, n: int) -> dict:
    out = subprocess.run([python, "-c", WORK, str(n)], capture_output=True, text=True, check=True)
    return json.loads(out.stdout)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--other", required=True, help="a Python whose hnswlib is the baseline")
    ap.add_argument("--vectors", type=int, default=20000)
    ap.add_argument("--repeat", type=int, default=5)
    a = ap.parse_args()
    mine, other = [], []
    for _ in range(a.repeat):
        mine.append(run(sys.executable, a.vectors))
        other.append(run(a.other, a.vectors))
    for key, unit in (("query_us", "us"), ("build_s", "s")):
        report(
            f"hnswlib {key} ({a.vectors} vectors), this vs --other",
            median([m[key] for m in mine]),
            median([o[key] for o in other]),
            unit,
        )


if __name__ == "__main__":
    main()
