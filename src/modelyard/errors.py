"""One exception tree for modelyard, mapped to OpenAI-shaped JSON in one place (``http/errors.py``).

Raise these anywhere; never return error values. Each class carries its HTTP status, its OpenAI
``type`` and a stable ``code``::

    ModelyardError                      500 server_error
    ├── InvalidRequest                  400 invalid_request_error
    │   ├── ContextLengthExceeded       400 invalid_request_error / context_length_exceeded
    │   └── PayloadTooLarge             413 invalid_request_error / payload_too_large
    ├── AuthenticationError             401 authentication_error / invalid_api_key
    ├── PermissionDenied                403 permission_error
    ├── NotFound                        404 invalid_request_error / not_found
    │   ├── ModelNotFound               404 invalid_request_error / model_not_found
    │   └── AdapterNotFound             404 invalid_request_error / adapter_not_found
    ├── Conflict                        409 invalid_request_error / conflict
    ├── RateLimited                     429 rate_limit_exceeded
    ├── OverCapacity                    503 server_error / over_capacity
    │   ├── ModelLoading                503 server_error / model_loading (with Retry-After)
    │   └── ModelLoadFailed             503 server_error / model_load_failed
    ├── UpstreamError                   502 upstream_error  (a remote backend failed)
    │   └── UpstreamTimeout             504 upstream_error / timeout
    ├── EngineError                     500 server_error / engine_error
    └── ConfigError                     (start-up only: a bad setting, never sent to a client)
"""

from __future__ import annotations


class ModelyardError(Exception):
    """Base of every modelyard error. ``param`` names the offending request field, if any."""

    status_code: int = 500
    error_type: str = "server_error"
    code: str | None = None

    def __init__(self, message: str, *, param: str | None = None, code: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param
        if code is not None:
            self.code = code

    def to_dict(self) -> dict[str, dict[str, str | None]]:
        """The OpenAI error body ``{"error": {"message", "type", "param", "code"}}``."""
        return {
            "error": {
                "message": self.message,
                "type": self.error_type,
                "param": self.param,
                "code": self.code,
            }
        }


class InvalidRequest(ModelyardError):
    status_code = 400
    error_type = "invalid_request_error"


class ContextLengthExceeded(InvalidRequest):
    code = "context_length_exceeded"


class PayloadTooLarge(InvalidRequest):
    status_code = 413
    code = "payload_too_large"


class AuthenticationError(ModelyardError):
    status_code = 401
    error_type = "authentication_error"
    code = "invalid_api_key"


class PermissionDenied(ModelyardError):
    status_code = 403
    error_type = "permission_error"
    code = "permission_denied"


class NotFound(ModelyardError):
    status_code = 404
    error_type = "invalid_request_error"
    code = "not_found"


class ModelNotFound(NotFound):
    code = "model_not_found"


class AdapterNotFound(NotFound):
    code = "adapter_not_found"


class Conflict(ModelyardError):
    status_code = 409
    error_type = "invalid_request_error"
    code = "conflict"


class RateLimited(ModelyardError):
    status_code = 429
    error_type = "rate_limit_exceeded"
    code = "rate_limit_exceeded"


class OverCapacity(ModelyardError):
    status_code = 503
    error_type = "server_error"
    code = "over_capacity"


class ModelLoading(OverCapacity):
    """Every deployment of the model is still loading at start-up: answered with ``Retry-After``."""

    code = "model_loading"

    def __init__(self, message: str, *, retry_after_s: float) -> None:
        super().__init__(message, param="model")
        self.retry_after_s = retry_after_s


class ModelLoadFailed(OverCapacity):
    """Every deployment of the model failed to load; it stays unavailable until the config is fixed."""

    code = "model_load_failed"


class UpstreamError(ModelyardError):
    status_code = 502
    error_type = "upstream_error"
    code = "upstream_error"


class UpstreamTimeout(UpstreamError):
    status_code = 504
    code = "timeout"


class EngineError(ModelyardError):
    status_code = 500
    error_type = "server_error"
    code = "engine_error"


class ConfigError(ModelyardError):
    """A setting is invalid; raised at start-up with a message naming the value and the fix."""
