"""What the app holds: settings, the engine and the retriever, loaded in the background."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from typing import Any

import structlog

from ragserve.engine import Engine, EngineLoad, Finished, GenerationRequest, UpstreamEngine
from ragserve.errors import ModelNotFound, NotReady, UpstreamUnavailable
from ragserve.retrieval.embedder import Embedder
from ragserve.retrieval.embedder import model_id_for as embedding_model_id_for
from ragserve.retrieval.search import Retriever

from .access.keys import LOCAL, KeyRing, Principal
from .access.policy import Policy
from .citations import UrlSigner, load_secret
from .metrics import Metrics
from .settings import (
    Settings,
    bundled_model_path,
    engine_options,
    served_model_id,
    upstream_options,
)

log = structlog.get_logger(__name__)

NO_RAG_SUFFIX = "-norag"


class AppState:
    """Heavy objects, built once. Until they are loaded, requests get 503 not_ready."""

    def __init__(
        self,
        settings: Settings,
        *,
        engine: Engine | None = None,
        retriever: Retriever | None = None,
        embedder: Embedder | None = None,
        preload: EngineLoad | None = None,
    ) -> None:
        self.settings = settings
        self._preload = preload
        self.metrics = Metrics()
        self.started_at = time.time()
        self._engine = engine
        self._owns_engine = engine is None  # an engine passed in is closed by its owner
        self._retriever = retriever
        self._embedder = embedder or (retriever.embedder if retriever else None)
        self.load_error: str | None = None
        self._watch(engine)
        self._loader: threading.Thread | None = None
        self.model_id = (
            settings.model_alias or engine.model_id if engine else served_model_id(settings)
        )
        # the documents API's stores, as `<model>@<store name>` ids (set by the app)
        self.store_names: Callable[..., list[tuple[str, str]]] = lambda principal=None: []
        # citation links carry a signature only when keys guard the files
        self.signer: UrlSigner | None = None
        # the app's parts that start once loaded and stop with it (one lifecycle, whichever
        # front runs the app: Litestar's hooks or BootApp's)
        self.on_ready: list[Callable[[], None]] = []
        self.on_close: list[Callable[[], None]] = []
        self.keys = KeyRing(settings.api_keys, settings.api_key_file)
        self.policy = Policy()
        if self.keys.enabled or settings.trusted_proxies:
            secret = load_secret(settings.citation_secret, settings.data, settings.retrieval.store)
            self.signer = UrlSigner(secret, settings.citation_ttl)

    # -- loading ------------------------------------------------------------------------
    def start_loading(self) -> None:
        self.keys.start()
        if self.ready and self._loader is None:  # built with its engine and retriever
            self._loader = threading.Thread(target=self._ready_hooks, name="ready", daemon=True)
            self._loader.start()
        if self.ready or self._loader is not None:
            return
        self._loader = threading.Thread(target=self._load, name="loader", daemon=True)
        self._loader.start()

    def _load(self) -> None:
        """The model and the embedder load side by side: llama.cpp reads its file with the GIL
        released (an EngineLoad, begun by `ragserve serve` or here) while the embedding model
        loads, so ready comes after the slower of the two rather than after both."""
        s = self.settings
        failures: list[BaseException] = []
        pending = self._preload
        if pending is None and self._engine is None and not s.llm_url:
            pending = EngineLoad(s.model_path or bundled_model_path(), **engine_options(s))
        try:
            if self._engine is None and s.llm_url:  # generation through another server
                self._engine = UpstreamEngine(s.llm_url, **upstream_options(s))
            embedder = self._embedder or s.retrieval.embedder(queries_only=True)
            self._embedder = embedder
            if self._retriever is None:
                retriever = Retriever(
                    s.retrieval.location, embedder, reranker=s.retrieval.reranker()
                )
            embedder.dim  # noqa: B018 - load the weights now, not on the first request
        except BaseException as exc:
            failures.append(exc)
        if pending is not None:
            try:
                self._engine = pending.result()
            except BaseException as exc:
                failures.append(exc)
        try:
            if failures:
                raise failures[0]
            if self._retriever is None:
                self._retriever = retriever
            self._watch(self._engine)
            log.info("server.ready", seconds=round(time.time() - self.started_at, 2))
            self._ready_hooks()
        except Exception as exc:
            if self._engine is not None and self._owns_engine:
                self._engine.close()
                self._engine = None
            self.load_error = f"{type(exc).__name__}: {getattr(exc, 'message', exc)}"
            log.exception("server.load_failed", error=self.load_error)

    def _ready_hooks(self) -> None:
        for hook in self.on_ready:
            try:
                hook()
            except Exception:
                log.exception("server.ready_hook_failed", hook=getattr(hook, "__qualname__", "?"))

    def close(self) -> None:
        closers, self.on_close = self.on_close, []
        seconds: dict[str, float] = {}
        for close in reversed(closers):
            name = getattr(close, "__qualname__", "?")
            started = time.perf_counter()
            try:
                close()
            except Exception:
                log.exception("server.close_failed", part=name)
            seconds[name] = round(time.perf_counter() - started, 3)
        self.keys.close()
        engine = self._engine
        if engine is not None and self._observe in engine.listeners:
            engine.listeners.remove(self._observe)
        if self._owns_engine and engine is not None:
            started = time.perf_counter()
            engine.close()
            seconds["engine"] = round(time.perf_counter() - started, 3)
        log.info("server.closed", seconds=seconds)  # what a slow stop waited for

    def submit(self, request: GenerationRequest, principal: Principal) -> Any:
        """Hand a generation to the engine; its tokens count against the key's tpm."""
        self.policy.limiter.expect(request.request_id, principal)
        try:
            return self.engine.submit(request)
        except BaseException:
            self.policy.limiter.settle(request.request_id, 0)
            raise

    def _observe(self, request: GenerationRequest, d: Finished) -> None:
        self.policy.limiter.settle(request.request_id, d.prompt_tokens + d.completion_tokens)
        self.metrics.observe_generation(
            d.prompt_tokens,
            d.completion_tokens,
            d.cached_tokens,
            d.ttft_s,
            d.decode_s,
            d.finish_reason,
        )

    def _watch(self, engine: Engine | None) -> None:
        if engine is not None:
            engine.listeners.append(self._observe)

    @property
    def ready(self) -> bool:
        return self._engine is not None and self._retriever is not None

    def _not_ready(self) -> NotReady:
        if self.load_error:
            err = NotReady(f"the server failed to load: {self.load_error}")
            err.retry_after_s = 60
            return err
        return NotReady("the model and index are still loading; retry shortly")

    @property
    def engine(self) -> Engine:
        if self._engine is None:
            raise self._not_ready()
        down = self._engine.unavailable()
        if down is not None:  # an upstream that does not answer: 503 + Retry-After
            raise UpstreamUnavailable(down)
        return self._engine

    @property
    def retriever(self) -> Retriever:
        if self._retriever is None:
            raise self._not_ready()
        return self._retriever

    @property
    def embedder(self) -> Embedder:
        if self._embedder is None or self._retriever is None:
            raise self._not_ready()
        return self._embedder

    # -- model ids ----------------------------------------------------------------------
    @property
    def embedding_model_id(self) -> str:
        return embedding_model_id_for(self.settings.retrieval.embed_model)

    def store_of(self, requested: str, principal: Principal = LOCAL) -> str | None:
        """The store a `<model>@<store name>` id searches (None: not such an id); a store
        the caller may not read does not exist for it."""
        model, at, name = requested.rpartition("@")
        if not at or model != self.model_id:
            return None
        for sid, store in self.store_names(principal):
            if store == name:
                return sid
        raise ModelNotFound(f"The model '{requested}' does not exist: no vector store '{name}'")

    def resolve_chat_model(self, requested: str, principal: Principal = LOCAL) -> bool:
        """Whether retrieval is on for this model id; unknown ids use the served model."""
        if requested == self.model_id or not requested or self.store_of(requested, principal):
            return True
        if requested == self.model_id + NO_RAG_SUFFIX:
            return False
        if self.settings.strict_models or requested == self.embedding_model_id:
            raise ModelNotFound(
                f"The model '{requested}' does not exist or is not a chat model; "
                f"available: {self.model_id}, {self.model_id}{NO_RAG_SUFFIX}"
            )
        return True
