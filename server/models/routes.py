"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

import asyncio

from litestar import Request, get

from ragserve.errors import ModelNotFound

from ..access.keys import LOCAL, Principal
from ..access.policy import needs, principal_of
from ..operations import GET, route
from ..state import NO_RAG_SUFFIX, AppState
from .protocol import Model, ModelList


def list_models(state: AppState, principal: Principal = LOCAL) -> ModelList:
    created = int(state.started_at)
    return ModelList(
        data=[
            Model(
                id=state.model_id,
                created=created,
                description="chat, answers from the PDF library and cites its sources",
            ),
            Model(
                id=state.model_id + NO_RAG_SUFFIX,
                created=created,
                description="the same model without retrieval (plain chat)",
            ),
            *(
                Model(
                    id=f"{state.model_id}@{name}",
                    created=created,
                    description=f"chat that answers from the vector store '{name}' ({sid})",
                )
                for sid, name in state.store_names(principal)
            ),
            Model(
                id=state.embedding_model_id,
                created=created,
                description="embeddings (the model the index was built with)",
            ),
        ]
    )


@get(
    "/v1/models",
    summary="List models",
    opt=route(needs("chat"), GET),
    operation_id="listModels",
    tags=["models"],
)
async def get_models(request: Request, app_state: AppState) -> ModelList:
    return await asyncio.to_thread(list_models, app_state, principal_of(request))


@get(
    "/v1/models/{model_id:path}",
    summary="Retrieve a model",
    opt=route(needs("chat"), {**GET, 404: "no such model"}),
    operation_id="retrieveModel",
    tags=["models"],
)
async def get_model(model_id: str, request: Request, app_state: AppState) -> Model:
    model_id = model_id.strip("/")
    models = await asyncio.to_thread(list_models, app_state, principal_of(request))
    for model in models.data:
        if model.id == model_id:
            return model
    raise ModelNotFound(f"The model '{model_id}' does not exist")
