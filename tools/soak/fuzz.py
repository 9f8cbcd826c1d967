"""Phase 1: schemathesis (its CLI, pinned in requirements-soak.txt) against the node's own OpenAPI document.

The run covers every operation of GET /api/v1/openapi.json except the excluded ones (websockets, and routes that
would break the run: see ``EXCLUDE``). A schemathesis config file binds the chute and change path parameters,
part of the time, to a chute and a change that exist (else nearly every chute route answers 404 and its handler
is never reached), the DELETE of a chute to a second chute of its own (so the first one stays), and integers,
part of the time, to values past 64 bits.

Schemathesis' own verdicts are kept (its JSON report), but the counts come from its HAR report, one entry per
request sent, judged here against the document: a 5xx is a server error; a status the document does not list
for the operation, or a 4xx that is not the JSON error of the document (content type application/json, a body
matching components.schemas.Error) is a document violation.
"""
import json
import math
import re
import shutil
import statistics
import subprocess
import sys
import time
from pathlib import Path

import jsonschema

# (method or None for any, regex on the document's path, why); websocket operations are excluded as well
EXCLUDE = [
    (None, r"(?i)factory.?reset", "factory reset would wipe the node under test"),
    ("post", r"^/api/v1/password/change$", "may change the password of the logged-in user"),
    ("delete", r"^/api/v1/users/\{[^}]+\}$", "may delete the user the run is logged in as"),
]
DEFAULT_CHECKS = "not_a_server_error,status_code_conformance,response_schema_conformance,content_type_conformance"
MAX_ROUNDS = 4
BIG_INTEGERS = [2 ** 63, -2 ** 63 - 1, 10 ** 23, 2 ** 64]


def schemathesis_bin() -> str:
    path = Path(sys.executable).parent / "schemathesis"
    if not path.exists():
        raise RuntimeError(f"{path} is missing: install requirements-soak.txt (make soak does)")
    return str(path)


def operations(doc: dict):
    """[(method, path, operation)] of the document, in its order."""
    return [(method, path, op) for path, ops in doc["paths"].items() for method, op in ops.items()]


def exclusions(doc: dict):
    """[(method, path, operationId, why)] of the operations left out of the schemathesis run."""
    out = []
    for method, path, op in operations(doc):
        why = "websocket (x-websocket: true)" if op.get("x-websocket") else next(
            (reason for m, pattern, reason in EXCLUDE if (m is None or m == method) and re.search(pattern, path)),
            None)
        if why:
            out.append((method, path, op["operationId"], why))
    return out


def _toml_list(values) -> str:
    return "[" + ", ".join(json.dumps(v) for v in values) + "]"


def config_toml(doc: dict, excluded, chute: str, victim: str, change_ids) -> str:
    """The schemathesis config: dictionaries of existing identifiers and of integers past 64 bits."""
    skip = {op_id for _, _, op_id, _ in excluded}
    with_chute = [op["operationId"] for method, path, op in operations(doc)
                  if "{chute}" in path and op["operationId"] not in skip]
    lines = [
        "[dictionaries.chutes]", f"values = {_toml_list([chute])}",
        "[dictionaries.victims]", f"values = {_toml_list([victim])}",
        "[dictionaries.changes]", f"values = {_toml_list([str(i) for i in change_ids])}",
        "[dictionaries.bigints]", f"values = {_toml_list(BIG_INTEGERS)}",
        "",
        "[parameters]",
        '"path.change_id" = { dictionary = "changes", probability = 0.5 }',
        "",
        "[generation.dictionaries]",
        'integer = { dictionary = "bigints", probability = 0.1 }',
        "",
    ]
    deletes = [op_id for op_id in with_chute if op_id.startswith("delete")]
    others = [op_id for op_id in with_chute if not op_id.startswith("delete")]
    # two disjoint lists: an operation matched by two entries gets the first one's binding
    for ids, dictionary in ((deletes, "victims"), (others, "chutes")):
        if ids:
            lines += ["[[operations]]", f"include-operation-id = {_toml_list(ids)}",
                      f'parameters = {{ "path.chute" = {{ dictionary = "{dictionary}", probability = 0.5 }} }}', ""]
    return "\n".join(lines)


def _path_regex(path: str):
    return re.compile("^" + re.sub(r"\\\{[^}]+\\\}", "[^/]+", re.escape(path.rstrip("/"))) + "/?$")


class Judge:
    """Judges one recorded request/response against the document."""

    def __init__(self, doc: dict):
        self._routes = [(_path_regex(path), path, ops) for path, ops in doc["paths"].items()]
        self._error = jsonschema.Draft202012Validator(doc["components"]["schemas"]["Error"])

    def operation(self, method: str, url_path: str):
        """(document path, operation or None when the method is not documented there), or (None, None)."""
        for regex, path, ops in self._routes:
            if regex.match(url_path):
                return path, ops.get(method.lower())
        return None, None

    def verdict(self, method: str, url_path: str, status: int, content_type: str, text: str):
        """None when fine, else (kind, detail)."""
        if status >= 500:
            return "server_error", f"{status}"
        path, op = self.operation(method, url_path)
        if op is not None:
            documented = {code for code in op["responses"]}
            if str(status) not in documented and f"{str(status)[0]}XX" not in documented:
                return "undocumented_status", f"{status} not in {sorted(documented)}"
        elif not 400 <= status < 500:
            return "undocumented_status", f"{status} for an undocumented method or path"
        if 400 <= status < 500:
            if not content_type.split(";")[0].strip().lower() == "application/json":
                return "error_not_json", f"{status} with content type {content_type or 'none'}"
            try:
                body = json.loads(text)
            except ValueError:
                return "error_not_json", f"{status} with a body that is not JSON"
            if not isinstance(body, dict) or "error" not in body or not self._error.is_valid(body):
                return "error_schema", f"{status} body does not match components.schemas.Error"
        return None


def _header(headers, name: str) -> str:
    return next((h["value"] for h in headers if h["name"].lower() == name.lower()), "")


def judge_har(har_path: Path, judge: Judge, examples: dict, counts: dict, times: list, per_class: int = 3):
    """Adds the HAR's requests to ``counts`` {requests, server_error, violations, by_kind} and the first
    ``per_class`` examples of each (kind, operation, status) to ``examples``."""
    from urllib.parse import urlsplit
    har = json.loads(har_path.read_text(errors="replace"))
    for entry in har["log"]["entries"]:
        request, response = entry["request"], entry["response"]
        url = urlsplit(request["url"])
        status = int(response["status"])
        content = response.get("content") or {}
        text = content.get("text") or ""
        counts["requests"] += 1
        times.append(float(entry.get("time") or 0.0))
        verdict = judge.verdict(request["method"], url.path, status,
                                _header(response.get("headers", []), "content-type") or content.get("mimeType", ""),
                                text)
        if verdict is None:
            continue
        kind, detail = verdict
        counts["server_error" if kind == "server_error" else "violations"] += 1
        counts["by_kind"][kind] = counts["by_kind"].get(kind, 0) + 1
        path, _ = judge.operation(request["method"], url.path)
        key = (kind, request["method"], path or url.path, status)
        bucket = examples.setdefault(key, {"count": 0, "examples": []})
        bucket["count"] += 1
        if len(bucket["examples"]) < per_class:
            body = (request.get("postData") or {}).get("text") or ""
            bucket["examples"].append({
                "method": request["method"], "url": url.path + (f"?{url.query}" if url.query else ""),
                "content_type": _header(request.get("headers", []), "content-type"),
                "body": body[:300] + (f"... ({len(body)} chars)" if len(body) > 300 else ""),
                "status": status, "detail": detail, "response": text[:300],
                "case_id": _header(request.get("headers", []), "x-schemathesis-testcaseid")})


def run(node, doc: dict, workdir: Path, report_dir: Path, cases: int, seed: int, checks: str, workers: int,
        fixtures: dict, log=print) -> dict:
    """Runs schemathesis rounds until ``cases`` test cases were generated (at most MAX_ROUNDS rounds)."""
    excluded = exclusions(doc)
    selected = len(operations(doc)) - len(excluded)
    config = workdir / "schemathesis.toml"
    config.write_text(config_toml(doc, excluded, fixtures["chute"], fixtures["victim"], fixtures["changes"]))
    shutil.copy(config, report_dir / "schemathesis.toml")
    judge = Judge(doc)
    counts = {"requests": 0, "server_error": 0, "violations": 0, "by_kind": {}}
    examples, times, rounds = {}, [], []
    generated = 0
    per_op = max(10, math.ceil(cases / max(selected, 1)))
    t0 = time.monotonic()
    for round_no in range(MAX_ROUNDS):
        phases = "examples,coverage,fuzzing" if round_no == 0 else "fuzzing"
        har = report_dir / f"schemathesis-{round_no + 1}.har.json"
        summary = report_dir / f"schemathesis-{round_no + 1}.json"
        out = report_dir / f"schemathesis-{round_no + 1}.log"
        args = [schemathesis_bin(), "--config-file", str(config), "run", node.url + "/api/v1/openapi.json",
                "-H", f"Authorization: Bearer {node.token}", "--max-examples", str(per_op), "--phases", phases,
                "--seed", str(seed + round_no), "--no-shrink", "--continue-on-failure", "--checks", checks,
                "--suppress-health-check", "all", "--generation-database", "none", "--request-timeout", "10",
                "--workers", str(workers), "--report", "har,json", "--report-har-path", str(har),
                "--report-json-path", str(summary), "--no-color"]
        for _, _, op_id, _ in excluded:
            args += ["--exclude-operation-id", op_id]
        log(f"  schemathesis round {round_no + 1}: {phases}, up to {per_op} examples per operation, "
            f"seed {seed + round_no}")
        started = time.monotonic()
        with open(out, "wb") as f:
            proc = subprocess.run(args, stdout=f, stderr=subprocess.STDOUT, cwd=str(workdir), timeout=3600)
        if not summary.exists() or not har.exists():
            raise RuntimeError(f"schemathesis exited {proc.returncode} without its reports; see {out}")
        result = json.loads(summary.read_text())
        got = result["test_cases"]["generated"]
        generated += got
        judge_har(har, judge, examples, counts, times)
        rounds.append({"round": round_no + 1, "phases": phases, "max_examples": per_op, "generated": got,
                       "seconds": round(time.monotonic() - started, 1), "exit_code": proc.returncode,
                       "failures": result.get("failures", []), "errors": result.get("errors", []),
                       "errored_operations": result["operations"].get("errored", 0),
                       "warnings": {k: v for k, v in (result.get("warnings") or {}).items() if v}})
        log(f"    {got} cases in {time.monotonic() - started:.0f} s (total {generated}); "
            f"5xx so far {counts['server_error']}, document violations so far {counts['violations']}")
        if generated >= cases or not node.alive():
            break
        # fuzzing alone yields about got / per_op cases per example asked for; ask for the rest (+20 %)
        per_op = max(10, math.ceil(per_op * (cases - generated) / max(got, 1) * 1.2))
    times.sort()
    return {"cases": generated, "selected": selected, "excluded": excluded, "counts": counts,
            "examples": examples, "rounds": rounds, "seconds": time.monotonic() - t0,
            "p50": statistics.median(times) / 1000 if times else None,
            "p99": times[min(len(times) - 1, int(len(times) * 0.99))] / 1000 if times else None}
