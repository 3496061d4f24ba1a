"""The app factory: routes, dependencies, error handling, middleware and background loading."""

from __future__ import annotations

from typing import Any

from litestar import Litestar, Router
from litestar.di import Provide
from litestar.openapi import OpenAPIConfig
from litestar.openapi.spec import Server

from ragserve import __version__
from ragserve.engine import Engine, EngineLoad
from ragserve.retrieval.embedder import Embedder
from ragserve.retrieval.search import Retriever

from .access.policy import needs
from .chat.routes import create_chat_completion
from .chat.service import ChatService
from .completions.routes import create_completion
from .completions.service import CompletionService
from .embeddings.routes import create_embeddings
from .embeddings.service import EmbeddingService
from .errors import handle_exception
from .files.routes import delete_file, file_content, list_files, retrieve_file, upload_route
from .health import health, metrics, ready
from .library import Library
from .middleware import (
    AllowMiddleware,
    AuthMiddleware,
    CORSMiddleware,
    LocalGuardMiddleware,
    RequestMiddleware,
    RouteTable,
)
from .models.routes import get_model, get_models
from .responses.routes import create_response, delete_response, get_response, list_input_items
from .responses.service import ResponseService
from .settings import Settings
from .spec import render_plugins
from .state import AppState
from .vector_stores.routes import ROUTES as STORE_ROUTES

DESCRIPTION = """An OpenAI-compatible chat server that answers from a private PDF library.

Additions to the OpenAI API:

* every chat completion is augmented with passages retrieved from the PDF index; the
  response carries them in a top-level `sources` field (the first chunk of a stream), and
  unless turned off the answer ends with a short "Sources:" list;
* request field `rag` (`extra_body={"rag": {...}}` in the SDKs): `enabled`, `top_k`,
  `documents` (paths or globs), `mode` (hybrid, dense, keyword), `append_sources`;
* `/v1/models` lists `<model>-norag`, the same model without retrieval;
* sampling fields `top_k`, `min_p`, `repeat_penalty` (llama.cpp);
* `usage.prompt_tokens_details.cached_tokens`: prompt tokens served from the KV cache.
"""


class RagserveApp:
    """The ASGI app: the Litestar app inside CORS, request-id and auth middleware."""

    def __init__(self, litestar: Litestar, state: AppState) -> None:
        self.litestar = litestar
        self.state = state
        self.library: Any = None  # set by create_app
        s = state.settings
        table = RouteTable((r.path, r.methods) for r in litestar.routes if hasattr(r, "methods"))
        inner: Any = AuthMiddleware(
            AllowMiddleware(litestar, table),
            state.keys,
            state.signer,
            state.policy.limiter,
            s.trusted_proxies,
            s.trusted_user_header,
            s.trusted_groups_header,
        )
        if not (state.keys.enabled or s.trusted_proxies):
            inner = LocalGuardMiddleware(inner, s.host, s.allowed_hosts)
        self._asgi = CORSMiddleware(
            RequestMiddleware(inner, state.metrics, table), s.cors_origins, table
        )

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        await self._asgi(scope, receive, send)


def create_app(
    settings: Settings,
    *,
    engine: Engine | None = None,
    retriever: Retriever | None = None,
    embedder: Embedder | None = None,
    preload: EngineLoad | None = None,
) -> RagserveApp:
    """Build the app. Tests pass their own engine and retriever; otherwise they load in the
    background after start-up, so /health answers at once and /health/ready says when."""
    state = AppState(
        settings, engine=engine, retriever=retriever, embedder=embedder, preload=preload
    )
    library = Library(state)
    chat, completions, embeddings = (
        ChatService(state, library),
        CompletionService(state),
        EmbeddingService(state),
    )
    responses = ResponseService(state, chat, library)
    state.store_names = library.store_names
    state.policy.lookup = library.store_lookup

    state.on_ready.append(library.resume)
    state.on_close += [library.close, responses.close]

    litestar = Litestar(
        route_handlers=[
            create_chat_completion,
            create_response,
            get_response,
            delete_response,
            list_input_items,
            create_completion,
            create_embeddings,
            get_models,
            get_model,
            upload_route(settings.max_upload_bytes),
            list_files,
            retrieve_file,
            delete_file,
            file_content,
            *STORE_ROUTES,
            health,
            ready,
            metrics,
        ],
        dependencies={
            "app_state": Provide(lambda: state, sync_to_thread=False),
            "chat": Provide(lambda: chat, sync_to_thread=False),
            "completions": Provide(lambda: completions, sync_to_thread=False),
            "responses": Provide(lambda: responses, sync_to_thread=False),
            "embeddings": Provide(lambda: embeddings, sync_to_thread=False),
            "files": Provide(lambda: library.files, sync_to_thread=False),
            "stores": Provide(lambda: library.api, sync_to_thread=False),
        },
        exception_handlers={Exception: handle_exception},
        guards=[state.policy.guard],
        on_startup=[state.start_loading],
        on_shutdown=[state.close],
        request_max_body_size=settings.max_body_bytes,
        openapi_config=OpenAPIConfig(
            title="ragserve",
            version=__version__,
            description=DESCRIPTION,
            servers=[Server(url="/")],
            path="/openapi",
            openapi_router=Router(
                "/openapi", route_handlers=[], include_in_schema=False, opt=needs("")
            ),
            render_plugins=render_plugins(),
        ),
        logging_config=None,
        debug=False,
    )
    app = RagserveApp(litestar, state)
    app.library = library  # for tests and tools: the documents API's objects
    return app
