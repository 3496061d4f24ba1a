"""The server's question embedding: NumPy BERT (numpy_bert.py) against torch, same model.

    python bench/query_embed_bench.py [--queries 50] [--repeat 5] [--model NAME_OR_DIR]

(--model: e.g. the folder `bench/make_encoder.py --preset e5-base` writes, multilingual-e5-base's
shape.)

Loads each path in a fresh process (the load time includes its imports: what a server
start pays), then embeds the same questions one at a time, alternating the two paths
within each repeat so both see the same moments of a noisy machine. Prints medians and
the ratio, each process's resident memory after the questions, and the largest difference
between the two paths' vectors.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys

from _common import ROOT, median, report

CHILD = """
import json, sys, time
out_stream, sys.stdout = sys.stdout, sys.stderr  # logs go to stderr, results to the pipe
t = time.perf_counter()
from ragserve.retrieval.embedder import SentenceTransformerEmbedder
e = SentenceTransformerEmbedder(sys.argv[2], device="cpu", runtime=sys.argv[1])
e.dim
loaded = time.perf_counter() - t
print(json.dumps({"load_s": loaded}), file=out_stream, flush=True)

def rss_mib():
    for line in open("/proc/self/status"):
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024

for line in sys.stdin:
    qs = json.loads(line)
    out = []
    for q in qs:
        s = time.perf_counter()
        v = e.embed_queries([q])[0]
        out.append([time.perf_counter() - s, v.tolist()])
    print(json.dumps({"rss_mib": rss_mib(), "out": out}), file=out_stream, flush=True)
"""

QUESTIONS = [
    "What was the budget of Project Falcon in 2025, and who manages it?",
    "도로 보수 계약의 계약 기간과 계약 금액은 얼마인가요?",
    "How are hotel costs reimbursed on business trips abroad?",
    "출장 규정에서 교통비는 어떻게 정산하나요?",
    "Which risks does the annual report list for the sensor network?",
]


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--queries", type=int, default=50)
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", default="all-MiniLM-L6-v2", help="a name or a folder")
    args = ap.parse_args()
    qs = [f"{QUESTIONS[i % len(QUESTIONS)]} ({i})" for i in range(args.queries)]
    procs = {
        name: subprocess.Popen(
            [sys.executable, "-c", CHILD, runtime, args.model],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            cwd=ROOT,
        )
        for name, runtime in (("numpy", "auto"), ("torch", "torch"))
    }
    loads = {n: json.loads(p.stdout.readline())["load_s"] for n, p in procs.items()}
    times: dict[str, list[float]] = {n: [] for n in procs}
    vectors: dict[str, list] = {}
    rss: dict[str, float] = {}
    for _ in range(args.repeat):
        for name, p in procs.items():
            p.stdin.write(json.dumps(qs) + "\n")
            p.stdin.flush()
            reply = json.loads(p.stdout.readline())
            out, rss[name] = reply["out"], reply["rss_mib"]
            times[name].append(median([t for t, _ in out]))
            vectors[name] = [v for _, v in out]
    for p in procs.values():
        p.stdin.close()
        p.wait()
    diff = max(
        abs(a - b)
        for va, vb in zip(vectors["numpy"], vectors["torch"], strict=True)
        for a, b in zip(va, vb, strict=True)
    )
    report("load, imports included (s)", loads["numpy"], loads["torch"], "s", "numpy vs torch")
    report(
        "one question, median (ms)",
        1000 * median(times["numpy"]),
        1000 * median(times["torch"]),
        "ms",
        "numpy vs torch",
    )
    report("process RSS after the questions", rss["numpy"], rss["torch"], "MiB", "numpy vs torch")
    print(f"largest difference between the two paths' vector components: {diff:.2e}")


if __name__ == "__main__":
    main()
