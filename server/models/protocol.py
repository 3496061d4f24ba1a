"""/v1/models wire types."""

from __future__ import annotations

from typing import Literal

from ..protocol import Response


class Model(Response):
    id: str
    object: Literal["model"] = "model"
    created: int = 0
    owned_by: str = "ragserve"
    # -- ragserve addition: what the id does --
    description: str = ""


class ModelList(Response):
    object: Literal["list"] = "list"
    data: list[Model] = []
