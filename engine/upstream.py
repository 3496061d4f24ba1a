"""The Engine for a model served elsewhere: generation through an OpenAI-compatible server.

vLLM, llama-server, llama-cpp-python's server or any OpenAI-compatible endpoint
(`--llm-url http://host:port/v1`) generates; ragserve keeps everything above the engine
(retrieval, packing, citations, the footer, the library). A request carries the
conversation as the model is to see it (`GenerationRequest.call`); the upstream applies its
own chat template, tool-call parser and structured output, and its stream is re-emitted as
it arrives: text as TextDelta, parsed tool calls as ToolCallsDelta, then Finished with the
upstream's usage.

Token budgets (RAG context fitting, the 400 for an overflowing prompt) need the upstream
model's tokenizer and context length. `TokenCounter` has five implementations, chosen once
the upstream first answers: `--llm-tokenizer` (a GGUF, vocabulary only, or a Hugging Face
tokenizer), else the upstream's own endpoints (vLLM's `/tokenize` with messages, which also
reports `max_model_len`; llama-server's `/apply-template` + `/tokenize`, `/props` for
`n_ctx`), else a documented conservative estimate. The context length is what the upstream
reports, else `--n-ctx`.

Faults are the upstream's and reported as such: unreachable -> not ready (503 with
Retry-After, `/health/ready` names it); its 429/503 -> the same with its Retry-After; its
other 4xx -> 400 with its message; a refusal of ragserve itself (401/403/404) or a broken
stream -> 502 or an error event. A client that leaves cancels the upstream request (its
connection is closed). At most `parallel` requests are sent at once, `max_queue` more wait.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import math
import re
import threading
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any, Protocol

import httpx
import structlog

from ragserve.errors import (
    EngineFailed,
    InvalidRequest,
    QueueFull,
    RagserveError,
    RateLimited,
    UpstreamFailed,
    UpstreamUnavailable,
)

from .jobs import events_of
from .options import DEFAULTS
from .tool_formats import ToolFormat, detect
from .types import (
    DEFAULT_N_CTX,
    EngineStats,
    Finished,
    GenerationEvent,
    GenerationRequest,
    SamplingParams,
    TextDelta,
    ToolCallsDelta,
)

log = structlog.get_logger(__name__)

WORD_JOINER = "\u2060"
# Control tokens of the common chat families: a passage or message carrying one must not
# open a turn in the upstream's template (it tokenizes its rendered prompt with special
# tokens parsed, as llama.cpp does). A configured tokenizer knows its model's own list.
COMMON_SPECIALS = (
    "<|im_start|>",
    "<|im_end|>",
    "<|endoftext|>",
    "<|begin_of_text|>",
    "<|start_header_id|>",
    "<|end_header_id|>",
    "<|eot_id|>",
    "<|eom_id|>",
    "<|python_tag|>",
    "<|system|>",
    "<|user|>",
    "<|assistant|>",
    "<|end|>",
    "<start_of_turn>",
    "<end_of_turn>",
    "<tool_call>",
    "</tool_call>",
    "[INST]",
    "[/INST]",
    "[TOOL_CALLS]",
    "<s>",
    "</s>",
)
ESTIMATE_MESSAGE_TOKENS = 8  # a turn's markup (role, separators) in the estimate
CHECK_UP_S = 5.0  # how often a reachable upstream is looked at
CHECK_DOWN_S = 1.0  # and an unreachable one (ready soon after it comes up)
DEFAULT_RETRY_S = 5


def root_of(base: str) -> str:
    """`http://host:8000/v1` -> `http://host:8000` (where /tokenize and /props live)."""
    base = base.rstrip("/")
    return base[: -len("/v1")] if base.endswith("/v1") else base


class Neutralizer:
    """Breaks the spelling of control tokens in client and document text (as ChatTemplate)."""

    def __init__(self, specials: tuple[str, ...] | list[str]) -> None:
        names = sorted({s for s in specials if len(s) > 1}, key=len, reverse=True)
        self._pattern = re.compile("|".join(map(re.escape, names))) if names else None

    def __call__(self, text: str) -> str:
        if self._pattern is None:
            return text
        return self._pattern.sub(lambda m: m[0][0] + WORD_JOINER + m[0][1:], text)


# -- token counters ------------------------------------------------------------------------
class TokenCounter(Protocol):
    """The upstream model's prompt side, as far as budgets need it."""

    name: str  # for logs and /health/ready: which way the counting is done
    n_vocab: int | None  # None: unknown (logit_bias ids pass unchecked)

    def chat_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> list[int]: ...

    def tokenize(self, text: str) -> list[int]: ...

    def neutralize(self, text: str) -> str:
        """Text with control tokens' spelling broken (a passage opens no turn)."""
        ...


class EstimateCounter:
    """No tokenizer to ask: one token per non-ASCII character and per three ASCII ones, plus
    a turn's markup. Above what byte-level BPE tokenizers of multilingual models (Qwen,
    Llama 3, Gemma) produce for Korean and English office text, so budgets err towards
    fewer passages, never an overflow; an English-only vocabulary may need more for Hangul
    (set --llm-tokenizer). Token ids are zeros: only the count is meaningful."""

    name: str = "estimate"
    n_vocab: int | None = None

    def __init__(self) -> None:
        self._neutral = Neutralizer(COMMON_SPECIALS)

    @staticmethod
    def count(text: str) -> int:
        ascii_chars = sum(1 for c in text if c < "\x80")
        return math.ceil(ascii_chars / 3) + (len(text) - ascii_chars)

    def tokenize(self, text: str) -> list[int]:
        return [0] * self.count(text)

    def chat_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> list[int]:
        n = ESTIMATE_MESSAGE_TOKENS  # the generation prompt
        for m in messages:
            n += ESTIMATE_MESSAGE_TOKENS + self.count(str(m.get("content") or ""))
            if m.get("tool_calls"):
                n += self.count(json.dumps(m["tool_calls"], ensure_ascii=False))
        if tools:
            n += self.count(json.dumps(tools, ensure_ascii=False))
        return [0] * n

    def neutralize(self, text: str) -> str:
        return self._neutral(text)


class GgufCounter:
    """The model's own GGUF, vocabulary only (no weights): its template and tokenizer, the
    same rendering the in-process engine uses."""

    n_vocab: int | None

    def __init__(self, path: Path) -> None:
        from .llama import Model
        from .llama_engine import GgufTokens

        self.name = f"gguf {path.name}"
        self._tokens = GgufTokens(Model(path, n_gpu_layers=0, vocab_only=True))
        self.n_vocab = self._tokens.n_vocab

    def chat_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> list[int]:
        return self._tokens.chat_tokens(messages, tools)

    def tokenize(self, text: str) -> list[int]:
        return self._tokens.tokenize(text)

    def neutralize(self, text: str) -> str:
        return self._tokens.neutralize(text)

    @property
    def tool_format(self) -> ToolFormat:
        return self._tokens.tool_format


class HfCounter:
    """A Hugging Face tokenizer (a folder or a hub name; offline it must be cached) with its
    chat template."""

    n_vocab: int | None

    def __init__(self, name: str) -> None:
        from transformers import AutoTokenizer

        self.name = f"hf {name}"
        try:
            self._tok = AutoTokenizer.from_pretrained(name)
        except Exception as exc:
            raise EngineFailed(f"--llm-tokenizer {name!r} could not be loaded: {exc}") from exc
        if not getattr(self._tok, "chat_template", None):
            raise EngineFailed(f"--llm-tokenizer {name!r} has no chat template")
        self.n_vocab = len(self._tok)
        specials = list(self._tok.all_special_tokens) + list(self._tok.get_added_vocab())
        self._neutral = Neutralizer(specials)
        self._lock = threading.Lock()  # fast tokenizers are not safe to share across threads

    def chat_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> list[int]:
        with self._lock:
            out: Any = self._tok.apply_chat_template(
                messages,
                tools=tools,  # type: ignore[arg-type]
                add_generation_prompt=True,
                tokenize=True,
            )
        if not isinstance(out, list):  # a BatchEncoding (return_dict by default)
            out = out["input_ids"]
        return list(out)

    def tokenize(self, text: str) -> list[int]:
        with self._lock:
            return list(self._tok.encode(text, add_special_tokens=False))

    def neutralize(self, text: str) -> str:
        return self._neutral(text)


class VllmCounter:
    """vLLM's `/tokenize`, which renders messages with the served model's template."""

    n_vocab: int | None = None

    def __init__(self, http: httpx.Client, root: str, model: str) -> None:
        self.name = "upstream /tokenize (vLLM)"
        self._http, self._root, self._model = http, root, model
        self._neutral = Neutralizer(COMMON_SPECIALS)

    def _post(self, body: dict[str, Any]) -> list[int]:
        data = _json(self._http.post(f"{self._root}/tokenize", json={"model": self._model, **body}))
        return list(data["tokens"])

    def chat_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> list[int]:
        body: dict[str, Any] = {"messages": messages, "add_generation_prompt": True}
        if tools:
            body["tools"] = tools
        return self._post(body)

    def tokenize(self, text: str) -> list[int]:
        return self._post({"prompt": text, "add_special_tokens": False})

    def neutralize(self, text: str) -> str:
        return self._neutral(text)


class LlamaServerCounter:
    """llama-server's `/apply-template` (its own template) and `/tokenize`."""

    n_vocab: int | None = None

    def __init__(self, http: httpx.Client, root: str) -> None:
        self.name = "upstream /apply-template + /tokenize (llama-server)"
        self._http, self._root = http, root
        self._neutral = Neutralizer(COMMON_SPECIALS)

    def _tokens(self, text: str, special: bool) -> list[int]:
        body = {"content": text, "add_special": special, "parse_special": special}
        return list(_json(self._http.post(f"{self._root}/tokenize", json=body))["tokens"])

    def chat_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None
    ) -> list[int]:
        body: dict[str, Any] = {"messages": messages}
        if tools:
            body["tools"] = tools
        prompt = _json(self._http.post(f"{self._root}/apply-template", json=body))["prompt"]
        return self._tokens(prompt, True)

    def tokenize(self, text: str) -> list[int]:
        return self._tokens(text, False)

    def neutralize(self, text: str) -> str:
        return self._neutral(text)


def _json(response: httpx.Response) -> dict[str, Any]:
    if response.status_code >= 400:
        raise UpstreamFailed(
            f"the upstream answered {response.status_code} to {response.request.url.path}: "
            f"{_message(response.content)}"
        )
    try:
        data = response.json()
    except ValueError as exc:
        raise UpstreamFailed(f"the upstream's {response.request.url.path} is not JSON") from exc
    if not isinstance(data, dict):
        raise UpstreamFailed(f"the upstream's {response.request.url.path} is not an object")
    return data


def _message(body: bytes) -> str:
    """The error message of an upstream's error body (OpenAI's shape, FastAPI's, or text)."""
    try:
        data = json.loads(body)
    except ValueError:
        return body.decode("utf-8", "replace").strip()[:500] or "no message"
    if isinstance(data, dict):
        error = data.get("error", data)
        if isinstance(error, dict):
            message = error.get("message") or error.get("detail") or data.get("detail")
            if message:
                return str(message)[:2000]
        elif isinstance(error, str):
            return error[:2000]
    return json.dumps(data)[:500]


def local_counter(spec: str) -> TokenCounter:
    """`--llm-tokenizer`: a .gguf file, else a Hugging Face tokenizer folder or hub name."""
    path = Path(spec).expanduser()
    if path.suffix == ".gguf":
        if not path.is_file():
            raise EngineFailed(f"--llm-tokenizer: no such file {path}")
        return GgufCounter(path)
    return HfCounter(spec)


# -- the engine ------------------------------------------------------------------------------
class UpstreamEngine:
    """Generation through an OpenAI-compatible server; the `Engine` the server uses."""

    def __init__(
        self,
        url: str,
        *,
        model_id: str,
        model: str | None = None,
        api_key: str | None = None,
        tokenizer: str | None = None,
        n_ctx: int | None = DEFAULTS["n_ctx"],
        parallel: int = DEFAULTS["parallel"],
        max_queue: int = DEFAULTS["max_queue"],
        connect_timeout: float = DEFAULTS["llm_connect_timeout"],
        read_timeout: float = DEFAULTS["llm_read_timeout"],
        check: bool = True,
    ) -> None:
        if not url.startswith(("http://", "https://")):
            raise EngineFailed(f"--llm-url must be an http:// or https:// URL, not {url!r}")
        self.url = url.rstrip("/")
        self.upstream: str | None = self.url
        self.model_id = model_id
        self.listeners: list[Callable[[GenerationRequest, Finished], None]] = []
        self._root = root_of(self.upstream)
        self._model = model  # None: the first the upstream lists
        self._fallback_ctx = n_ctx or DEFAULT_N_CTX
        self.parallel = max(1, parallel)
        self._max_queue = max_queue
        self._headers = {"Authorization": f"Bearer {api_key}"} if api_key else {}
        self._timeout = httpx.Timeout(read_timeout, connect=connect_timeout)
        self._http = httpx.Client(timeout=self._timeout, headers=self._headers)
        self._configured = local_counter(tokenizer) if tokenizer else None
        self._counter: TokenCounter = self._configured or EstimateCounter()
        self._n_ctx: int | None = None
        self._probed = False
        self._down: str | None = "the upstream has not answered yet"
        self._tool_format = getattr(self._configured, "tool_format", None) or detect("")
        # asyncio side: made on the loop that submits (the server's)
        self._client: httpx.AsyncClient | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._slots: asyncio.Semaphore | None = None
        self._busy = 0
        self._waiting = 0
        self._last_data = 0.0  # monotonic time a stream last delivered
        self._calls: set[_Call] = set()
        self._stop = threading.Event()
        self._wake = threading.Event()
        self._watcher: threading.Thread | None = None
        if check:
            self.check()  # one look now: ready at once when the upstream is already up
            self._watcher = threading.Thread(target=self._watch, name="upstream", daemon=True)
            self._watcher.start()

    # -- what the upstream is ----------------------------------------------------------
    @property
    def n_ctx(self) -> int:
        return self._n_ctx or self._fallback_ctx

    @property
    def n_vocab(self) -> int:
        return self._counter.n_vocab or 2**31 - 1

    @property
    def model(self) -> str | None:
        return self._model

    @property
    def counter(self) -> str:
        return self._counter.name

    def check(self) -> bool:
        """Ask the upstream whether it is up (and, the first time, what it serves). A stream
        that delivered a moment ago, or one in flight, says so already (and llama-cpp-python's
        server would cut a running stream for a new request); a busy upstream that is slow to answer
        the look stays up."""
        recent = time.monotonic() - self._last_data < CHECK_UP_S
        if self._down is None and (self._busy or recent):
            return True  # a request in flight fails by itself if the upstream goes away
        try:
            if self._probed:
                _json(self._http.get(f"{self.upstream}/models", timeout=self._probe_timeout()))
            else:
                self._probe()
        except httpx.ReadTimeout:
            if self._probed and self._down is None:
                return True  # connected, but busy: not down
            self._down = "it accepted the connection but did not answer in time"
            return False
        except (httpx.HTTPError, RagserveError, KeyError, TypeError, ValueError) as exc:
            reason = _reason(exc)
            if self._down != reason:
                log.warning("upstream.down", upstream=self.upstream, reason=reason)
            self._down = reason
            return False
        if self._down is not None:
            log.info("upstream.up", upstream=self.upstream)
        self._down = None
        return True

    def _probe_timeout(self) -> httpx.Timeout:
        return httpx.Timeout(min(self._timeout.read or 10.0, 10.0), connect=self._timeout.connect)

    def _probe(self) -> None:
        timeout = self._probe_timeout()
        listed = _json(self._http.get(f"{self.upstream}/models", timeout=timeout))
        cards = [c for c in listed.get("data") or [] if isinstance(c, dict) and "id" in c]
        model = self._model or (str(cards[0]["id"]) if cards else None)
        if model is None:
            raise UpstreamFailed("the upstream lists no models (set --llm-model)")
        card = next((c for c in cards if c["id"] == model), None)
        if card is None:
            log.warning("upstream.model_unlisted", model=model, listed=[c["id"] for c in cards])
        n_ctx = _positive((card or {}).get("max_model_len"))
        found: TokenCounter | None = None
        with contextlib.suppress(httpx.HTTPError, RagserveError, KeyError, TypeError):
            probe = {"model": model, "messages": [{"role": "user", "content": "hi"}]}
            r = self._http.post(f"{self._root}/tokenize", json=probe, timeout=timeout)
            if r.status_code == 200 and isinstance(r.json().get("tokens"), list):
                found = VllmCounter(self._http, self._root, model)
                n_ctx = n_ctx or _positive(r.json().get("max_model_len"))
        if found is None:
            with contextlib.suppress(httpx.HTTPError, RagserveError, KeyError, TypeError):
                props = _json(self._http.get(f"{self._root}/props", timeout=timeout))
                settings = props.get("default_generation_settings") or {}
                n_ctx = n_ctx or _positive(settings.get("n_ctx") or props.get("n_ctx"))
                apply = self._http.post(
                    f"{self._root}/apply-template", json={"messages": probe["messages"]}
                )
                if apply.status_code == 200 and "prompt" in apply.json():
                    found = LlamaServerCounter(self._http, self._root)
        counter: TokenCounter = self._configured or found or EstimateCounter()
        if counter.name == "estimate":
            log.warning(
                "upstream.token_estimate",
                upstream=self.upstream,
                hint="the upstream has no /tokenize: budgets use an estimate; set "
                "--llm-tokenizer to the model's GGUF or Hugging Face tokenizer for exact ones",
            )
        self._model, self._counter, self._n_ctx = model, counter, n_ctx
        self._probed = True
        log.info(
            "upstream.ready",
            upstream=self.upstream,
            model=model,
            n_ctx=self.n_ctx,
            n_ctx_from="upstream" if n_ctx else "--n-ctx",
            tokens=counter.name,
        )

    def _watch(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(CHECK_DOWN_S if self._down else CHECK_UP_S)
            self._wake.clear()
            if not self._stop.is_set():
                self.check()

    def unavailable(self) -> str | None:
        if self._down is None:
            return None
        return f"the upstream {self.upstream} is not available: {self._down}"

    def _doubt(self) -> None:
        """A stream broke off: the upstream may be gone or may have cut one request. Look
        now, without trusting the data that came just before (`check` counts a stream
        that delivered a moment ago as up), instead of at the next regular look."""
        self._last_data = 0.0
        self._wake.set()

    def _lost(self, exc: BaseException) -> UpstreamUnavailable:
        """A request could not reach the upstream: not ready until the watcher sees it."""
        self._down = _reason(exc)
        self._wake.set()
        return UpstreamUnavailable(self.unavailable() or "the upstream is not available")

    # -- tokens --------------------------------------------------------------------------
    def tokenize(self, text: str, *, add_bos: bool = False) -> list[int]:
        return self._counted(self._counter.tokenize, text)

    def chat_tokens(
        self, messages: list[dict[str, Any]], tools: list[dict[str, Any]] | None = None
    ) -> list[int]:
        return self._counted(self._counter.chat_tokens, messages, tools)

    def _counted(self, fn: Callable[..., list[int]], *args: Any) -> list[int]:
        try:
            return fn(*args)
        except httpx.TransportError as exc:
            raise self._lost(exc) from exc

    def neutralize(self, text: str) -> str:
        return self._counter.neutralize(text)

    @property
    def tool_format(self) -> ToolFormat:
        return self._tool_format  # the upstream parses calls itself; never used to parse

    def fim_tokens(self) -> tuple[int, int, int] | None:
        return None

    def check_grammar(self, gbnf: str, param: str = "response_format") -> None:
        return None  # structured output is the upstream's (response_format passed through)

    # -- requests ------------------------------------------------------------------------
    def body(self, request: GenerationRequest) -> tuple[str, dict[str, Any]]:
        """The upstream path and JSON body for a request (only what differs from the
        sampling defaults is sent, so the upstream's own defaults apply to the rest)."""
        call = request.call
        if call is None:
            raise EngineFailed("an upstream engine needs the request's messages or prompt")
        p, d = request.params, SamplingParams()
        body: dict[str, Any] = {
            "model": self._model,
            "stream": True,
            "stream_options": {"include_usage": True},
            "max_tokens": p.max_tokens,
        }
        if call.messages is not None:
            path = "/chat/completions"
            body["messages"] = [self._neutral(m) for m in call.messages]
            for name in ("tools", "tool_choice", "parallel_tool_calls", "response_format"):
                value = getattr(call, name)
                if value is not None:
                    body[name] = value
        else:
            path, body["prompt"] = "/completions", call.prompt
        if call.logit_bias:
            body["logit_bias"] = call.logit_bias
        for name in ("temperature", "top_p", "presence_penalty", "frequency_penalty"):
            if getattr(p, name) != getattr(d, name):
                body[name] = getattr(p, name)
        if p.seed is not None:
            body["seed"] = p.seed
        if p.stop:
            body["stop"] = list(p.stop)
        # llama.cpp's samplers: names llama-server and vLLM both take (vLLM: repetition_)
        if p.top_k != d.top_k:
            body["top_k"] = p.top_k
        if p.min_p != d.min_p:
            body["min_p"] = p.min_p
        if p.repeat_penalty != d.repeat_penalty:
            body["repeat_penalty"] = body["repetition_penalty"] = p.repeat_penalty
        if p.ignore_eos:
            body["ignore_eos"] = True
        return path, body

    def _neutral(self, message: dict[str, Any]) -> dict[str, Any]:
        content = message.get("content")
        if isinstance(content, str):
            return {**message, "content": self.neutralize(content)}
        return message

    def submit(self, request: GenerationRequest) -> _Call:
        loop = asyncio.get_running_loop()
        if self._stop.is_set():
            raise EngineFailed("the generation engine has stopped")
        down = self.unavailable()
        if down is not None:
            raise UpstreamUnavailable(down, DEFAULT_RETRY_S)
        if self._loop is not loop:  # first request (or a new loop, in tests)
            self._loop, self._slots = loop, asyncio.Semaphore(self.parallel)
            limits = httpx.Limits(
                max_connections=self.parallel, max_keepalive_connections=self.parallel
            )
            self._client = httpx.AsyncClient(
                timeout=self._timeout, headers=self._headers, limits=limits
            )
        if self._busy >= self.parallel and self._waiting >= self._max_queue:
            raise QueueFull(
                f"the generation queue is full ({self._max_queue} requests waiting for "
                f"{self.parallel} upstream connections); retry shortly"
            )
        call = _Call(self, request, loop)
        self._calls.add(call)
        return call

    def stats(self) -> EngineStats:
        return EngineStats(slots=self.parallel, busy=self._busy, queued=self._waiting)

    def shutdown(self, message: str) -> None:
        for call in list(self._calls):
            call.fail(EngineFailed(message))

    def close(self) -> bool:
        self._stop.set()
        self._wake.set()
        for call in list(self._calls):
            call.cancel()
        self._http.close()
        client, loop = self._client, self._loop
        if client is not None and loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):
                loop.call_soon_threadsafe(lambda: loop.create_task(client.aclose()))
        if self._watcher is not None:
            self._watcher.join(timeout=5)
        return True

    def refusal(self, status: int, body: bytes, headers: httpx.Headers) -> RagserveError:
        """The error the client gets for an upstream's error status."""
        message = _message(body)
        retry = _retry_after(headers.get("retry-after"))
        if status == 429:
            return RateLimited(f"the upstream is rate limiting: {message}", retry or 1)
        if status in (502, 503, 504):
            return UpstreamUnavailable(
                f"the upstream is unavailable ({status}): {message}", retry or DEFAULT_RETRY_S
            )
        if status in (401, 403, 404, 405):  # ragserve's configuration, not the client's
            return UpstreamFailed(
                f"the upstream refused ragserve's request ({status}: {message}); check "
                "--llm-url, --llm-model and --llm-api-key"
            )
        if 400 <= status < 500:
            code = "context_length_exceeded" if "context" in message.lower() else None
            return InvalidRequest(f"the upstream rejected the request: {message}", code=code)
        return UpstreamFailed(f"the upstream failed ({status}): {message}")


class _Call:
    """One upstream request: the Handle the server iterates."""

    def __init__(
        self, engine: UpstreamEngine, request: GenerationRequest, loop: asyncio.AbstractEventLoop
    ) -> None:
        self.engine = engine
        self.request = request
        self.events: asyncio.Queue[GenerationEvent | BaseException] = asyncio.Queue()
        self._accepted: asyncio.Future[None] = loop.create_future()
        self._accepted.add_done_callback(_retrieve)
        self._queued = True
        engine._waiting += 1
        self.task = loop.create_task(self._run())

    async def accepted(self) -> None:
        await asyncio.shield(self._accepted)

    async def __aiter__(self) -> AsyncIterator[GenerationEvent]:
        try:
            async for event in events_of(self.events):
                yield event
        finally:
            self.cancel()  # a client that went away ends the upstream request

    def cancel(self) -> None:
        if not self.task.done():
            self.task.cancel()

    def fail(self, error: RagserveError) -> None:
        if not self._accepted.done():
            self._accepted.set_exception(error)
        self.events.put_nowait(error)
        self.cancel()

    def _unqueue(self) -> None:
        if self._queued:
            self._queued = False
            self.engine._waiting -= 1

    async def _run(self) -> None:
        eng = self.engine
        started = time.perf_counter()
        first: float | None = None
        chunks = 0
        usage: dict[str, Any] = {}
        finish: str | None = None
        error: BaseException | None = None
        assert eng._slots is not None and eng._client is not None
        try:
            path, body = eng.body(self.request)
            async with eng._slots:
                self._unqueue()
                eng._busy += 1
                try:
                    url = eng.url + path
                    async with eng._client.stream("POST", url, json=body) as response:
                        if response.status_code >= 400:
                            raise eng.refusal(
                                response.status_code, await response.aread(), response.headers
                            )
                        self._accepted.set_result(None)
                        async for chunk in _chunks(response):
                            eng._last_data = time.monotonic()
                            if isinstance(chunk.get("usage"), dict):
                                usage = chunk["usage"]
                            for choice in chunk.get("choices") or ():
                                delta = choice.get("delta") or {}
                                text = delta.get("content") or choice.get("text")
                                calls = delta.get("tool_calls")
                                if text or calls:
                                    first = first or time.perf_counter()
                                    chunks += 1
                                if text:
                                    self.events.put_nowait(TextDelta(text))
                                if calls:
                                    self.events.put_nowait(ToolCallsDelta(list(calls)))
                                finish = choice.get("finish_reason") or finish
                        if finish is None:
                            raise UpstreamFailed(
                                "the upstream ended its stream before the answer finished"
                            )
                finally:
                    eng._busy -= 1
        except asyncio.CancelledError:
            finish = "cancelled"
        except httpx.TimeoutException as exc:
            if isinstance(exc, httpx.ConnectTimeout | httpx.PoolTimeout):
                error = eng._lost(exc)
            else:
                error = UpstreamFailed(
                    f"the upstream sent nothing for {eng._timeout.read:g} s (--llm-read-timeout)"
                )
        except httpx.ConnectError as exc:
            error = eng._lost(exc)
        except httpx.HTTPError as exc:  # a cut connection, a broken chunked body
            error = UpstreamFailed(f"the upstream's stream broke off: {_reason(exc)}")
            eng._doubt()
        except RagserveError as exc:
            error = exc
        except Exception as exc:  # a malformed stream must end the request, not hang it
            log.exception("upstream.call_failed")
            error = UpstreamFailed(f"the upstream's answer could not be read: {exc}")
        finally:
            self._unqueue()
            eng._calls.discard(self)
        ended = time.perf_counter()
        details = usage.get("prompt_tokens_details") or {}
        done = Finished(
            finish_reason="error" if error is not None else (finish or "cancelled"),
            prompt_tokens=_positive(usage.get("prompt_tokens")) or len(self.request.prompt_tokens),
            # without usage (llama-cpp-python's server): one token per streamed chunk
            completion_tokens=_positive(usage.get("completion_tokens")) or chunks,
            cached_tokens=_positive(details.get("cached_tokens") if details else None) or 0,
            ttft_s=(first or ended) - started,
            decode_s=ended - (first or ended),
        )
        for listener in list(eng.listeners):
            try:
                listener(self.request, done)
            except Exception:
                log.exception("upstream.listener_failed")
        if error is not None:
            if not self._accepted.done():
                self._accepted.set_exception(error)
            self.events.put_nowait(error)
            return
        if not self._accepted.done():
            self._accepted.set_result(None)
        self.events.put_nowait(done)


async def _chunks(response: httpx.Response) -> AsyncIterator[dict[str, Any]]:
    """The JSON objects of an SSE stream, to `[DONE]` (an error object raises)."""
    async for line in response.aiter_lines():
        if not line.startswith("data:"):
            continue  # comments (keep-alives), event names, blank separators
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            chunk = json.loads(data)
        except ValueError as exc:
            raise UpstreamFailed(
                f"the upstream sent a frame that is not JSON: {data[:200]}"
            ) from exc
        if not isinstance(chunk, dict):
            continue
        if "error" in chunk:
            raise UpstreamFailed(f"the upstream failed mid-answer: {_message(data.encode())}")
        yield chunk


def _retrieve(future: asyncio.Future[None]) -> None:
    if not future.cancelled():
        future.exception()  # the events carry it too: never "exception never retrieved"


def _retry_after(value: str | None) -> int | None:
    if value is None:
        return None
    with contextlib.suppress(ValueError):
        return max(1, math.ceil(float(value)))
    return None


def _positive(value: Any) -> int | None:
    return value if isinstance(value, int) and value > 0 else None


def _reason(exc: BaseException) -> str:
    if isinstance(exc, RagserveError):
        return exc.message
    text = str(exc) or type(exc).__name__
    return f"{type(exc).__name__}: {text}" if text != type(exc).__name__ else text
