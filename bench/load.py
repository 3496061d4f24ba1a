"""Concurrent streaming clients against any OpenAI-compatible server.

    python bench/load.py --base-url http://127.0.0.1:8080/v1 --model NAME \\
        [--concurrency 1,4,8,16] [--prompt-tokens 1500] [--max-tokens 128]

Each level keeps `concurrency` streamed chat requests in flight until `rounds x
concurrency` have finished. Every prompt starts with its own ticket number, so no two
share more than the chat template's preamble. Prints per level: TTFT p50/p95,
per-stream decode tok/s (median), aggregate tok/s (all completion tokens / wall time),
decode tok/s (tokens after each stream's first / time any stream was decoding:
the batch's decode throughput), and requests that failed or came back short.
`ignore_eos` asks for exactly --max-tokens (llama.cpp's server and ragserve honour it;
a server that does not will show as "short").
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import NamedTuple

import httpx
from _common import median, percentile

FILLER = (
    "The committee reviewed the maintenance records of the northern river levees, the "
    "pumping stations and the warning sirens, and noted which contractor handled each "
    "repair, what it cost and when the next inspection is due. "
)


class Result(NamedTuple):
    ttft_s: float
    tok_s: float
    first_at: float  # perf_counter of the first and last text, for overlap
    last_at: float
    tokens: int
    prompt_tokens: int
    finish: str | None
    error: str | None


class Level(NamedTuple):
    concurrency: int
    requests: int
    ttft_p50: float
    ttft_p95: float
    stream_tok_s: float
    decode_tok_s: float  # tokens after the first / time any stream was decoding
    aggregate_tok_s: float
    prompt_tokens: int
    short: int
    failed: int


def prompt_text(ticket: int, tokens: int) -> str:
    body = FILLER * max(1, round(tokens / 40))  # the filler is ~40 tokens for most BPEs
    return f"Ticket {ticket}. {body}\nSummarise the records above in one paragraph."


async def one(
    client: httpx.AsyncClient, model: str, ticket: int, prompt_tokens: int, max_tokens: int
) -> Result:
    body = {
        "model": model,
        "messages": [{"role": "user", "content": prompt_text(ticket, prompt_tokens)}],
        "max_tokens": max_tokens,
        "temperature": 0.7,
        "stream": True,
        "stream_options": {"include_usage": True},
        "ignore_eos": True,
    }
    started = time.perf_counter()
    first = last = None
    usage: dict = {}
    finish = None
    pieces = 0  # content deltas: the token count of a server that reports no usage
    try:
        async with client.stream("POST", "/chat/completions", json=body) as resp:
            if resp.status_code != 200:
                await resp.aread()
                return Result(0, 0, 0, 0, 0, 0, None, f"HTTP {resp.status_code}: {resp.text[:200]}")
            async for line in resp.aiter_lines():
                if not line.startswith("data: ") or line == "data: [DONE]":
                    continue
                data = json.loads(line[6:])
                if "error" in data:
                    return Result(0, 0, 0, 0, 0, 0, None, str(data["error"])[:200])
                usage = data.get("usage") or usage
                for choice in data.get("choices") or []:
                    finish = choice.get("finish_reason") or finish
                    if (choice.get("delta") or {}).get("content"):
                        pieces += 1
                        last = time.perf_counter()
                        first = first or last
    except httpx.HTTPError as exc:
        return Result(0, 0, 0, 0, 0, 0, None, f"{type(exc).__name__}: {exc}")
    if first is None or last is None:
        return Result(0, 0, 0, 0, 0, 0, finish, "no tokens")
    tokens = usage.get("completion_tokens") or pieces
    rate = (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0
    prompt = usage.get("prompt_tokens", 0)
    return Result(first - started, rate, first, last, tokens, prompt, finish, None)


async def level(
    base_url: str,
    model: str,
    concurrency: int,
    *,
    rounds: int = 1,
    prompt_tokens: int = 1500,
    max_tokens: int = 128,
    api_key: str | None = None,
    ticket_base: int = 0,
) -> Level:
    headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
    limits = httpx.Limits(max_connections=concurrency + 4)
    total = rounds * concurrency
    gate = asyncio.Semaphore(concurrency)
    async with httpx.AsyncClient(
        base_url=base_url, headers=headers, timeout=1800, limits=limits
    ) as client:

        async def gated(i: int) -> Result:
            async with gate:
                return await one(client, model, ticket_base + i, prompt_tokens, max_tokens)

        started = time.perf_counter()
        results = await asyncio.gather(*(gated(i) for i in range(total)))
        wall = time.perf_counter() - started
    ok = [r for r in results if r.error is None]
    for r in results:
        if r.error:
            print(f"  failed: {r.error}")
    return Level(
        concurrency=concurrency,
        requests=total,
        ttft_p50=percentile([r.ttft_s for r in ok], 50) if ok else float("nan"),
        ttft_p95=percentile([r.ttft_s for r in ok], 95) if ok else float("nan"),
        stream_tok_s=median([r.tok_s for r in ok]) if ok else 0.0,
        decode_tok_s=decode_rate(ok),
        aggregate_tok_s=sum(r.tokens for r in ok) / wall,
        prompt_tokens=round(median([r.prompt_tokens for r in ok])) if ok else 0,
        short=sum(1 for r in ok if r.tokens < max_tokens),
        failed=len(results) - len(ok),
    )


def decode_rate(results: list[Result]) -> float:
    """Tokens after each stream's first, over the time at least one stream was decoding."""
    spans = sorted((r.first_at, r.last_at) for r in results if r.tokens > 1)
    busy, end = 0.0, float("-inf")
    for a, b in spans:
        busy += max(0.0, b - max(a, end))
        end = max(end, b)
    return sum(r.tokens - 1 for r in results if r.tokens > 1) / busy if busy else 0.0


def print_level(lv: Level, single: Level | None = None) -> None:
    def ratio(a: float, b: float | None) -> str:
        return f"{a / b:4.2f}x c=1" if b else "   -    "

    print(
        f"c={lv.concurrency:<3} n={lv.requests:<3} prompt {lv.prompt_tokens:>5} tok | TTFT p50 "
        f"{lv.ttft_p50:7.3f} s p95 {lv.ttft_p95:7.3f} s | per stream {lv.stream_tok_s:6.1f} "
        f"tok/s | decode {lv.decode_tok_s:6.1f} tok/s "
        f"({ratio(lv.decode_tok_s, single.decode_tok_s if single else None)}) | aggregate "
        f"{lv.aggregate_tok_s:6.1f} tok/s "
        f"({ratio(lv.aggregate_tok_s, single.aggregate_tok_s if single else None)}) | "
        f"short {lv.short} failed {lv.failed}",
        flush=True,
    )


async def sweep(base_url: str, model: str, levels: list[int], **kw) -> list[Level]:
    out: list[Level] = []
    for i, c in enumerate(levels):
        lv = await level(base_url, model, c, ticket_base=10_000 * (i + 1), **kw)
        single = next((x for x in out if x.concurrency == 1), None)
        print_level(lv, single)
        out.append(lv)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8000/v1")
    ap.add_argument("--model", required=True)
    ap.add_argument("--api-key", default=None)
    ap.add_argument("--concurrency", default="1,4,8,16")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--prompt-tokens", type=int, default=1500)
    ap.add_argument("--max-tokens", type=int, default=128)
    ap.add_argument("--json", default=None, help="also write the levels to this file")
    args = ap.parse_args()
    levels = [int(c) for c in args.concurrency.split(",")]
    result = asyncio.run(
        sweep(
            args.base_url.rstrip("/"),
            args.model,
            levels,
            rounds=args.rounds,
            prompt_tokens=args.prompt_tokens,
            max_tokens=args.max_tokens,
            api_key=args.api_key,
        )
    )
    if args.json:
        with open(args.json, "w") as f:
            json.dump([lv._asdict() for lv in result], f, indent=1)


if __name__ == "__main__":
    main()
