"""The one error model of the API: a status code and ``{"error": {code, message, field}}``."""
from typing import Optional


class ApiError(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: Optional[str] = None, code: Optional[str] = None,
                 headers: Optional[dict] = None):
        super().__init__(message)
        self.message = message
        self.field = field
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class BadRequest(ApiError):
    status, code = 400, "bad_request"


class Unauthorized(ApiError):
    status, code = 401, "unauthorized"


class Forbidden(ApiError):
    status, code = 403, "forbidden"


class NotFound(ApiError):
    status, code = 404, "not_found"


class MethodNotAllowed(ApiError):
    status, code = 405, "method_not_allowed"


class Conflict(ApiError):
    status, code = 409, "conflict"


class PayloadTooLarge(ApiError):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(ApiError):
    status, code = 415, "unsupported_media_type"


class TooManyRequests(ApiError):
    status, code = 429, "too_many_requests"


class InternalError(ApiError):
    status, code = 500, "internal_error"


class ServiceUnavailable(ApiError):
    status, code = 503, "service_unavailable"
