"""The one error hierarchy of the node. Every layer raises these; the API turns them into
``{"error": {code, message, field}}`` with ``status`` in one place (pdserver.api.routing)."""
from typing import Optional

MAX_MESSAGE = 2000  # echoed input is cut here: a 5 MB field must not come back as a 5 MB error


def shorten(text: str, limit: int = MAX_MESSAGE) -> str:
    """``text`` cut in its middle to about ``limit`` characters: its start and its end (where a build's
    last output is) stay."""
    if len(text) <= limit:
        return text
    half = limit // 2
    return f"{text[:half]} [... {len(text) - 2 * half} characters ...] {text[-half:]}"


class Error(Exception):
    status = 400
    code = "bad_request"

    def __init__(self, message: str, field: Optional[str] = None, code: Optional[str] = None,
                 headers: Optional[dict] = None):
        message = shorten(message)
        super().__init__(message)
        self.message = message
        self.field = shorten(field, 200) if field else field
        if code is not None:
            self.code = code
        self.headers = headers or {}

    def body(self) -> dict:
        return {"error": {"code": self.code, "message": self.message, "field": self.field}}


class InvalidInput(Error):
    status, code = 400, "bad_request"


class Unauthenticated(Error):
    status, code = 401, "unauthorized"


class Forbidden(Error):
    status, code = 403, "forbidden"


class NotFound(Error):
    status, code = 404, "not_found"


class MethodNotAllowed(Error):
    status, code = 405, "method_not_allowed"


class RequestTimeout(Error):
    status, code = 408, "request_timeout"


class Conflict(Error):
    status, code = 409, "conflict"


class TooLarge(Error):
    status, code = 413, "payload_too_large"


class UnsupportedMediaType(Error):
    status, code = 415, "unsupported_media_type"


class UpgradeRequired(Error):
    status, code = 426, "upgrade_required"


class Throttled(Error):
    status, code = 429, "too_many_requests"

    def __init__(self, retry_after: float, message: Optional[str] = None):
        seconds = int(retry_after) + 1
        super().__init__(message or f"too many attempts; retry in {seconds} s",
                         headers={"Retry-After": str(seconds)})
        self.retry_after = retry_after


class InternalError(Error):
    status, code = 500, "internal_error"


class Unavailable(Error):
    status, code = 503, "service_unavailable"
