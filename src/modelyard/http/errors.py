"""The one place where exceptions become OpenAI-shaped error responses.

``{"error": {"message", "type", "param", "code"}}`` with the status carried by the
:mod:`modelyard.errors` class. Malformed or missing request fields (pydantic validation errors)
answer **400** ``invalid_request_error`` with ``param`` naming the field, as OpenAI does, rather
than FastAPI's 422. Unknown routes answer 404, wrong methods 405, anything unexpected 500.
"""

from __future__ import annotations

import logging

import orjson
from pydantic import ValidationError
from starlette.exceptions import HTTPException
from starlette.requests import Request
from starlette.responses import Response

from modelyard.errors import InvalidRequest, ModelyardError, NotFound

log = logging.getLogger("modelyard.http")


def error_bytes(exc: ModelyardError) -> bytes:
    return orjson.dumps(exc.to_dict())


def error_response(exc: ModelyardError) -> Response:
    headers = {"x-should-retry": "false"} if exc.status_code in (400, 401, 403, 404, 413) else {}
    headers.update(getattr(exc, "headers", None) or {})  # e.g. Retry-After / x-ratelimit-* on a 429
    retry_after = getattr(exc, "retry_after_s", None)
    if retry_after is not None:
        headers = {**(headers or {}), "retry-after": str(max(1, round(retry_after)))}
    return Response(
        error_bytes(exc), status_code=exc.status_code, media_type="application/json", headers=headers
    )


def from_validation_error(exc: ValidationError) -> InvalidRequest:
    """The first validation problem as a 400, ``param`` in OpenAI's dotted/indexed spelling."""
    err = exc.errors(include_url=False)[0]
    param = ""
    for part in err["loc"]:
        param += f"[{part}]" if isinstance(part, int) else (f".{part}" if param else str(part))
    message = err["msg"]
    if err["type"] == "missing":
        message = f"Missing required parameter: '{param}'."
    elif param:
        message = f"Invalid value for '{param}': {message}."
    return InvalidRequest(message, param=param or None, code="invalid_value")


def as_modelyard_error(exc: BaseException) -> ModelyardError:
    """Any exception as a ModelyardError; unexpected ones are logged and hidden behind a 500."""
    if isinstance(exc, ModelyardError):
        return exc
    if isinstance(exc, ValidationError):
        return from_validation_error(exc)
    log.error("unhandled error", exc_info=exc)
    return ModelyardError("The server had an error while processing your request.")


async def _modelyard_handler(request: Request, exc: Exception) -> Response:
    return error_response(as_modelyard_error(exc))


async def _http_handler(request: Request, exc: Exception) -> Response:
    assert isinstance(exc, HTTPException)
    if exc.status_code == 404:
        err: ModelyardError = NotFound(f"Unknown request URL: {request.method} {request.url.path}.")
    else:
        err = InvalidRequest(str(exc.detail))
        err.status_code = exc.status_code
    return error_response(err)


EXCEPTION_HANDLERS = {
    ModelyardError: _modelyard_handler,
    ValidationError: _modelyard_handler,
    HTTPException: _http_handler,
}
