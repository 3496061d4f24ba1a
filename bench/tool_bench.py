"""An agent's tool-call round trip: TTFT of the turn after a tool result, with the KV cache
holding the conversation (prefix reuse) against the same turn after another conversation
took the slot (no reuse), in one run on this machine.

    python bench/tool_bench.py [--repeat 5] [--model PATH.gguf] [--tools 12]

Turn 1: a conversation with --tools tool definitions (a realistic IDE-agent prompt), the model
calls one (named tool_choice, so every run does the same work). Turn 2: the call and its
result appended; timed to the first streamed delta. "No reuse" sends an unrelated prompt in
between (one slot: --parallel 1), so turn 2 is read from scratch. Medians of --repeat runs.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import httpx
from _common import median, report
from liveserver import LiveServer, make_settings

from ragserve.engine import LlamaEngine
from ragserve.server.app import create_app
from ragserve.server.settings import bundled_model_path


def tools(n: int) -> list[dict]:
    out = []
    for i in range(n):
        out.append(
            {
                "type": "function",
                "function": {
                    "name": f"tool_{i}",
                    "description": f"Tool number {i}: reads project file {i}, returns its "
                    "contents with line numbers, or an error if the path is outside the project.",
                    "parameters": {
                        "type": "object",
                        "properties": {
                            "path": {"type": "string", "description": "relative path"},
                            "start_line": {"type": "integer"},
                            "end_line": {"type": "integer"},
                        },
                        "required": ["path"],
                    },
                },
            }
        )
    return out


def first_delta(client: httpx.Client, body: dict) -> tuple[float, dict]:
    """Seconds to the first content or tool-call delta, and the usage block."""
    body = {**body, "stream": True, "stream_options": {"include_usage": True}}
    started = time.perf_counter()
    first, usage = None, {}
    with client.stream("POST", "/v1/chat/completions", json=body) as resp:
        resp.raise_for_status()
        for line in resp.iter_lines():
            if not line.startswith("data: ") or line == "data: [DONE]":
                continue
            data = json.loads(line[6:])
            usage = data.get("usage") or usage
            delta = ((data.get("choices") or [{}])[0]).get("delta") or {}
            if first is None and (delta.get("content") or delta.get("tool_calls")):
                first = time.perf_counter()
    assert first is not None
    return first - started, usage


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--repeat", type=int, default=5)
    ap.add_argument("--model", type=Path, default=None)
    ap.add_argument("--tools", type=int, default=12)
    ap.add_argument("--n-ctx", type=int, default=4096)
    args = ap.parse_args()
    engine = LlamaEngine(
        args.model or bundled_model_path(), model_id="m", n_ctx=args.n_ctx, parallel=1
    )
    app = create_app(make_settings(Path("/nonexistent")), engine=engine)
    defs = tools(args.tools)
    ask = [
        {"role": "system", "content": "You are a coding agent. Use the tools to read files."},
        {"role": "user", "content": "Show me lines 10 to 20 of src/main.py."},
    ]
    common = {"model": "smollm2-norag", "tools": defs, "temperature": 0, "max_tokens": 48}
    reuse, fresh = [], []
    with LiveServer(app) as live, httpx.Client(base_url=live.url, timeout=300) as client:
        ping = {
            "model": "smollm2-norag",
            "messages": [{"role": "user", "content": "hi"}],
            "max_tokens": 1,
        }
        for _ in range(600):
            if client.post("/v1/chat/completions", json=ping).status_code != 503:
                break
            time.sleep(0.1)  # the engine is still loading
        for r in range(args.repeat):
            turn1 = client.post(
                "/v1/chat/completions",
                json={
                    **common,
                    "messages": ask,
                    "tool_choice": {"type": "function", "function": {"name": "tool_3"}},
                },
            ).json()
            message = turn1["choices"][0]["message"]
            call = message["tool_calls"][0]
            turn2 = [
                *ask,
                message,
                {"role": "tool", "tool_call_id": call["id"], "content": "10 import os\n" * 11},
            ]
            seconds, usage = first_delta(client, {**common, "messages": turn2})
            reuse.append(seconds)
            cached = usage["prompt_tokens_details"]["cached_tokens"]
            other = [{"role": "user", "content": f"Unrelated question number {r}: " + "x " * 300}]
            client.post(
                "/v1/chat/completions",
                json={"model": "smollm2-norag", "messages": other, "max_tokens": 1},
            )
            seconds, usage2 = first_delta(client, {**common, "messages": turn2})
            fresh.append(seconds)
            print(
                f"run {r + 1}: prompt {usage['prompt_tokens']} tokens, cached {cached} "
                f"(reuse) / {usage2['prompt_tokens_details']['cached_tokens']} (no reuse); "
                f"TTFT {reuse[-1] * 1000:.0f} ms / {fresh[-1] * 1000:.0f} ms",
                flush=True,
            )
    engine.close()
    print()
    report(
        "turn after a tool result: TTFT, prefix reused",
        median(reuse) * 1000,
        median(fresh) * 1000,
        "ms",
        "(baseline: the same turn read from scratch)",
    )
    report(
        "speed-up from prefix reuse",
        median(fresh) / median(reuse),
        1.0,
        "x",
    )


if __name__ == "__main__":
    main()
