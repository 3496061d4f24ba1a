"""A second Responses turn: TTFT with `previous_response_id` (the stored conversation
continued) against the first turn; a second turn sent statelessly with the whole history
(`store: false`, Codex's way); and the same conversation through chat completions; in one
run on this machine. Each of the three is a conversation of its own (its own first turn).

    python bench/responses_bench.py [--repeat 5] [--model PATH.gguf] [--instructions 1500]

Each run starts a new conversation (its first turn is read from scratch): --instructions
words of agent instructions, a question, an answer of up to 32 tokens; then a short
follow-up, timed to its first text delta. One slot (--parallel 1). Medians of --repeat.
"""

from __future__ import annotations

import argparse
import json
import tempfile
import time
from pathlib import Path

import httpx
from _common import median, report
from liveserver import LiveServer, make_settings

from ragserve.engine import LlamaEngine
from ragserve.server.app import create_app
from ragserve.server.settings import bundled_model_path

MODEL = "smollm2-norag"


def responses_ttft(client: httpx.Client, body: dict) -> tuple[float, dict]:
    """Seconds to the first text delta of a streamed response, and the final response."""
    started = time.perf_counter()
    first, final = None, {}
    with client.stream("POST", "/v1/responses", json={**body, "stream": True}) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: "):
                continue
            event = json.loads(line[6:])
            if first is None and event["type"] == "response.output_text.delta":
                first = time.perf_counter()
            if event["type"] in ("response.completed", "response.incomplete"):
                final = event["response"]
    assert first is not None and final
    return first - started, final


def chat_ttft(client: httpx.Client, body: dict) -> tuple[float, dict]:
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first, text, usage = None, [], {}
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            usage = data.get("usage") or usage
            delta = ((data.get("choices") or [{}])[0]).get("delta") or {}
            if delta.get("content"):
                first = first or time.perf_counter()
                text.append(delta["content"])
    assert first is not None
    return first - started, {"text": "".join(text), "usage": usage}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--instructions", type=int, default=1500, help="words")
    ap.add_argument("--n-ctx", type=int, default=4096)
    args = ap.parse_args()
    engine = LlamaEngine(
        args.model or bundled_model_path(), model_id="m", n_ctx=args.n_ctx, parallel=1
    )
    app = create_app(
        make_settings(
            Path("/nonexistent"), data_dir=Path(tempfile.mkdtemp(prefix="responses-bench-"))
        ),
        engine=engine,
    )
    common = {"model": MODEL, "temperature": 0, "max_output_tokens": 32}
    first_turn, by_id, stateless, chat2 = [], [], [], []
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=300) as client:
        for _ in range(600):
            if client.get("/health/ready").status_code == 200:
                break
            time.sleep(0.1)
        for r in range(args.repeat):
            rules = f"Conversation {r}. " + "Follow the project's rules carefully. " * (
                args.instructions // 5
            )
            question = {"role": "user", "content": "Which file holds the entry point?"}
            follow = {"role": "user", "content": "And the tests?"}
            t1, resp1 = responses_ttft(
                client, {**common, "instructions": rules, "input": [question]}
            )
            first_turn.append(t1)
            t2, resp2 = responses_ttft(
                client,
                {
                    **common,
                    "instructions": rules,
                    "previous_response_id": resp1["id"],
                    "input": [follow],
                },
            )
            by_id.append(t2)
            # Codex's way, a conversation of its own: store false, the whole history again
            codex = {**common, "instructions": rules + " (stateless)", "store": False}
            _, alone = responses_ttft(client, {**codex, "input": [question]})
            history = [question, *alone["output"], follow]
            t3, resp3 = responses_ttft(client, {**codex, "input": history})
            stateless.append(t3)
            # the same conversation through chat completions (its own first turn first)
            messages = [{"role": "system", "content": rules + " (chat)"}, question]
            _, answer = chat_ttft(
                client,
                {
                    **{k: v for k, v in common.items() if k != "max_output_tokens"},
                    "max_tokens": 32,
                    "messages": messages,
                },
            )
            messages += [{"role": "assistant", "content": answer["text"]}, follow]
            t4, answer2 = chat_ttft(
                client, {"model": MODEL, "temperature": 0, "max_tokens": 32, "messages": messages}
            )
            chat2.append(t4)
            print(
                f"run {r + 1}: turn 1 {resp1['usage']['input_tokens']} tokens, "
                f"TTFT {t1 * 1000:.0f} ms; turn 2 by id: cached "
                f"{resp2['usage']['input_tokens_details']['cached_tokens']}/"
                f"{resp2['usage']['input_tokens']}, {t2 * 1000:.0f} ms; stateless: cached "
                f"{resp3['usage']['input_tokens_details']['cached_tokens']}, {t3 * 1000:.0f} ms; "
                f"chat: cached {answer2['usage']['prompt_tokens_details']['cached_tokens']}, "
                f"{t4 * 1000:.0f} ms",
                flush=True,
            )
    engine.close()
    print()
    report(
        "turn 2, previous_response_id: TTFT",
        median(by_id) * 1000,
        median(first_turn) * 1000,
        "ms",
        "(baseline: turn 1)",
    )
    report(
        "turn 2, store:false + full history: TTFT",
        median(stateless) * 1000,
        median(first_turn) * 1000,
        "ms",
        "(baseline: turn 1)",
    )
    report(
        "turn 2, previous_response_id vs chat",
        median(by_id) * 1000,
        median(chat2) * 1000,
        "ms",
        "(baseline: chat completions turn 2)",
    )


if __name__ == "__main__":
    main()
