"""GET /v1/models and /v1/models/{id}."""

from __future__ import annotations

from litestar import get

from ragserve.errors import ModelNotFound

from ..state import NO_RAG_SUFFIX, AppState
from .protocol import Model, ModelList


def list_models(state: AppState) -> ModelList:
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
                for sid, name in state.store_names()
            ),
            Model(
                id=state.embedding_model_id,
                created=created,
                description="embeddings (the model the index was built with)",
            ),
        ]
    )


@get("/v1/models", summary="List models", operation_id="listModels", tags=["models"])
async def get_models(app_state: AppState) -> ModelList:
    return list_models(app_state)


@get(
    "/v1/models/{model_id:path}",
    summary="Retrieve a model",
    operation_id="retrieveModel",
    tags=["models"],
)
async def get_model(model_id: str, app_state: AppState) -> Model:
    model_id = model_id.strip("/")
    for model in list_models(app_state).data:
        if model.id == model_id:
            return model
    raise ModelNotFound(f"The model '{model_id}' does not exist")
