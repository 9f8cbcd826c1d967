"""Pure parsers of the engine's streams: build output, pull progress, and bytes split into lines."""
import collections
import re
from typing import Iterable, List, Optional

_STEP = re.compile(r"^Step (\d+/\d+) : (.*)$")
_NEW_LAYER = re.compile(r"^ ---> ([0-9a-f]{12,64})$")


class LineSplitter:
    """Bytes in arbitrary chunks -> complete text lines (UTF-8, undecodable bytes replaced). A line longer
    than ``max_line`` bytes comes out in pieces of that size: output without newlines cannot grow us."""

    def __init__(self, max_line: int = 16384):
        self._partial = b""
        self._max = max_line

    def feed(self, data: bytes) -> List[str]:
        if isinstance(data, str):
            data = data.encode("utf-8")
        pieces = (self._partial + data).split(b"\n")
        self._partial = pieces.pop()
        lines = []
        for piece in pieces:
            lines.extend(self._cut(piece))
        while len(self._partial) >= self._max:
            lines.append(_text(self._partial[:self._max]))
            self._partial = self._partial[self._max:]
        return lines

    def _cut(self, piece: bytes) -> List[str]:
        return [_text(piece[i:i + self._max]) for i in range(0, len(piece), self._max)] or [""]

    def flush(self) -> List[str]:
        rest, self._partial = self._partial, b""
        return [_text(rest)] if rest else []


def _text(raw: bytes) -> str:
    return raw.decode("utf-8", errors="replace").rstrip("\r")


class BuildOutput:
    """Follows the classic builder's JSON stream of one build.

    ``feed(chunk)`` returns the progress messages for people ("building image T (step 3/5): RUN ...");
    afterwards ``error`` is the builder's error (or None), ``image_id`` the built image and
    ``created_layers`` the intermediate images this build made (a failed build leaves them dangling)."""

    def __init__(self, tag: str, keep_lines: int = 15):
        self.tag = tag
        self.error: Optional[str] = None
        self.image_id: Optional[str] = None
        self.created_layers: List[str] = []
        self.step: Optional[str] = None
        self.instruction: Optional[str] = None
        self._lines = collections.deque(maxlen=keep_lines)
        self._splitter = LineSplitter()
        self._layer_is_new = False

    def feed(self, chunk: dict) -> List[str]:
        if chunk.get("error") or chunk.get("errorDetail"):
            self.fail((chunk.get("errorDetail") or {}).get("message") or chunk.get("error"))
            return []
        image_id = (chunk.get("aux") or {}).get("ID")
        if image_id:
            self.image_id = image_id
        text = chunk.get("stream")
        return self._lines_out(self._splitter.feed(text)) if text else []

    def finish(self) -> List[str]:
        return self._lines_out(self._splitter.flush())

    def fail(self, error: str) -> None:
        self.error = (error or "unknown error").strip()

    def failure_message(self) -> str:
        where = f" at step {self.step} ({self.instruction})" if self.step else ""
        message = f"building image {self.tag} failed{where}: {self.error}"
        output = [line for line in self._lines if line.strip()]
        return message + ("\nlast output:\n" + "\n".join(output) if output else "")

    def _lines_out(self, lines: Iterable[str]) -> List[str]:
        messages = []
        for line in lines:
            self._lines.append(line)
            step = _STEP.match(line)
            if step:
                self.step, self.instruction = step.groups()
                messages.append(f"building image {self.tag} (step {self.step}): {self.instruction}")
            elif line.startswith("Removing intermediate container"):
                self._layer_is_new = True
            else:
                layer = _NEW_LAYER.match(line)
                if layer and self._layer_is_new:
                    self.created_layers.append(layer.group(1))
                    self._layer_is_new = False
        return messages


class PullProgress:
    """The pull stream -> a few messages: per-layer states, not the byte counters."""

    _TICKS = ("Downloading", "Extracting", "Waiting", "Verifying Checksum")

    def __init__(self, ref: str):
        self.ref = ref
        self._last = None

    def feed(self, item: dict) -> List[str]:
        status = item.get("status")
        if not status or status in self._TICKS:
            return []
        message = f"pulling image {self.ref}: {item['id']} {status}" if item.get("id") else \
            f"pulling image {self.ref}: {status}"
        if message == self._last:
            return []
        self._last = message
        return [message]
