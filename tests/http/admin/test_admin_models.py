"""Admin REST API of the registry, driven with TestClient against a real SQLite registry.

The app here mounts the router with a minimal error handler of its own (the real mapper belongs to
``http/errors.py``); one test mounts ``create_admin_app`` in a plain Starlette host as ``app.py`` does.
"""

from __future__ import annotations

import hashlib
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse
from fastapi.testclient import TestClient
from pydantic import ValidationError
from starlette.applications import Starlette
from starlette.routing import Mount

from modelyard.errors import InvalidRequest, ModelyardError
from modelyard.http.admin import create_admin_app, models_router
from modelyard.registry import Registry


async def _error(_: Request, exc: Exception) -> JSONResponse:
    if isinstance(exc, ValidationError):
        first = exc.errors()[0]
        exc = InvalidRequest(first["msg"], param=".".join(str(p) for p in first["loc"]) or None)
    assert isinstance(exc, ModelyardError)
    return JSONResponse(exc.to_dict(), status_code=exc.status_code)


HANDLERS: dict[Any, Any] = {ModelyardError: _error, ValidationError: _error}


@pytest.fixture
def registry(tmp_path: Path) -> Iterator[Registry]:
    reg = Registry(f"sqlite:///{tmp_path / 'modelyard.db'}")
    reg.migrate()
    yield reg
    reg.close()


@pytest.fixture
def client(registry: Registry) -> Iterator[TestClient]:
    app = FastAPI(exception_handlers=HANDLERS)
    app.include_router(models_router, prefix="/admin")
    app.state.registry = registry
    with TestClient(app) as test_client:
        yield test_client


@pytest.fixture
def artifact(tmp_path: Path) -> Path:
    path = tmp_path / "weights.gguf"
    path.write_bytes(b"GGUF weights")
    return path


def _version_body(artifact: Path, **extra: Any) -> dict[str, Any]:
    return {"artifact_uri": str(artifact), "architecture": "llama", "context_length": 8192, **extra}


def test_register_version_alias_and_read_back(client: TestClient, registry: Registry, artifact: Path) -> None:
    created = client.post(
        "/admin/models", json={"name": "smol", "description": "SmolLM2", "is_base_model": False}
    )
    assert created.status_code == 201
    assert created.json()["name"] == "smol" and created.json()["versions"] == []

    version = client.post(
        "/admin/models/smol/versions",
        json=_version_body(artifact, quantization="Q4_1", serving_params={"n": 1}),
    )
    assert version.status_code == 201
    body = version.json()
    assert (body["version"], body["quantization"], body["serving_params"]) == (1, "Q4_1", {"n": 1})
    assert body["digest"] == "sha256:" + hashlib.sha256(b"GGUF weights").hexdigest()

    alias = client.put("/admin/models/smol/aliases/production", json={"version": 1})
    assert alias.status_code == 200
    assert alias.json() == {"object": "model.alias", "model": "smol", "alias": "production", "version": 1}

    shown = client.get("/admin/models/smol").json()
    assert shown["aliases"] == {"production": 1}
    assert shown["versions"][0]["aliases"] == ["production"]
    listed = client.get("/admin/models").json()
    assert listed["object"] == "list" and [m["name"] for m in listed["data"]] == ["smol"]
    assert registry.resolve("smol@production").digest == body["digest"]

    deleted = client.delete("/admin/models/smol/aliases/production")
    assert deleted.status_code == 200 and deleted.json()["deleted"] is True
    assert registry.get_model("smol").aliases == {}


def test_versions_are_numbered_per_model(client: TestClient, artifact: Path) -> None:
    client.post("/admin/models", json={"name": "a"})
    client.post("/admin/models", json={"name": "b"})
    numbers = [
        client.post(f"/admin/models/{m}/versions", json=_version_body(artifact)).json()["version"]
        for m in "aab"
    ]
    assert numbers == [1, 2, 1]


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "param"),
    [
        ("post", "/admin/models", {"name": "bad name"}, 400, "name"),
        ("post", "/admin/models", {"description": "no name"}, 400, "name"),
        ("post", "/admin/models", {"name": "dup"}, 409, "name"),
        ("get", "/admin/models/ghost", None, 404, "name"),
        (
            "post",
            "/admin/models/ghost/versions",
            {"artifact_uri": "openai_compat://x", "architecture": "r", "context_length": 1},
            404,
            "name",
        ),
        (
            "post",
            "/admin/models/dup/versions",
            {"artifact_uri": "/missing/file", "architecture": "r", "context_length": 1},
            400,
            "artifact_uri",
        ),
        (
            "post",
            "/admin/models/dup/versions",
            {"artifact_uri": "openai_compat://x", "architecture": "r", "context_length": "1"},
            400,
            "context_length",
        ),
        ("put", "/admin/models/dup/aliases/production", {"version": 3}, 404, "version"),
        ("put", "/admin/models/dup/aliases/Not-Valid", {"version": 1}, 400, "alias"),
        ("put", "/admin/models/dup/aliases/production", {}, 400, "version"),
        ("delete", "/admin/models/dup/aliases/canary", None, 404, "alias"),
    ],
)
def test_errors_are_raised_as_modelyard_errors(
    client: TestClient, method: str, path: str, body: dict[str, Any] | None, status: int, param: str
) -> None:
    assert client.post("/admin/models", json={"name": "dup"}).status_code == 201
    response = client.request(method.upper(), path, json=body)
    assert response.status_code == status, response.text
    error = response.json()["error"]
    assert error["param"] == param
    assert error["message"]


def test_unknown_fields_are_ignored(client: TestClient) -> None:
    response = client.post("/admin/models", json={"name": "m", "color": "blue"})
    assert response.status_code == 201
    assert "color" not in response.json()


def test_admin_app_mounts_in_a_starlette_host_with_lifespan_state(registry: Registry) -> None:
    @asynccontextmanager
    async def lifespan(_: Starlette) -> AsyncIterator[dict[str, Any]]:
        yield {"registry": registry}

    host = Starlette(routes=[Mount("/admin", app=create_admin_app(HANDLERS))], lifespan=lifespan)
    with TestClient(host) as test_client:
        assert test_client.post("/admin/models", json={"name": "hosted"}).status_code == 201
        assert test_client.get("/admin/models/ghost").status_code == 404
        assert test_client.get("/admin/openapi.json").json()["paths"]["/models"]["post"]["requestBody"][
            "required"
        ]
    assert registry.get_model("hosted").name == "hosted"
