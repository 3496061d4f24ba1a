"""What one user sees from a running ragserve: decode speed, RAG TTFT, the second turn.

    python bench/gpu/probe.py --base-url http://127.0.0.1:8090 --model m [--json OUT]

  * decode: one stream, /v1/completions, 128 tokens with ignore_eos (3 runs, median);
  * rag: chat questions with retrieval on, each a new conversation about the corpus, TTFT
    at the client (request sent -> first text), so retrieval, prompt assembly and reading
    the ~1.6k-token prompt are all in it; prompt and cached token counts from `usage`;
  * turns: a conversation whose history is ~3k tokens; TTFT of its first request (nothing
    cached) against the next turn's (history + answer + new question), with retrieval on
    (`<model>`: the new turn brings new sources) and off (`<model>-norag`).
Medians over distinct prompts; nothing is sent twice, so no figure is a cache replay.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

import httpx

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from load import FILLER

QUESTIONS = [
    "What was the budget of Project Falcon in 2025, and who manages it?",
    "What does the travel policy say about hotel costs and per-diem allowances?",
    "도로 보수 계약의 계약 기간과 계약 금액은 얼마인가요?",
    "Which risks does the Falcon annual report list for the next year?",
    "출장 규정에서 교통비는 어떻게 정산하나요?",
    "Who signed the road maintenance contract, and what penalties does it set?",
    "How many staff worked on Project Falcon, and what did they deliver?",
]
NEXT = [
    "And how does that compare with the year before?",
    "Summarise that in two sentences for a manager.",
    "Which document says so, and on which page?",
]


def stream(client: httpx.Client, path: str, body: dict) -> dict:
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first = last = None
    usage: dict = {}
    text = []
    with client.stream("POST", path, json=body) as resp:
        if resp.status_code != 200:
            resp.read()
            raise SystemExit(f"{path}: HTTP {resp.status_code}: {resp.text[:300]}")
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            usage = data.get("usage") or usage
            for choice in data.get("choices") or []:
                piece = choice.get("text") or (choice.get("delta") or {}).get("content")
                if piece:
                    last = time.perf_counter()
                    first = first or last
                    text.append(piece)
    if first is None or last is None:
        raise SystemExit(f"{path}: no text came back")
    tokens = usage.get("completion_tokens", 0)
    return {
        "ttft_s": first - started,
        "tok_s": (tokens - 1) / (last - first) if tokens > 1 and last > first else 0.0,
        "tokens": tokens,
        "prompt_tokens": usage.get("prompt_tokens", 0),
        "cached_tokens": (usage.get("prompt_tokens_details") or {}).get("cached_tokens", 0),
        "text": "".join(text),
    }


def history(ticket: int, tokens: int) -> list[dict]:
    """Earlier turns of a conversation, ~`tokens` long, unique to `ticket`."""
    msgs: list[dict] = []
    n = 0
    while n * 48 < tokens:  # the filler is ~48 tokens for Qwen's and SmolLM2's BPE
        msgs.append({"role": "user", "content": f"Note {ticket}.{n}: {FILLER * 4}"})
        msgs.append({"role": "assistant", "content": f"Noted {ticket}.{n}. " + FILLER * 2})
        n += 6  # six fillers per exchange
    return msgs


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--base-url", required=True, help="e.g. http://127.0.0.1:8090")
    ap.add_argument("--model", required=True)
    ap.add_argument("--decode-tokens", type=int, default=128)
    ap.add_argument("--history-tokens", type=int, default=3000)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args()
    m = args.model
    out: dict = {}
    with httpx.Client(base_url=args.base_url.rstrip("/") + "/v1", timeout=600) as client:
        # decode, one stream
        runs = [
            stream(
                client,
                "/completions",
                {
                    "model": m,
                    "prompt": f"Run {i}. The history of river management in Korea:",
                    "max_tokens": args.decode_tokens,
                    "temperature": 0,
                    "ignore_eos": True,
                },
            )
            for i in range(4)
        ][1:]  # the first warms the path
        out["decode_tok_s"] = statistics.median(r["tok_s"] for r in runs)
        print(f"decode, 1 stream: {[round(r['tok_s'], 1) for r in runs]} tok/s", flush=True)

        # RAG, cold: each question once, in a new conversation
        rag = [
            stream(
                client,
                "/chat/completions",
                {
                    "model": m,
                    "messages": [{"role": "user", "content": q}],
                    "max_tokens": 16,
                    "temperature": 0,
                },
            )
            for q in QUESTIONS
        ]
        for q, r in zip(QUESTIONS, rag, strict=True):
            print(
                f"rag TTFT {r['ttft_s'] * 1000:7.1f} ms  prompt {r['prompt_tokens']:>5} tok "
                f"(cached {r['cached_tokens']:>5})  {q[:50]}",
                flush=True,
            )
        out["rag"] = [{k: v for k, v in r.items() if k != "text"} for r in rag]
        out["rag_ttft_p50_s"] = statistics.median(r["ttft_s"] for r in rag)

        # the second turn of a conversation with ~3k tokens of history
        for model_id in (m, f"{m}-norag"):
            pairs = []
            for i, (q, nxt) in enumerate(zip(QUESTIONS, NEXT, strict=False)):
                msgs = history(1000 * (i + 1) + len(model_id), args.history_tokens)
                msgs.append({"role": "user", "content": q})
                body = {"model": model_id, "max_tokens": 24, "temperature": 0}
                first = stream(client, "/chat/completions", {**body, "messages": msgs})
                msgs += [
                    {"role": "assistant", "content": first["text"]},
                    {"role": "user", "content": nxt},
                ]
                second = stream(client, "/chat/completions", {**body, "messages": msgs})
                pairs.append((first, second))
                print(
                    f"{model_id}: turn 1 TTFT {first['ttft_s'] * 1000:7.1f} ms "
                    f"({first['prompt_tokens']} tok, {first['cached_tokens']} cached) | turn 2 "
                    f"{second['ttft_s'] * 1000:7.1f} ms ({second['prompt_tokens']} tok, "
                    f"{second['cached_tokens']} cached) | ratio "
                    f"{second['ttft_s'] / first['ttft_s']:.2f}",
                    flush=True,
                )
            key = "turns_rag" if model_id == m else "turns_norag"
            out[key] = [
                {
                    "first_ttft_s": a["ttft_s"],
                    "second_ttft_s": b["ttft_s"],
                    "first_prompt": a["prompt_tokens"],
                    "second_prompt": b["prompt_tokens"],
                    "second_cached": b["cached_tokens"],
                }
                for a, b in pairs
            ]
            out[key + "_ratio_p50"] = statistics.median(b["ttft_s"] / a["ttft_s"] for a, b in pairs)
    print(
        f"SUMMARY decode {out['decode_tok_s']:.1f} tok/s | RAG TTFT p50 "
        f"{out['rag_ttft_p50_s'] * 1000:.1f} ms | second turn / first: with RAG "
        f"{out['turns_rag_ratio_p50']:.2f}x, without {out['turns_norag_ratio_p50']:.2f}x",
        flush=True,
    )
    if args.json:
        args.json.write_text(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
