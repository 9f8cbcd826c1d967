"""Plumbing of the small fake Edge APIs that pdtools unit tests talk to over a real socket."""
import contextlib
import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from websockets.server import ServerProtocol


class FakeServer(ThreadingHTTPServer):
    """Records what it saw in ``seen``; subclasses give the handler class."""

    daemon_threads = True
    handler = None

    def __init__(self):
        super().__init__(("127.0.0.1", 0), self.handler)
        self.url = f"http://127.0.0.1:{self.server_port}"
        self.seen = []


class JsonHandler(BaseHTTPRequestHandler):
    """Answers JSON and the node's error model, and plays a websocket stream of JSON frames."""

    protocol_version = "HTTP/1.1"  # websocket clients refuse an HTTP/1.0 answer, even a 401

    def log_message(self, *args):
        pass

    def do_GET(self):
        self._route("GET")

    def do_POST(self):
        self._route("POST")

    def do_PUT(self):
        self._route("PUT")

    def do_DELETE(self):
        self._route("DELETE")

    def _json(self, status, value, headers=None):
        data = json.dumps(value).encode()
        self.send_response(status)
        for name, header in {"Content-Type": "application/json", **(headers or {})}.items():
            self.send_header(name, header)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _error(self, status, code, message, field=None, headers=None):
        self._json(status, {"error": {"code": code, "message": message, "field": field}}, headers)

    def _stream(self, frames, clean_close=True):
        """Accept the upgrade (http.server has read the request: replay it), send the frames, and close
        with 1000 waiting for the client's close, or (``clean_close=False``) just drop the connection."""
        protocol = ServerProtocol()
        header_lines = "".join(f"{name}: {value}\r\n" for name, value in self.headers.items())
        protocol.receive_data(f"{self.requestline}\r\n{header_lines}\r\n".encode())
        [request] = protocol.events_received()
        protocol.send_response(protocol.accept(request))
        for frame in frames:
            protocol.send_text(json.dumps(frame).encode())
        if clean_close:
            protocol.send_close(1000)
        self.wfile.write(b"".join(protocol.data_to_send()))
        self.wfile.flush()
        self.close_connection = True
        if not clean_close:
            return
        self.connection.settimeout(5)
        while protocol.close_rcvd is None:
            data = self.rfile.read1(4096)
            if not data:
                break
            protocol.receive_data(data)


@contextlib.contextmanager
def serving(server):
    thread = threading.Thread(target=server.serve_forever, args=(0.05,), daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()
