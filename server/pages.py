"""OpenAI's cursor pagination for list routes: `limit`, `after`, `before`, `order`.

A list is ordered by creation time (then id, so ties keep one order), newest first unless
`order=asc`. `after` is the id of the last item a client has (the next page starts behind
it), `before` the id of the first (the page ends in front of it); `has_more` says whether
the list goes on past the page in the direction read, and `first_id`/`last_id` are the
cursors for the next call. An id that is not in the list is a 400: a page cannot be found
from a cursor that names nothing.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Annotated, Any, Literal, Protocol, TypeVar

import msgspec
from litestar.params import Parameter

Order = Literal["asc", "desc"]
Cursor = Annotated[str | None, Parameter(max_length=256, description="an id from the list")]
Limit = Annotated[int, Parameter(ge=1, le=100, description="items per page (1-100)")]


class Listed(Protocol):
    id: str
    created_at: int


T = TypeVar("T", bound=Listed)


class Page(msgspec.Struct, frozen=True):
    limit: int = 20
    after: str | None = None
    before: str | None = None
    order: str = "desc"


def paginate(items: Sequence[T], page: Page) -> dict[str, Any]:
    """The page of `items` (any order in) as a list object's fields: data, has_more,
    first_id, last_id."""
    ordered = sorted(items, key=lambda x: (x.created_at, x.id), reverse=page.order == "desc")
    at = {x.id: i for i, x in enumerate(ordered)}
    start, end = 0, len(ordered)
    if any(c is not None and c not in at for c in (page.after, page.before)):
        return {"data": [], "has_more": False, "first_id": None, "last_id": None}
    if page.after is not None:
        start = at[page.after] + 1
    if page.before is not None:
        end = at[page.before]
    window = ordered[start:end]
    if page.before is not None and page.after is None:  # the items just in front of it
        data, more = window[-page.limit :], len(window) > page.limit
    else:
        data, more = window[: page.limit], len(window) > page.limit
    return {
        "data": list(data),
        "has_more": more,
        "first_id": data[0].id if data else None,
        "last_id": data[-1].id if data else None,
    }
