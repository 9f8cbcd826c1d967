"""The one error hierarchy of pdtools.

Every failure a user can cause or meet (bad answer, unreachable node, unreadable config) is a PdtoolsError whose
str() is the sentence the CLI prints, so the CLI never shows a traceback and scripts can catch one base class.
"""
import json
from http import HTTPStatus


class PdtoolsError(Exception):
    """Base of the errors pdtools reports to the user."""


class ConfigError(PdtoolsError):
    """The local configuration (token file) cannot be used."""


class ConnectionFailed(PdtoolsError):
    """The server could not be reached, or the connection broke before an answer."""

    def __init__(self, url, reason):
        super().__init__(f"cannot reach {url}: {reason}")
        self.url = url
        self.reason = reason


class BadResponse(PdtoolsError):
    """The server answered, but not in the shape of the Edge API (a wrong URL, a proxy's error page)."""

    def __init__(self, url, detail):
        super().__init__(f"unexpected answer from {url}: {detail}")
        self.url = url


class ApiError(PdtoolsError):
    """The server refused a request: status and the `{"error": {code, message, field}}` body it sent.

    retry_after is the Retry-After header of a throttled answer (seconds or an HTTP date), for scripts that wait.
    """

    def __init__(self, status, code, message, field=None, retry_after=None):
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.field = field
        self.retry_after = retry_after

    @classmethod
    def from_response(cls, status, body, headers):
        """Build from a raw HTTP answer; a body that is not the API's error shape still gives a readable message."""
        retry_after = headers.get("Retry-After")
        try:
            error = json.loads(body)["error"]
            return cls(status, error["code"], error["message"], error.get("field"), retry_after)
        except (ValueError, TypeError, KeyError):
            return cls(status, f"http_{status}", f"HTTP {status} {_phrase(status)}".rstrip(), None, retry_after)

    def __str__(self):
        return with_field(self.message, self.field)


def with_field(message, field):
    """The message with "(field: F)" after it, unless there is no field or the message starts by naming it."""
    if not field or message.startswith(f"{field}: "):
        return message
    return f"{message} (field: {field})"


def _phrase(status):
    try:
        return HTTPStatus(status).phrase
    except ValueError:
        return ""
