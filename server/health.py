"""Liveness, readiness and metrics: the routes a load balancer and Prometheus call."""

from __future__ import annotations

import asyncio

from litestar import MediaType, Response, get

from ragserve import __version__

from .access.policy import needs
from .operations import ALWAYS, route
from .protocol import Response as WireResponse
from .state import AppState


class Health(WireResponse):
    status: str
    version: str  # ragserve's (pyproject.toml's), for bug reports


class Readiness(WireResponse):
    status: str
    model: str
    index_version: str
    documents: int
    chunks: int
    queue_depth: int
    # generation through another server (--llm-url): where, its model, how tokens are counted
    upstream: str | None = None
    upstream_model: str | None = None
    upstream_tokens: str | None = None


PUBLIC = needs(None)  # probes and scrapers: no key (see README, API keys)


@get(
    "/health",
    opt=route(PUBLIC, {}),
    summary="Liveness: answers as soon as the process runs",
    tags=["health"],
)
async def health() -> Health:
    return Health(status="ok", version=__version__)


@get(
    "/health/ready",
    opt=route(PUBLIC, {503: ALWAYS[503]}),
    summary="Readiness: 200 once the model and index are loaded, else 503",
    tags=["health"],
)
async def ready(app_state: AppState) -> Readiness:
    engine, retriever = app_state.engine, app_state.retriever  # raise 503 while loading
    # a look for a newer version: a query when the index is in PostgreSQL, not on the loop
    version = await asyncio.to_thread(lambda: retriever.version)
    return Readiness(
        status="ready",
        model=app_state.model_id,
        index_version=version.name,
        documents=version.manifest.documents,
        chunks=version.manifest.chunks,
        queue_depth=engine.stats().queued,
        upstream=engine.upstream,
        upstream_model=getattr(engine, "model", None) if engine.upstream else None,
        upstream_tokens=getattr(engine, "counter", None) if engine.upstream else None,
    )


@get(
    "/metrics",
    opt=route(PUBLIC, {}),
    summary="Prometheus metrics",
    tags=["health"],
    media_type=MediaType.TEXT,
    include_in_schema=True,
)
async def metrics(app_state: AppState) -> Response[bytes]:
    if app_state.ready:
        retriever = app_state.retriever
        m, manifest = (
            app_state.metrics,
            (await asyncio.to_thread(lambda: retriever.version)).manifest,
        )
        stats = app_state.engine.stats()
        m.queue_depth.set(stats.queued)
        m.slots_busy.set(stats.busy)
        m.slots.set(stats.slots)
        m.index_chunks.set(manifest.chunks)
        m.index_documents.set(manifest.documents)
    return Response(
        app_state.metrics.render(), media_type="text/plain; version=0.0.4; charset=utf-8"
    )
