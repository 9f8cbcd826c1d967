"""Phase 1b: hand-written hostile requests, the classes of DESIGN.md section 8 that generated cases rarely reach.

Per operation of the document (the same exclusions as the schemathesis run, except that the password change
and the user deletion are probed with a user that does not exist, never the logged-in one):
- each path parameter and each query parameter alone set to a hostile value (integers past 64 bits, a lone
  surrogate, invalid UTF-8, NUL, 10,000 characters, ...), the others valid;
- for POST and PUT, hostile JSON bodies: nesting 100,000 deep, each leaf of a valid body replaced by a lone
  surrogate, a 5,000-digit integer, 2^64, 1e400, NaN, ...; invalid UTF-8, truncated, empty, over the size limit;
- for the chute uploads (POST /api/v1/chutes, PUT /api/v1/chutes/{chute}), hostile tar archives: truncated,
  garbage, a YAML alias bomb, deep YAML nesting, a member outside the project, a symlinked paradrop.yaml;
- clients that connect and drop mid-request.
Requests are raw bytes on a socket (so invalid bytes reach the server as sent), one connection each, 10 s
timeout. Each answer is judged like the schemathesis ones (fuzz.Judge); no answer in 10 s counts as an error.
A raw non-ASCII byte in the request line is not HTTP; the node still answers it with its JSON error.
"""
import io
import json
import re
import socket
import tarfile
import time
from http.client import HTTPResponse
from urllib.parse import quote

BIG = "1" + "0" * 30
PATH_VALUES = {
    "2^64": "18446744073709551616", "10^30": BIG, "-1": "-1", "-2^63-1": "-9223372036854775809",
    "lone surrogate": "%ED%A0%80", "invalid UTF-8": "%FF%FE", "NUL": "%00", "10k chars": "a" * 10000,
    "dot-dot": "..", "encoded slash": "a%2Fb", "raw byte 0xff": b"\xff", "e-acute": "%C3%A9",
}
QUERY_VALUES = {
    "2^64": "18446744073709551616", "10^30": BIG, "-10^30": "-" + BIG, "1e400": "1e400", "NaN": "NaN",
    "lone surrogate": "%ED%A0%80", "invalid UTF-8": "%FF%FE", "NUL": "%00", "10k chars": "a" * 10000,
    "empty": "",
}
# raw JSON texts that replace one leaf of a valid body
LEAF_VALUES = {
    "lone surrogate": '"\\ud800"', "5000-digit integer": "9" * 5000, "2^64": str(2 ** 64), "1e400": "1e400",
    "NaN": "NaN", "nested 10k": "[" * 10000 + "]" * 10000,
}
TIMEOUT = 10.0


def _request(port: int, method: str, target: bytes, headers: dict, body: bytes = b""):
    """(status, content type, text, seconds), or (None, error, "", seconds) when no answer came."""
    head = [method.encode() + b" " + target + b" HTTP/1.1", b"Host: 127.0.0.1:%d" % port, b"Connection: close"]
    head += [f"{k}: {v}".encode() for k, v in headers.items()]
    if body or method in ("POST", "PUT"):
        head.append(b"Content-Length: %d" % len(body))
    t0 = time.monotonic()
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
            sock.sendall(b"\r\n".join(head) + b"\r\n\r\n" + body)
            response = HTTPResponse(sock, method=method)
            response.begin()
            data = response.read()
            return (response.status, response.getheader("content-type") or "", data.decode("utf-8", "replace"),
                    time.monotonic() - t0)
    except (OSError, ValueError) as e:  # http.client errors are OSError or ValueError subclasses
        return None, f"{type(e).__name__}: {e}", "", time.monotonic() - t0


def _fill(schema: dict, name: str = ""):
    """A small valid instance of a body schema (required properties only)."""
    if "enum" in schema:
        return schema["enum"][0]
    kind = schema.get("type")
    if kind == "object":
        return {key: _fill(sub, key) for key, sub in (schema.get("properties") or {}).items()
                if key in schema.get("required", [])}
    if kind == "array":
        return []
    if kind == "integer":
        return max(1, schema.get("minimum", 1))
    if kind == "boolean":
        return True
    return "soak-nobody" if "user" in name else "soak-x"


def template(method: str, path: str, op: dict, chute: str):
    """A valid-looking JSON body for a POST or PUT (the chute routes take {config} without a documented schema)."""
    schema = (((op.get("requestBody") or {}).get("content") or {}).get("application/json") or {}).get("schema")
    if path == "/api/v1/chutes":
        return {"config": _chute_config("soak-hostile", 1)}
    if path == "/api/v1/chutes/{chute}":
        return {"config": _chute_config(chute, 99)}
    if path.endswith("/config") and "{chute}" in path:
        return {"config": _chute_config(chute, 99)}
    if path.endswith("/restart"):
        return {"environment": {"SOAK": "x"}}
    if schema and schema.get("properties"):
        return _fill(schema)
    return {}


def _chute_config(name: str, version: int) -> dict:
    return {"name": name, "version": version,
            "services": {"main": {"type": "image", "image": "paradrop/busybox:latest", "command": ["sleep", "60"]}}}


def _leaves(value, prefix=()):
    """Paths to the string and number leaves of a JSON value (at most 3 deep)."""
    if isinstance(value, dict):
        for key, sub in value.items():
            yield from _leaves(sub, prefix + (key,))
    elif isinstance(value, list):
        for i, sub in enumerate(value[:1]):
            yield from _leaves(sub, prefix + (i,))
    elif len(prefix) <= 4:
        yield prefix


def _replace(value, path, sentinel):
    if not path:
        return sentinel
    copy = dict(value) if isinstance(value, dict) else list(value)
    copy[path[0]] = _replace(value[path[0]], path[1:], sentinel)
    return copy


def body_probes(body):
    """[(name, content type, bytes)] of hostile bodies around a valid ``body``."""
    valid = json.dumps(body).encode()
    out = [
        ("nested arrays 100k", "application/json", b"[" * 100000 + b"]" * 100000),
        ("nested objects 50k", "application/json", b'{"a":' * 50000 + b"1" + b"}" * 50000),
        ("invalid UTF-8", "application/json", valid.replace(b'"', b'"\xff\xfe', 1) if b'"' in valid else b"\xff"),
        ("truncated", "application/json", valid[: max(1, len(valid) // 2)]),
        ("empty", "application/json", b""),
        ("top-level array", "application/json", b"[]"),
        ("top-level null", "application/json", b"null"),
        ("top-level 2^64", "application/json", str(2 ** 64).encode()),
        ("over 1 MiB", "application/json", b'{"pad": "' + b"x" * (2 << 20) + b'"}'),
        ("plain text type", "text/plain", valid),
        ("duplicate keys", "application/json", valid[:-1] + (b", " if len(valid) > 2 else b"") + valid[1:]),
        ("BOM", "application/json", b"\xef\xbb\xbf" + valid),
    ]
    sentinel = "\x00soak-leaf\x00"
    marker = json.dumps(sentinel).encode()
    for leaf in _leaves(body):
        text = json.dumps(_replace(body, leaf, sentinel)).encode()
        for name, raw in LEAF_VALUES.items():
            out.append((f"{'.'.join(map(str, leaf))} = {name}", "application/json",
                        text.replace(marker, raw.encode())))
    return out


def _tar(members) -> bytes:
    """A tar of (name, bytes or ("symlink", target))."""
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        for name, data in members:
            info = tarfile.TarInfo(name)
            if isinstance(data, tuple):
                info.type, info.linkname = tarfile.SYMTYPE, data[1]
                tar.addfile(info)
            else:
                info.size = len(data)
                tar.addfile(info, io.BytesIO(data))
    return buffer.getvalue()


def tar_probes(chute: str, version: int):
    yaml_ok = f"name: {chute}\nversion: {version}\nservices:\n  main:\n    type: light\n    image: busybox\n" \
              f"    command: sleep 60\n".encode()
    laughs = "a: &a [x, x, x, x, x, x, x, x, x, x]\n" + "".join(
        f"{chr(98 + i)}: &{chr(98 + i)} [{', '.join(['*' + chr(97 + i)] * 10)}]\n" for i in range(8))
    valid = _tar([("paradrop.yaml", yaml_ok)])
    return [
        ("tar truncated", "application/x-tar", valid[: len(valid) // 3]),
        ("tar garbage", "application/x-tar", bytes(range(256)) * 64),
        ("tar YAML alias bomb", "application/x-tar",
         _tar([("paradrop.yaml", (f"name: {chute}\nversion: {version}\n" + laughs).encode())])),
        ("tar YAML nested 10k", "application/x-tar",
         _tar([("paradrop.yaml", b"name: " + b"[" * 10000 + b"]" * 10000 + b"\n")])),
        ("tar YAML lone surrogate", "application/x-tar",
         _tar([("paradrop.yaml", f'name: "\\ud800"\nversion: {version}\n'.encode())])),
        ("tar YAML version 1e400", "application/x-tar",
         _tar([("paradrop.yaml", yaml_ok.replace(f"version: {version}".encode(), b"version: 1e400"))])),
        ("tar member ../", "application/x-tar", _tar([("paradrop.yaml", yaml_ok), ("../soak-escape", b"x")])),
        ("tar symlinked paradrop.yaml", "application/x-tar", _tar([("paradrop.yaml", ("symlink", "/etc/passwd"))])),
        ("tar invalid UTF-8 YAML", "application/x-tar", _tar([("paradrop.yaml", b"name: \xff\xfe\n")])),
    ]


def _target(path: str, params: dict, query: str = "") -> bytes:
    out = path.encode()
    for name, value in params.items():
        raw = value if isinstance(value, bytes) else value.encode()
        out = out.replace(b"{" + name.encode() + b"}", raw)
    return out + (b"?" + query.encode() if query else b"")


def run(node, doc: dict, fixtures: dict, judge, log=print) -> dict:
    """Sends every probe; returns counts and failure classes like fuzz.run. Websockets and a factory reset are
    left out; the password change and the user deletion name users that do not exist."""
    auth = {"Authorization": f"Bearer {node.token}"}
    valid = {"chute": fixtures["chute"], "change_id": str(fixtures["changes"][0]), "username": "soak-nobody"}
    counts = {"requests": 0, "server_error": 0, "violations": 0, "no_answer": 0, "by_kind": {}}
    examples, times = {}, []
    t0 = time.monotonic()

    def send(method, path, params, query="", content_type=None, body=b"", label=""):
        target = _target(path, params, query)
        headers = dict(auth)
        if content_type:
            headers["Content-Type"] = content_type
        status, ctype, text, seconds = _request(node.port, method.upper(), target, headers, body)
        counts["requests"] += 1
        times.append(seconds)
        if status is None:
            kind, detail = "no_answer", ctype
            counts["no_answer"] += 1
        else:
            verdict = judge.verdict(method, target.split(b"?")[0].decode("latin-1"), status, ctype, text)
            if verdict is None:
                return
            kind, detail = verdict
            counts["server_error" if kind == "server_error" else "violations"] += 1
        counts["by_kind"][kind] = counts["by_kind"].get(kind, 0) + 1
        key = (kind, method.upper(), path, status or 0)
        bucket = examples.setdefault(key, {"count": 0, "examples": [], "probes": []})
        bucket["count"] += 1
        if label not in bucket["probes"]:
            bucket["probes"].append(label)
        if len(bucket["examples"]) < 3:
            shown = body[:200].decode("utf-8", "backslashreplace")
            bucket["examples"].append({
                "method": method.upper(), "url": target.decode("latin-1")[:200], "probe": label,
                "content_type": content_type or "", "body": shown + (f"... ({len(body)} bytes)" if len(body) > 200
                                                                    else ""),
                "status": status, "detail": detail, "response": text[:300]})

    for method, path, op in ((m, p, o) for p, ops in doc["paths"].items() for m, o in ops.items()):
        if op.get("x-websocket") or re.search(r"(?i)factory.?reset", path):
            continue
        names = [p["name"] for p in op.get("parameters", []) if p["in"] == "path"]
        params = {name: valid.get(name, "soak-x") for name in names}
        base_body = template(method, path, op, fixtures["chute"]) if method in ("post", "put") else None
        plain = json.dumps(base_body).encode() if base_body is not None else b""
        plain_type = "application/json" if base_body is not None else None
        for name in names:
            for label, value in PATH_VALUES.items():
                send(method, path, {**params, name: value}, "", plain_type, plain, f"path {name} = {label}")
        for q in (p for p in op.get("parameters", []) if p["in"] == "query"):
            for label, value in QUERY_VALUES.items():
                send(method, path, params, f"{quote(q['name'])}={value}", plain_type, plain,
                     f"query {q['name']} = {label}")
            send(method, path, params, f"{q['name']}=1&{q['name']}=2", plain_type, plain,
                 f"query {q['name']} = repeated")
        if base_body is not None:
            for label, content_type, body in body_probes(base_body):
                send(method, path, params, "", content_type, body, f"body {label}")
            if path in ("/api/v1/chutes", "/api/v1/chutes/{chute}"):
                chute = "soak-hostile" if path == "/api/v1/chutes" else fixtures["chute"]
                for label, content_type, body in tar_probes(chute, 99):
                    send(method, path, params, "", content_type, body, f"body {label}")
    dropped = _connect_and_drop(node.port)
    healthy = node.alive() and node.healthy()
    times.sort()
    return {"counts": counts, "examples": examples, "dropped": dropped, "healthy_after": healthy,
            "seconds": time.monotonic() - t0,
            "p50": times[len(times) // 2] if times else None,
            "p99": times[min(len(times) - 1, int(len(times) * 0.99))] if times else None}


def _connect_and_drop(port: int, rounds: int = 50) -> int:
    """Clients that connect and drop: half a request line, half a body, nothing at all."""
    partials = [b"", b"GET /api/v1/chu", b"POST /api/v1/chutes HTTP/1.1\r\nContent-Length: 100000\r\n\r\n{\"co",
                b"GET /api/v1/chutes HTTP/1.1\r\nHost: x\r\n"]
    for i in range(rounds):
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT) as sock:
                sock.sendall(partials[i % len(partials)])
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, b"\x01\x00\x00\x00\x00\x00\x00\x00")
        except OSError:
            pass
    return rounds
