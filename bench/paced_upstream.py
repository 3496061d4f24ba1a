"""An OpenAI-compatible chat server that streams at a fixed pace and does no model work.

    python bench/paced_upstream.py --port 8000 [--ttft-ms 200] [--tok-s 60]

Stands in for a GPU server (vLLM, llama-server on a GPU) in bench/upstream_bench.py: its
cost is the pace it is told, not CPU, so on a small machine whatever ragserve spends in
front of it shows as ragserve's own overhead instead of as CPU taken from a model running
on the same cores. Each streamed chat request waits --ttft-ms, then sends one content chunk
per token (up to max_tokens, a word per chunk) every 1/--tok-s seconds, then a
finish_reason chunk, a usage chunk and `[DONE]`. `GET /v1/models` lists one model.
Requests to it sleep concurrently: four clients get four streams at full pace.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import time
from typing import Any

import uvicorn

MODEL = "paced"


async def _body(receive: Any) -> bytes:
    chunks = []
    while True:
        message = await receive()
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            return b"".join(chunks)


def app(ttft_s: float, tok_s: float):
    async def asgi(scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        path = scope["path"]

        async def reply(status: int, payload: dict[str, Any]) -> None:
            data = json.dumps(payload).encode()
            headers = [(b"content-type", b"application/json")]
            await send({"type": "http.response.start", "status": status, "headers": headers})
            await send({"type": "http.response.body", "body": data})

        if scope["method"] == "GET" and path == "/v1/models":
            await reply(200, {"object": "list", "data": [{"id": MODEL, "object": "model"}]})
            return
        if scope["method"] != "POST" or path != "/v1/chat/completions":
            await reply(404, {"error": {"message": f"no route {path}", "type": "not_found"}})
            return
        request = json.loads(await _body(receive) or b"{}")
        n = int(request.get("max_tokens") or request.get("max_completion_tokens") or 16)
        prompt = sum(len(str(m.get("content", ""))) for m in request.get("messages", [])) // 4
        ident = f"chatcmpl-{time.monotonic_ns()}"

        def frame(delta: dict[str, Any], finish: str | None = None, **extra: Any) -> dict:
            choice = {"index": 0, "delta": delta, "finish_reason": finish}
            return {"id": ident, "object": "chat.completion.chunk", "model": MODEL,
                    "choices": [choice], **extra}  # fmt: skip

        headers = [(b"content-type", b"text/event-stream"), (b"cache-control", b"no-cache")]
        await send({"type": "http.response.start", "status": 200, "headers": headers})

        async def event(payload: dict[str, Any] | str) -> None:
            text = payload if isinstance(payload, str) else json.dumps(payload)
            await send({"type": "http.response.body", "body": f"data: {text}\n\n".encode(),
                        "more_body": True})  # fmt: skip

        start = time.perf_counter()
        await asyncio.sleep(ttft_s)
        await event(frame({"role": "assistant", "content": ""}))
        for i in range(n):
            # paced from the start, so the time a send takes does not accumulate
            await asyncio.sleep(max(0.0, start + ttft_s + i / tok_s - time.perf_counter()))
            await event(frame({"content": f" w{i}"}))
        await event(frame({}, "length"))
        usage = {"prompt_tokens": prompt, "completion_tokens": n, "total_tokens": prompt + n}
        await event({**frame({}), "choices": [], "usage": usage})
        await event("[DONE]")
        await send({"type": "http.response.body", "body": b""})

    return asgi


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--ttft-ms", type=float, default=200.0)
    ap.add_argument("--tok-s", type=float, default=60.0)
    args = ap.parse_args()
    uvicorn.run(
        app(args.ttft_ms / 1000, args.tok_s),
        host="127.0.0.1",
        port=args.port,
        log_level="warning",
        access_log=False,
    )


if __name__ == "__main__":
    main()
