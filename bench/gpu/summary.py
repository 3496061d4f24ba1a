"""The targets of issue #13 against what bench/gpu/run.sh measured in one run.

    python bench/gpu/summary.py OUT_DIR

Reads llama-bench.md, load-*.json, probe.json, bare-load.txt, ragserve-start.txt,
startup.txt (medians, when STARTUPS ran), ragserve-rss*.txt and vram.json from OUT_DIR;
prints one line per target with the baseline of the same run, the ratio and whether it is
met. Missing inputs print as such.
"""

from __future__ import annotations

import json
import re
import sys
from pathlib import Path


def read(path: Path) -> str:
    return path.read_text() if path.exists() else ""


def bench_rates(text: str) -> dict[tuple[str, str], float]:
    """{(fa, test): t/s} from llama-bench's markdown table."""
    out = {}
    for line in text.splitlines():
        cells = [c.strip() for c in line.strip().strip("|").split("|")]
        if len(cells) < 4 or not re.match(r"^[\d.]+ ± [\d.]+$", cells[-1]):
            continue
        out[(cells[-3], cells[-2])] = float(cells[-1].split()[0])
    return out


def levels(path: Path) -> dict[int, dict]:
    if not path.exists():
        return {}
    return {lv["concurrency"]: lv for lv in json.loads(path.read_text())}


def number(pattern: str, text: str) -> float | None:
    m = re.search(pattern, text)
    return float(m.group(1)) if m else None


def main() -> None:
    out = Path(sys.argv[1])
    rows: list[tuple[str, str, str, str, str]] = []

    def row(what: str, value: float | None, base: float | None, unit: str, ok) -> None:
        if value is None or base is None:
            rows.append((what, "missing", "", "", ""))
            return
        ratio = value / base if base else float("nan")
        rows.append(
            (what, f"{value:.3g} {unit}", f"{base:.3g} {unit}", f"{ratio:.2f}x", ok(value, ratio))
        )

    def met(flag: bool) -> str:
        return "met" if flag else "MISSED"

    bench = bench_rates(read(out / "llama-bench.md"))
    probe = json.loads(read(out / "probe.json") or "{}")
    tg = bench.get(("1", "tg128"))
    row(
        "single stream decode vs llama-bench tg128 (>= 0.9x)",
        probe.get("decode_tok_s"),
        tg,
        "tok/s",
        lambda v, r: met(r >= 0.9),
    )
    ls, rs = levels(out / "load-llama-server.json"), levels(out / "load-ragserve.json")
    for c in sorted(set(ls) & set(rs)):
        row(
            f"aggregate tok/s at {c} clients vs llama-server -np 8 (>= 1.0x at 8, 16)",
            rs[c]["aggregate_tok_s"],
            ls[c]["aggregate_tok_s"],
            "tok/s",
            lambda v, r, c=c: met(r >= 1.0) if c >= 8 else "-",
        )
        row(
            f"TTFT p95 at {c} clients vs llama-server (no worse)",
            rs[c]["ttft_p95"],
            ls[c]["ttft_p95"],
            "s",
            lambda v, r: met(r <= 1.0),
        )
        fails = rs[c]["failed"] + rs[c]["short"]
        rows.append(
            (f"ragserve failed or short at {c} clients", str(fails), "", "", met(fails == 0))
        )
    rag = probe.get("rag_ttft_p50_s")
    ref = ls.get(1, {}).get("ttft_p50")
    row(
        "RAG request TTFT, 1 client, retrieval included (<= 0.2 s) vs llama-server c=1 TTFT",
        rag,
        ref,
        "s",
        lambda v, r: met(v <= 0.2),
    )
    for key, label in (("turns_rag", "with RAG"), ("turns_norag", "without RAG")):
        pairs = probe.get(key) or []
        if pairs:
            first = sorted(p["first_ttft_s"] for p in pairs)[len(pairs) // 2]
            second = sorted(p["second_ttft_s"] for p in pairs)[len(pairs) // 2]
            row(
                f"second turn TTFT vs first, 3k history, {label} (<= 0.25x)",
                second,
                first,
                "s",
                lambda v, r: met(r <= 0.25),
            )
    bare = number(r"BARE_LOAD_S=([\d.]+)", read(out / "bare-load.txt"))
    ready = number(r"READY_S=([\d.]+)", read(out / "ragserve-start.txt"))
    rounds = read(out / "startup.txt")  # STARTUPS=N: medians of N alternating rounds
    many = number(r"STARTUP_BARE_S=([\d.]+)", rounds), number(r"STARTUP_READY_S=([\d.]+)", rounds)
    if None not in many:
        bare, ready = many
    row(
        "start -> /health/ready vs bare Llama() load, process start included (<= 1.2x)"
        + (" [medians]" if None not in many else ""),
        ready,
        bare,
        "s",
        lambda v, r: met(r <= 1.2),
    )
    live = number(r"/health 200 after ([\d.]+) s", read(out / "ragserve-start.txt"))
    rows.append(("start -> /health", f"{live} s" if live else "missing", "", "", ""))
    rss = read(out / "ragserve-rss.txt")
    top = number(r"largest while serving (\d+) MiB", rss)
    loading = number(r"loading included\) (\d+) MiB", rss)
    rows.append(
        (
            "ragserve host RSS while serving, largest sample (<= 2048 MiB)",
            f"{top:.0f} MiB" if top else "missing",
            f"{loading:.0f} MiB" if loading else "",
            "loading",
            met(top <= 2048) if top else "",
        )
    )
    for variant in sorted(out.glob("ragserve-rss-*.txt")):  # VARIANTS, e.g. mmap-off
        name = variant.stem.removeprefix("ragserve-rss-")
        peak = number(r"loading included\) (\d+) MiB", read(variant)) or 0
        what = f"  variant {name}: RSS largest sample, loading included"
        rows.append((what, f"{peak:.0f} MiB", "", "", ""))
    width = max(len(r[0]) for r in rows)
    for r in rows:
        print(f"{r[0]:<{width}}  {r[1]:>14}  {r[2]:>14}  {r[3]:>7}  {r[4]}")
    vram = json.loads(read(out / "vram.json") or "{}")
    for kv, fit in (vram.get("fits") or {}).items():
        print(
            f"VRAM {kv}: {fit['per_slot_mib']:.0f} MiB per 4096-token slot, "
            f"{fit['fixed_mib']:.0f} MiB fixed"
        )


if __name__ == "__main__":
    main()
