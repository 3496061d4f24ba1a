"""schemathesis hooks for .ci/fuzz.sh's restricted pass: a key limited to another store
must never get a 2xx that names the forbidden store or its file (their ids are fixed as
the path parameters), nor see them in any answer it did not name them in itself."""

from __future__ import annotations

import os

import schemathesis

FORBIDDEN = (os.environ["FORBIDDEN_STORE"], os.environ["FORBIDDEN_FILE"])


@schemathesis.check
def forbidden_store_stays_hidden(ctx, response, case) -> None:
    path = case.formatted_path
    if any(i in path for i in FORBIDDEN) and 200 <= response.status_code < 300:
        raise AssertionError(
            f"{case.method} {path} answered {response.status_code} to a key that may not "
            "read the store"
        )
    # an id the client sent may come back in its own 404 ("No vector store found with id
    # ..."): the same answer as for an id that does not exist. Any other mention is a leak.
    sent = path + repr(case.query) + repr(case.body)
    leaked = [i for i in FORBIDDEN if i in response.text and i not in sent]
    if leaked:
        raise AssertionError(f"{case.method} {path} showed {leaked} to a key that may not see them")
