"""Admin REST API of RAG (``/admin/rag``), mounted under ``/admin`` with the other admin routers.

``GET /admin/rag/corpora`` lists corpora; ``POST /admin/rag/corpora`` creates one (201);
``GET /admin/rag/corpora/{corpus}`` shows it with its versions (embedder identity, chunking, status,
stored evaluation) and aliases; ``POST /admin/rag/corpora/{corpus}/documents`` ingests
``{"documents": [{"id", "text", "metadata"?}], "delete": [ids], "prune": bool, "alias"}`` into the
version the alias names (only new or changed chunks are embedded); ``POST
/admin/rag/corpora/{corpus}/versions`` with ``{"embedder", "dimensions", "chunk_size", "chunk_overlap"}``
builds a new, unaliased version from the stored documents (201, blocking until built); ``PUT
/admin/rag/corpora/{corpus}/aliases/{alias}`` with ``{"version": n}`` moves an alias (atomic, audited);
``POST /admin/rag/corpora/{corpus}/query`` with ``{"query", "alias" | "version", "top_k", "filter"}``
retrieves from one version, embedded with that version's own embedder.

Who may do what: corpora are global in this slice, so every route needs a system key (no tenant):
``read`` (or ``admin``) to read and query, ``admin`` to change. A tenant key gets 403. Errors are the
OpenAI-shaped bodies of :mod:`modelyard.errors` (400 bad field, 404 unknown corpus/version/alias,
409 embedder mismatch or a version that is not ready).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Request
from starlette.concurrency import run_in_threadpool
from starlette.responses import JSONResponse

from modelyard.errors import InvalidRequest, NotFound, PermissionDenied
from modelyard.tenancy.records import ANONYMOUS, Principal, Scope

router = APIRouter(prefix="/rag", tags=["admin: rag"])


def _principal(request: Request) -> Principal:
    return getattr(request.state, "principal", None) or ANONYMOUS


def _service(request: Request, *, write: bool) -> Any:
    p = _principal(request)
    if p.tenant_id is not None or not p.scopes & ({Scope.ADMIN} if write else {Scope.ADMIN, Scope.READ}):
        need = "admin" if write else "read"
        raise PermissionDenied(f"RAG corpora are global: this needs a system key with the `{need}` scope.")
    runtime = getattr(request.state, "rag", None)
    if runtime is None:
        raise NotFound("RAG is not configured on this server.")
    return runtime.service()


async def _body(request: Request) -> dict[str, Any]:
    try:
        body = await request.json()
    except ValueError:
        raise InvalidRequest("the body is a JSON object") from None
    if not isinstance(body, dict):
        raise InvalidRequest("the body is a JSON object")
    return body


def _int(body: dict[str, Any], key: str, default: int | None) -> int | None:
    value = body.get(key, default)
    if value is not None and (not isinstance(value, int) or isinstance(value, bool)):
        raise InvalidRequest(f"`{key}` is an integer", param=key)
    return value


@router.get("/corpora")
async def list_corpora(request: Request) -> dict[str, Any]:
    svc = _service(request, write=False)
    found = await run_in_threadpool(svc.catalog.corpora)
    return {"object": "list", "data": [c.as_dict() for c in found]}


@router.post("/corpora", status_code=201)
async def create_corpus(request: Request) -> JSONResponse:
    from modelyard.rag.chunking import Chunking

    svc = _service(request, write=True)
    body = await _body(request)
    unknown = set(body) - {"name", "embedder", "dimensions", "chunk_size", "chunk_overlap", "description"}
    if unknown:
        raise InvalidRequest(f"unknown field `{sorted(unknown)[0]}`", param=sorted(unknown)[0])
    chunking = Chunking(_int(body, "chunk_size", 128) or 128, _int(body, "chunk_overlap", 16) or 0)
    description = body.get("description") or ""
    if not isinstance(description, str):
        raise InvalidRequest("`description` is a string", param="description")
    corpus = await run_in_threadpool(
        lambda: svc.create_corpus(
            body.get("name"), body.get("embedder", "packaged:all-minilm-l6-v2"), chunking,
            dimensions=_int(body, "dimensions", None), description=description, actor=_principal(request).actor,
        )
    )  # fmt: skip
    return JSONResponse(corpus.as_dict(), status_code=201)


@router.get("/corpora/{corpus}")
async def get_corpus(request: Request, corpus: str) -> dict[str, Any]:
    svc = _service(request, write=False)

    def show() -> dict[str, Any]:
        c = svc.catalog.corpus(corpus)
        return {
            **c.as_dict(),
            "versions": [v.as_dict() for v in svc.catalog.versions(corpus)],
            "aliases": svc.catalog.aliases(corpus),
        }

    return await run_in_threadpool(show)


@router.post("/corpora/{corpus}/documents")
async def ingest_documents(request: Request, corpus: str) -> dict[str, Any]:
    from modelyard.rag.sources import parse_document

    svc = _service(request, write=True)
    body = await _body(request)
    raw = body.get("documents", [])
    if not isinstance(raw, list):
        raise InvalidRequest("`documents` is a list of {id, text, metadata}", param="documents")
    docs = [parse_document(d, f"documents[{i}]") for i, d in enumerate(raw)]
    delete = body.get("delete", [])
    if not isinstance(delete, list) or not all(isinstance(d, str) for d in delete):
        raise InvalidRequest("`delete` is a list of document ids", param="delete")
    prune = body.get("prune", False)
    if not isinstance(prune, bool):
        raise InvalidRequest("`prune` is a boolean", param="prune")
    alias = body.get("alias", "production")
    if not isinstance(alias, str):
        raise InvalidRequest("`alias` is a string", param="alias")
    if not docs and not delete and not prune:
        raise InvalidRequest("give `documents`, `delete` or `prune`", param="documents")
    report = await run_in_threadpool(
        lambda: svc.ingest(
            corpus, docs, delete=delete, prune=prune, alias=alias, actor=_principal(request).actor
        )
    )
    return {"object": "rag.ingest_report", **report.as_dict()}


@router.post("/corpora/{corpus}/versions", status_code=201)
async def build_version(request: Request, corpus: str) -> JSONResponse:
    from modelyard.rag.chunking import Chunking

    svc = _service(request, write=True)
    body = await _body(request)
    unknown = set(body) - {"embedder", "dimensions", "chunk_size", "chunk_overlap"}
    if unknown:
        raise InvalidRequest(f"unknown field `{sorted(unknown)[0]}`", param=sorted(unknown)[0])

    def build() -> Any:
        c = svc.catalog.corpus(corpus)
        source = body.get("embedder", c.embedder_source)
        if not isinstance(source, str):
            raise InvalidRequest("`embedder` is an embedder source", param="embedder")
        chunking = Chunking(
            _int(body, "chunk_size", c.chunking.size) or c.chunking.size,
            _int(body, "chunk_overlap", c.chunking.overlap) or 0,
        )
        identity = svc.pool.identify(source, _int(body, "dimensions", None))
        return svc.build_version(corpus, identity, chunking, actor=_principal(request).actor)

    version = await run_in_threadpool(build)
    return JSONResponse(version.as_dict(), status_code=201)


@router.put("/corpora/{corpus}/aliases/{alias}")
async def set_alias(request: Request, corpus: str, alias: str) -> dict[str, Any]:
    svc = _service(request, write=True)
    body = await _body(request)
    version = _int(body, "version", None)
    if version is None:
        raise InvalidRequest("`version` is the version number the alias points at", param="version")
    moved = await run_in_threadpool(
        lambda: svc.catalog.set_alias(
            corpus, alias, version, actor=_principal(request).actor, reason="admin api"
        )
    )
    return {"corpus": corpus, "alias": alias, "version": moved.number}


@router.post("/corpora/{corpus}/query")
async def query(request: Request, corpus: str) -> dict[str, Any]:
    svc = _service(request, write=False)
    body = await _body(request)
    text = body.get("query")
    if not isinstance(text, str) or not text.strip():
        raise InvalidRequest("`query` is a non-empty string", param="query")
    ref: str | int | None = body.get("version", body.get("alias"))
    if ref is not None and not isinstance(ref, str | int):
        raise InvalidRequest("`alias` is a string, `version` an integer", param="alias")
    where = body.get("filter")
    if where is not None and not isinstance(where, dict):
        raise InvalidRequest("`filter` maps metadata keys to values", param="filter")
    k = _int(body, "top_k", 5) or 5
    result = await run_in_threadpool(lambda: svc.query(corpus, text, ref=ref, k=k, where=where))
    return result.as_dict()  # type: ignore[no-any-return]
