"""Per-key scopes (#25): the keys file, the one policy on every route (a matrix over the
OpenAPI spec), and a real server where two departments' keys see only their documents."""

from __future__ import annotations

import json
import subprocess
import sys
import time
from pathlib import Path

import httpx
import openai
import pdfgen
import pytest
from liveserver import LiveServer, make_settings

from ragserve.errors import RateLimited
from ragserve.server import middleware
from ragserve.server.access.keys import KeyFileError, KeyRing, Principal, hash_key, parse_keys
from ragserve.server.access.policy import Limiter, Need
from ragserve.server.app import create_app

ROOT = Path(__file__).resolve().parents[2]


# -- the keys file ---------------------------------------------------------------------
def test_toml_json_and_one_key_a_line_give_the_same_grants():
    toml = f"""
[[keys]]
name = "alice"
hash = "{hash_key("k1")}"
scopes = ["chat", "stores:read"]
stores = ["contracts"]
default_store = "contracts"
expires = 2099-01-01
rpm = 10

[groups.eng]
scopes = ["chat"]
stores = ["*"]
"""
    table = parse_keys(toml)
    grant = table.keys[hash_key("k1")]
    assert grant.name == "alice" and grant.scopes == {"chat", "stores:read"}
    assert grant.stores == ("contracts",) and grant.rpm == 10 and grant.expires > time.time()
    assert table.groups["eng"].stores == ("*",)
    as_json = json.dumps(
        {
            "keys": [
                {
                    "name": "alice",
                    "hash": hash_key("k1"),
                    "scopes": ["chat", "stores:read"],
                    "stores": ["contracts"],
                    "default_store": "contracts",
                    "expires": "2099-01-01",
                    "rpm": 10,
                }
            ],
            "groups": {"eng": {"scopes": ["chat"], "stores": ["*"]}},
        }
    )
    assert parse_keys(as_json).keys == table.keys
    lines = parse_keys("# old form\nkey-one\n\nkey-two\n")
    assert lines.kind == "lines" and lines.keys[hash_key("key-two")].admin


@pytest.mark.parametrize(
    ("text", "line", "says"),
    [
        ('[[keys]]\nname = "a"\nhash = "sha256:00"\n', 1, "hash must be"),
        (
            f'[[keys]]\nname = "a"\nhash = "{hash_key("x")}"\n\n[[keys]]\nname = "b"\n'
            f'hash = "{hash_key("y")}"\nscopes = ["chat", "root"]\n',
            5,
            "unknown scope 'root'",
        ),
        ('[[keys]\nname = "a"\n', 1, "keys"),
        (
            f'[[keys]]\nname = "a"\nhash = "{hash_key("x")}"\nexpire = 2027-01-01\n',
            1,
            "unknown field 'expire'",
        ),
        ('{\n "keys": [\n  {"name": "a",, }\n ]\n}', 3, ""),
    ],
)
def test_a_malformed_keys_file_is_refused_naming_the_line(text, line, says):
    with pytest.raises(KeyFileError) as caught:
        parse_keys(text, "keys.toml")
    assert f"keys.toml:{line}:" in str(caught.value) and says in str(caught.value)


def test_expired_keys_are_refused_and_groups_merge(tmp_path):
    path = tmp_path / "keys.toml"
    path.write_text(
        f'[[keys]]\nname = "old"\nhash = "{hash_key("k")}"\nscopes = ["chat"]\n'
        "expires = 2020-01-01\n\n"
        '[groups.a]\nscopes = ["chat"]\nstores = ["x"]\n\n'
        '[groups.b]\nscopes = ["files:read"]\nstores = ["y"]\n'
    )
    ring = KeyRing(path=path)
    assert ring.lookup("k") is None
    merged = ring.groups(["a", "b", "unknown"], "kim")
    assert merged.name == "kim" and merged.scopes == {"chat", "files:read"}
    assert merged.stores == ("x", "y")
    assert ring.groups(["unknown"], "kim") is None


def test_the_limiter_refuses_past_the_minute_budget_and_refills():
    g = parse_keys(f'[[keys]]\nname = "a"\nhash = "{hash_key("k")}"\nrpm = 2\ntpm = 100\n')
    who = Principal("a", g.keys[hash_key("k")])
    limits = Limiter()
    limits.admit(who, now=0)
    limits.admit(who, now=0)
    with pytest.raises(RateLimited) as caught:
        limits.admit(who, now=0)
    assert caught.value.retry_after_s == 30  # one request per 30 s refills
    limits.admit(who, now=31)
    limits.charge(who, 150, now=31)  # over the token budget: refused until it refills
    with pytest.raises(RateLimited):
        limits.admit(who, now=32)
    limits.admit(who, now=70)


# -- every route declares what it needs -----------------------------------------------
def test_every_route_declares_its_access(index_dir, engine, retriever, tmp_path):
    app = create_app(
        make_settings(index_dir, data_dir=tmp_path), engine=engine, retriever=retriever
    )
    undeclared = []
    for route in app.litestar.routes:
        for handler in getattr(route, "route_handlers", []):
            if handler.handler_name == "options_handler":
                continue  # Litestar's own OPTIONS answers: AllowMiddleware answers first
            if not isinstance(handler.opt.get("access"), Need):
                undeclared.append((route.path, handler.handler_name))
    assert not undeclared, f"routes without an access declaration: {undeclared}"


# -- the matrix: every operation x every kind of caller ----------------------------------
KEYS = {
    "admin": {"scopes": ["admin"]},
    "noscope": {"scopes": []},
    "other": {
        "scopes": ["chat", "files:read", "files:write", "stores:read", "stores:write"],
        "stores": ["decoy"],
    },
    "right": {
        "scopes": ["chat", "files:read", "files:write", "stores:read", "stores:write"],
        "stores": ["target"],
    },
}


def write_keys(path: Path, keys: dict[str, dict]) -> None:
    entries = [{"name": n, "hash": hash_key(f"key-{n}"), **k} for n, k in keys.items()]
    path.write_text(json.dumps({"keys": entries}))


@pytest.fixture(scope="module")
def scoped(index_dir, engine, retriever, tmp_path_factory):
    data = tmp_path_factory.mktemp("scoped-data")
    keys = data / "keys.json"
    write_keys(keys, KEYS)
    settings = make_settings(index_dir, data_dir=data, api_key_file=keys)
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as live:
        yield live


def _pdf(tmp: Path, text: str) -> bytes:
    path = tmp / "doc.pdf"
    pdfgen.write_pdf(path, [[text]])
    return path.read_bytes()


class World:
    """Objects made by the admin for each case: a store named `target` with a file, and a
    stored response of the key `right`."""

    def __init__(self, url: str, tmp: Path) -> None:
        self.http = httpx.Client(base_url=url, timeout=120)
        self.tmp = tmp

    def as_(self, who: str) -> dict:
        return {"Authorization": f"Bearer key-{who}"}

    def store(self) -> str:
        r = self.http.post("/v1/vector_stores", json={"name": "target"}, headers=self.as_("admin"))
        return r.raise_for_status().json()["id"]

    def file(self, sid: str | None = None, who: str = "admin") -> str:
        body = _pdf(self.tmp, f"matrix document {time.time_ns()}")
        r = self.http.post(
            "/v1/files",
            files={"file": ("m.pdf", body, "application/pdf")},
            data={"purpose": "assistants"},
            headers=self.as_(who),
        )
        fid = r.raise_for_status().json()["id"]
        if sid:
            self.http.post(
                f"/v1/vector_stores/{sid}/files", json={"file_id": fid}, headers=self.as_("admin")
            ).raise_for_status()
        return fid

    def response(self) -> str:
        r = self.http.post(
            "/v1/responses",
            json={"model": "smollm2-norag", "input": "hi", "max_output_tokens": 2},
            headers=self.as_("right"),
        )
        return r.raise_for_status().json()["id"]


def _case(op: str, w: World):
    """(method, path, request kwargs, status for a key with the scope on another store)."""
    store = "/v1/vector_stores/{sid}"
    if op in ("HealthHealth", "HealthReadyReady", "MetricsMetrics"):
        path = {
            "HealthHealth": "/health",
            "HealthReadyReady": "/health/ready",
            "MetricsMetrics": "/metrics",
        }[op]
        return "GET", path, {}, 200
    chat = {
        "model": "smollm2-norag",
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 2,
    }
    if op == "createChatCompletion":
        w.store()
        return "POST", "/v1/chat/completions", {"json": {**chat, "model": "smollm2@target"}}, 404
    if op == "createCompletion":
        return (
            "POST",
            "/v1/completions",
            {"json": {"model": "smollm2", "prompt": "a", "max_tokens": 2}},
            200,
        )
    if op == "createEmbedding":
        return "POST", "/v1/embeddings", {"json": {"model": "all-MiniLM-L6-v2", "input": "hi"}}, 200
    if op == "listModels":
        return "GET", "/v1/models", {}, 200
    if op == "retrieveModel":
        w.store()
        return "GET", "/v1/models/smollm2@target", {}, 404
    if op == "createResponse":
        sid = w.store()
        body = {
            "model": "smollm2",
            "input": "hi",
            "max_output_tokens": 2,
            "tools": [{"type": "file_search", "vector_store_ids": [sid]}],
        }
        return "POST", "/v1/responses", {"json": body}, 404
    if op in ("getResponse", "deleteResponse", "listInputItems"):
        rid = w.response()
        method = "DELETE" if op == "deleteResponse" else "GET"
        tail = "/input_items" if op == "listInputItems" else ""
        return method, f"/v1/responses/{rid}{tail}", {}, 404
    if op == "listFiles":
        return "GET", "/v1/files", {}, 200
    if op == "createFile":
        body = _pdf(w.tmp, "an upload")
        return (
            "POST",
            "/v1/files",
            {
                "files": {"file": ("u.pdf", body, "application/pdf")},
                "data": {"purpose": "assistants"},
            },
            200,
        )
    if op in ("retrieveFile", "downloadFile", "deleteFile"):
        fid = w.file(w.store())
        method = "DELETE" if op == "deleteFile" else "GET"
        tail = "/content" if op == "downloadFile" else ""
        return method, f"/v1/files/{fid}{tail}", {}, 404
    if op == "listVectorStores":
        return "GET", "/v1/vector_stores", {}, 200
    if op == "createVectorStore":
        return "POST", "/v1/vector_stores", {"json": {"name": "mine"}}, 200
    sid = w.store()
    one = store.format(sid=sid)
    if op == "getVectorStore":
        return "GET", one, {}, 404
    if op == "modifyVectorStore":
        return "POST", one, {"json": {"metadata": {"k": "v"}}}, 404
    if op == "deleteVectorStore":
        return "DELETE", one, {}, 404
    if op == "searchVectorStore":
        return "POST", one + "/search", {"json": {"query": "matrix"}}, 404
    if op == "listVectorStoreFiles":
        return "GET", one + "/files", {}, 404
    if op == "createVectorStoreFile":
        fid = w.file(who="right")  # its own upload: a key attaches only files it may see
        return "POST", one + "/files", {"json": {"file_id": fid}}, 404
    if op == "createVectorStoreFileBatch":
        fid = w.file(who="right")
        return "POST", one + "/file_batches", {"json": {"file_ids": [fid]}}, 404
    if op == "getVectorStoreFileBatch":
        fid = w.file()
        r = w.http.post(one + "/file_batches", json={"file_ids": [fid]}, headers=w.as_("admin"))
        return "GET", one + f"/file_batches/{r.raise_for_status().json()['id']}", {}, 404
    fid = w.file(sid)
    if op == "getVectorStoreFile":
        return "GET", one + f"/files/{fid}", {}, 404
    if op == "updateVectorStoreFileAttributes":
        return "POST", one + f"/files/{fid}", {"json": {"attributes": {"a": "b"}}}, 404
    if op == "deleteVectorStoreFile":
        return "DELETE", one + f"/files/{fid}", {}, 404
    raise KeyError(op)


SPEC = json.loads((ROOT / "openapi" / "openapi.json").read_text())
OPERATIONS = sorted(
    op["operationId"]
    for path in SPEC["paths"].values()
    for op in path.values()
    if isinstance(op, dict) and "operationId" in op
)
CALLERS = {"no key": {}, "wrong key": {"Authorization": "Bearer nope"}}


@pytest.mark.parametrize("op", OPERATIONS)
def test_the_access_matrix(op, scoped, tmp_path):
    w = World(scoped.url, tmp_path)
    public = op in ("HealthHealth", "HealthReadyReady", "MetricsMetrics")
    for caller in ("no key", "wrong key", "noscope", "other", "right"):
        method, path, kw, other = _case(op, w)  # fresh objects for each caller
        headers = CALLERS.get(caller) or w.as_(caller)
        r = w.http.request(method, path, headers=headers, **kw)
        expected = {"no key": 401, "wrong key": 401, "noscope": 403, "other": other, "right": 200}[
            caller
        ]
        if public:
            expected = 200
        assert r.status_code == expected, (op, caller, r.status_code, r.text[:300])
        if r.status_code >= 400:
            assert r.json()["error"]["message"], (op, caller)


# -- two departments through the real server and the openai SDK ---------------------------
DEPARTMENTS = {
    "legal": [
        "The Heron contract penalty is 3 percent per week of delay.",
        "The Heron contract was signed by Minji Park on 2 May 2026.",
        "The Heron contract covers bridge inspection in Incheon.",
        "The Heron contract renewal deadline is 30 September 2027.",
        "The Heron contract insurer is Hanbit Mutual.",
        "The Heron contract arbitration seat is Seoul.",
        "The Heron contract value is 12 billion won.",
        "The Heron contract subcontractor is Daehan Steel.",
        "The Heron contract warranty lasts 5 years.",
        "The Heron contract confidentiality term is 10 years.",
    ],
    "finance": [
        "The Lotus fund budget for 2027 is 8.5 billion won.",
        "The Lotus fund auditor is Samil Partners.",
        "The Lotus fund invests in solar farms in Jeju.",
        "The Lotus fund manager is Jisoo Lee.",
        "The Lotus fund closes its books on 31 March.",
        "The Lotus fund reserve ratio is 12 percent.",
        "The Lotus fund pays dividends twice a year.",
        "The Lotus fund board meets in Busan.",
        "The Lotus fund currency hedge covers the dollar.",
        "The Lotus fund risk officer is Hyun Cho.",
    ],
}


@pytest.fixture(scope="module")
def departments(index_dir, engine, retriever, tmp_path_factory):
    data = tmp_path_factory.mktemp("departments")
    keys = data / "keys.toml"
    cli = [sys.executable, "-m", "ragserve.cli", "keys", "--file", str(keys), "add"]

    def add(*args: str) -> str:
        out = subprocess.run([*cli, *args], capture_output=True, text=True, check=True)
        return out.stdout.strip()

    made = {"admin": add("admin", "--scope", "admin")}
    for dept in DEPARTMENTS:
        made[dept] = add(
            dept,
            "--scope",
            "chat",
            "--scope",
            "files:read",
            "--scope",
            "stores:read",
            "--store",
            dept,
            "--default-store",
            dept,
        )
    made["contractor"] = add("contractor", "--scope", "chat", "--store", "legal")
    settings = make_settings(index_dir, data_dir=data, api_key_file=keys)
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as live:
        admin = openai.OpenAI(base_url=live.url + "/v1", api_key=made["admin"], max_retries=0)
        stores, documents = {}, {}
        for dept, facts in DEPARTMENTS.items():
            store = admin.vector_stores.create(name=dept)
            for n in range(2):
                path = data / f"{dept}-{n}.pdf"
                pdfgen.write_pdf(path, [facts[n * 5 : n * 5 + 5]])
                with path.open("rb") as fh:
                    done = admin.vector_stores.files.upload_and_poll(
                        vector_store_id=store.id, file=fh
                    )
                assert done.status == "completed", done.last_error
            stores[dept] = store.id
            documents[dept] = {f"{dept}-0.pdf", f"{dept}-1.pdf"}
        yield live, made, stores, documents, keys


def test_each_department_key_cites_only_its_own_documents(departments):
    live, keys, stores, documents, _ = departments
    for dept, other in (("legal", "finance"), ("finance", "legal")):
        sdk = openai.OpenAI(base_url=live.url + "/v1", api_key=keys[dept], max_retries=0)
        for question in DEPARTMENTS[other]:  # 10 each: 20 questions that match the other store
            answer = sdk.chat.completions.create(
                model="smollm2",
                messages=[{"role": "user", "content": question + " Explain."}],
                max_tokens=1,
            )
            cited = {s["document"] for s in answer.model_extra["sources"]}
            assert cited and cited <= documents[dept], (dept, question, cited)
        # naming the other store, in every way a request can, finds nothing of it
        for extra in ({"rag": {"vector_store_ids": [stores[other]]}},):
            with pytest.raises(openai.NotFoundError):
                sdk.chat.completions.create(
                    model="smollm2",
                    messages=[{"role": "user", "content": "x"}],
                    max_tokens=1,
                    extra_body=extra,
                )
        with pytest.raises(openai.NotFoundError):
            sdk.chat.completions.create(
                model=f"smollm2@{other}",
                messages=[{"role": "user", "content": "x"}],
                max_tokens=1,
            )
        with pytest.raises(openai.NotFoundError):
            sdk.responses.create(
                model="smollm2",
                input="x",
                max_output_tokens=1,
                tools=[{"type": "file_search", "vector_store_ids": [stores[other]]}],
            )
        with pytest.raises(openai.NotFoundError):
            sdk.vector_stores.retrieve(stores[other])
        models = {m.id for m in sdk.models.list()}
        assert f"smollm2@{dept}" in models and f"smollm2@{other}" not in models
        listed = {f.filename for f in sdk.files.list()}
        assert listed == documents[dept]
        for f in sdk.files.list():
            assert sdk.files.content(f.id).content.startswith(b"%PDF-")


def test_a_contractor_may_ask_but_not_upload(departments, tmp_path):
    live, keys, _, documents, _ = departments
    sdk = openai.OpenAI(base_url=live.url + "/v1", api_key=keys["contractor"], max_retries=0)
    answer = sdk.chat.completions.create(
        model="smollm2",
        messages=[{"role": "user", "content": DEPARTMENTS["finance"][0]}],
        max_tokens=1,
    )
    assert {s["document"] for s in answer.model_extra["sources"]} <= documents["legal"]
    path = tmp_path / "x.pdf"
    pdfgen.write_pdf(path, [["contractor upload"]])
    with path.open("rb") as fh, pytest.raises(openai.PermissionDeniedError) as caught:
        sdk.files.create(file=fh, purpose="assistants")
    assert caught.value.code == "insufficient_scope"


def test_a_revoked_key_is_refused_within_a_second_without_a_restart(departments):
    live, _, _, _, path = departments
    cli = [sys.executable, "-m", "ragserve.cli", "keys", "--file", str(path)]
    fresh = subprocess.run([*cli, "add", "temp"], capture_output=True, text=True, check=True)
    key = fresh.stdout.strip()
    headers = {"Authorization": f"Bearer {key}"}
    with httpx.Client(base_url=live.url, timeout=30) as http:
        deadline = time.monotonic() + 5
        while http.get("/v1/models", headers=headers).status_code != 200:
            assert time.monotonic() < deadline, "a new key was not accepted"
            time.sleep(0.05)
        subprocess.run([*cli, "revoke", "temp"], capture_output=True, check=True)
        revoked = time.monotonic()
        while http.get("/v1/models", headers=headers).status_code != 401:
            time.sleep(0.02)
            assert time.monotonic() - revoked < 1.0, "the revoked key still works after 1 s"
        assert path.read_text().count(key) == 0  # the key itself is never written


@pytest.fixture(scope="module")
def limited(index_dir, engine, retriever, tmp_path_factory):
    data = tmp_path_factory.mktemp("limited")
    keys = data / "keys.toml"
    keys.write_text(
        f'[[keys]]\nname = "slow"\nhash = "{hash_key("k-slow")}"\n'
        'scopes = ["chat", "stores:write"]\nrpm = 2\n\n'
        '[groups.staff]\nscopes = ["chat"]\nstores = ["*"]\n'
    )
    settings = make_settings(
        index_dir, data_dir=data, api_key_file=keys, trusted_proxies=("127.0.0.1",)
    )
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as live:
        yield live


class Recorder:
    def __init__(self) -> None:
        self.events: list[dict] = []

    def info(self, event: str, **fields) -> None:
        self.events.append({"event": event, **fields})


def test_rate_limits_answer_429_with_retry_after_and_writes_are_audited(limited, monkeypatch):
    recorder = Recorder()
    monkeypatch.setattr(middleware, "audit", recorder)  # the server's audit logger
    logged = recorder.events
    with httpx.Client(base_url=limited.url, headers={"Authorization": "Bearer k-slow"}) as http:
        made = http.post("/v1/vector_stores", json={"name": "audited"})
        assert made.status_code == 200
        assert http.get("/v1/models").status_code == 200
        refused = http.get("/v1/models")
        assert refused.status_code == 429 and int(refused.headers["retry-after"]) >= 1
        assert refused.json()["error"]["code"] == "rate_limit_exceeded"
    events = [e for e in logged if e["event"] == "audit"]
    assert [(e["key"], e["method"], e["path"], e["status"]) for e in events] == [
        ("slow", "POST", "/v1/vector_stores", 200)
    ]  # one event for the one write; reads are not audited
    assert "k-slow" not in repr(logged)  # never the key


def test_trusted_headers_only_from_the_proxy_and_only_for_known_groups(limited):
    with httpx.Client(base_url=limited.url) as http:
        user = {"X-Forwarded-User": "kim", "X-Forwarded-Groups": "staff, visitors"}
        assert http.get("/v1/models", headers=user).status_code == 200  # 127.0.0.1: the proxy
        stranger = {"X-Forwarded-User": "kim", "X-Forwarded-Groups": "visitors"}
        assert http.get("/v1/models", headers=stranger).status_code == 403
        assert http.get("/v1/files", headers=user).status_code == 403  # staff: chat only


def test_user_headers_from_elsewhere_are_refused(index_dir, engine, retriever, tmp_path):
    keys = tmp_path / "keys.toml"
    keys.write_text('[groups.staff]\nscopes = ["chat"]\n')
    settings = make_settings(
        index_dir, data_dir=tmp_path, api_key_file=keys, trusted_proxies=("10.9.8.7",)
    )
    with LiveServer(create_app(settings, engine=engine, retriever=retriever)) as live:
        r = httpx.get(
            live.url + "/v1/models",
            headers={"X-Forwarded-User": "kim", "X-Forwarded-Groups": "staff"},
        )
        assert r.status_code == 401 and r.json()["error"]["code"] == "untrusted_proxy"
