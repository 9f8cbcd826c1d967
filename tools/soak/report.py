"""The soak run's one table (stdout) and its report file (markdown): goals, failure classes with their first
examples, and the daemon's tracebacks grouped by where they were raised."""
import re
import sys

MB = 1 << 20


def _ms(seconds):
    return "-" if seconds is None else f"{seconds * 1000:.0f} ms" if seconds >= 0.01 else f"{seconds * 1000:.1f} ms"


def _ms_value(ms):
    return "-" if ms is None else f"{ms:.0f} ms" if ms >= 10 else f"{ms:.1f} ms"


def _triple(a, b, c, key, scale=1, fmt="{:.0f}"):
    if not (a and b and c):
        return "-"
    return "/".join(fmt.format(x[key] / scale) for x in (a, b, c))


def rows(results: dict, args, tolerance: dict, p99_goal_ms: float):
    """([row dict], every goal met)."""
    out = []
    before, peak1, after1 = results.get("phase1_before"), results.get("phase1_peak"), results.get("phase1_after")
    fz = results.get("fuzz")
    if fz:
        c = fz["counts"]
        ok = fz["cases"] >= args.cases and c["server_error"] == 0 and c["violations"] == 0
        out.append({"phase": "schemathesis", "count": f"{fz['cases']} cases / {c['requests']} req",
                    "errors": f"5xx {c['server_error']}, doc {c['violations']}", "p50": _ms(fz["p50"]),
                    "p99": _ms(fz["p99"]), "rss": _triple(before, peak1, after1, "rss", MB),
                    "threads": _triple(before, peak1, after1, "threads"), "fds": _triple(before, peak1, after1, "fds"),
                    "goal": f">= {args.cases} cases, 0 5xx, 0 doc violations", "ok": ok})
    pr = results.get("probes")
    if pr:
        c = pr["counts"]
        ok = c["server_error"] == 0 and c["violations"] == 0 and c["no_answer"] == 0 and pr["healthy_after"]
        out.append({"phase": "hostile probes", "count": f"{c['requests']} req + {pr['dropped']} dropped",
                    "errors": f"5xx {c['server_error']}, doc {c['violations']}, no answer {c['no_answer']}",
                    "p50": _ms(pr["p50"]), "p99": _ms(pr["p99"]), "rss": "-", "threads": "-", "fds": "-",
                    "goal": "0 5xx, 0 doc violations, all answered in 10 s, healthy after", "ok": ok})
    ld = results.get("load")
    if ld:
        idle, top, after = ld["idle"], ld["peak"], ld["after"]
        triple = {"rss": _triple(idle, top, after, "rss", MB), "threads": _triple(idle, top, after, "threads"),
                  "fds": _triple(idle, top, after, "fds")}
        ok = ld["errors"] == 0 and ld["p99"] is not None and ld["p99"] < p99_goal_ms
        out.append({"phase": f"load: {ld['clients']} GET clients", "count": f"{ld['requests']} req ({ld['rps']:.0f}/s)",
                    "errors": str(ld["errors"]), "p50": _ms_value(ld["p50"]), "p99": _ms_value(ld["p99"]),
                    **triple, "goal": f"0 errors, p99 < {p99_goal_ms:.0f} ms", "ok": ok})
        dr = ld["driver"]
        out.append({"phase": "load: chute driver", "count": f"{dr['cycles']} cycles / {dr['changes']} changes",
                    "errors": str(len(dr["errors"])), "p50": _ms(dr["p50"]), "p99": _ms(dr["p99"]), **triple,
                    "goal": "0 errors (every change succeeds)",
                    "ok": not dr["errors"] and not ld["driver_alive"]})
        back = all(after[k] <= idle[k] + tolerance[k] for k in tolerance)
        out.append({"phase": "load: back to idle", "count": f"after {ld['settled_in']:.0f} s", "errors": "-",
                    "p50": "-", "p99": "-", **triple,
                    "goal": f"RSS <= idle + {tolerance['rss'] // MB} MB, threads/fds <= idle + {tolerance['fds']}",
                    "ok": back})
    if results.get("error") or not results.get("daemon_alive"):
        problem = results.get("error") or "the daemon died"
        out.append({"phase": "run", "count": "-", "errors": problem[:60], "p50": "-", "p99": "-",
                    "rss": "-", "threads": "-", "fds": "-", "goal": "runs to the end, daemon alive", "ok": False})
    return out, all(r["ok"] for r in out) and bool(out)


COLUMNS = [("phase", "phase"), ("count", "cases/requests"), ("errors", "errors"), ("p50", "p50"), ("p99", "p99"),
           ("rss", "RSS MB idle/peak/after"), ("threads", "threads i/p/a"), ("fds", "fds i/p/a"),
           ("goal", "goal"), ("verdict", "verdict")]


def _cells(row):
    return [("PASS" if row["ok"] else "FAIL") if key == "verdict" else str(row[key]) for key, _ in COLUMNS]


def table_text(rows_) -> str:
    header = [title for _, title in COLUMNS]
    body = [_cells(r) for r in rows_]
    widths = [max(len(line[i]) for line in [header] + body) for i in range(len(header))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip()
             for line in [header, ["-" * w for w in widths]] + body]
    return "\n".join(lines)


def print_table(rows_) -> None:
    print("\nsoak results (phase 1 RSS/threads/fds: before/peak/after phase 1)")
    print(table_text(rows_))
    sys.stdout.flush()


def failure_classes(results: dict):
    """[(source, key tuple, bucket)] of the schemathesis and probe failures, most frequent first."""
    out = []
    for source in ("fuzz", "probes"):
        for key, bucket in ((results.get(source) or {}).get("examples") or {}).items():
            out.append((source, key, bucket))
    return sorted(out, key=lambda x: -x[2]["count"])


def traceback_classes(failures):
    """Groups the daemon's logged failures by (log message, exception type, deepest pdserver frame)."""
    groups = {}
    for f in failures:
        lines = [line for line in f["text"].splitlines() if line.strip()]
        frames = [line.strip() for line in lines if line.strip().startswith("File ")]
        ours = [fr for fr in frames if "/pdserver/" in fr] or frames
        where = re.sub(r'^File ".*?/((?:pdserver|site-packages)/)', r"\1", ours[-1]) if ours else ""
        key = (f["why"], f["type"], where)
        group = groups.setdefault(key, {"count": 0, "last": lines[-1].strip() if lines else f["type"],
                                        "text": f["text"]})
        group["count"] += 1
    return sorted(groups.items(), key=lambda x: -x[1]["count"])


def _cpu_per_request(ld) -> float:
    """Daemon CPU ms per answered GET of the load (the driver's few requests included)."""
    return ld["daemon_cpu"] * ld["load_wall"] * 1000 / max(ld["requests"], 1)


def _others(ld) -> float:
    """CPU (in cores) that neither the daemon, the load clients nor this harness used during the load."""
    return max(0.0, ld["machine_cpu"] - ld["daemon_cpu"] - ld["client_cpu"] - ld["harness_cpu"])


def print_notes(results: dict) -> None:
    ld = results.get("load")
    if ld:
        c = ld["canary"]
        print(f"load client: {ld['client_cpu'] * 100:.0f}% of one core over {ld['client_procs']} process(es), "
              f"reactor lag p99 {_ms_value(ld['client_lag_p99'])}; canary (one client, one request at a time): "
              f"p50 {_ms_value(c['p50'])}, p99 {_ms_value(c['p99'])}, {c['errors']} errors; daemon CPU "
              f"{ld['daemon_cpu'] * 100:.0f}% of one core ({_cpu_per_request(ld):.2f} ms per request), its reactor "
              f"thread runnable but waiting for a CPU "
              f"{ld['reactor_cpu_wait'] * 100:.0f}% of the time; machine {ld['machine_cpu'] * 100:.0f}% of one "
              f"core ({ld['cores']} cores), of which {_others(ld) * 100:.0f}% not this run's")
        print(f"daemon fds by kind: idle {ld['fd_kinds']['idle']}; after {ld['fd_kinds']['after']}")
    classes = failure_classes(results)
    if classes:
        print(f"failure classes ({len(classes)}; examples in the report):")
        for source, key, bucket in classes[:25]:
            example = bucket["examples"][0]
            probes_ = bucket.get("probes") or []
            what = (f"; probes: {', '.join(probes_[:4])}{' ...' if len(probes_) > 4 else ''}" if probes_
                    else f"; e.g. {example['url'][:80]}")
            print(f"  {bucket['count']:5d} x {source}: {key[0]} {key[1]} {key[2]} -> {key[3]}{what[:150]}")
        if len(classes) > 25:
            print(f"  ... {len(classes) - 25} more in the report")
    tbs = traceback_classes(results.get("failures") or [])
    if tbs:
        print(f"daemon tracebacks ({sum(g['count'] for _, g in tbs)} logged, {len(tbs)} distinct):")
        for (why, kind, where), group in tbs[:20]:
            print(f"  {group['count']:5d} x {why[:70]} | {group['last'][:110]} | at {where[:110]}")
    sys.stdout.flush()


def _example_lines(bucket):
    lines = []
    for ex in bucket["examples"]:
        lines.append(f"- `{ex['method']} {ex['url'][:300]}`" + (f" ({ex['probe']})" if ex.get("probe") else "")
                     + (f" content-type `{ex['content_type']}`" if ex.get("content_type") else ""))
        if ex.get("body"):
            lines.append(f"  - body: `{ex['body'][:300]}`")
        lines.append(f"  - answer: {ex['status']} ({ex['detail']}): `{(ex['response'] or '')[:300].strip()}`")
        if ex.get("case_id"):
            lines.append(f"  - schemathesis case id {ex['case_id']}")
    return lines


def markdown(results: dict, rows_, args) -> str:
    out = [f"# Soak run {results['started']}", "",
           f"Arguments: {' '.join(f'--{k.replace(chr(95), chr(45))} {v}' for k, v in results['args'].items())}",
           f"Total time: {results.get('seconds', 0):.0f} s.", "", "```", table_text(rows_), "```", ""]
    if results.get("excluded"):
        out += ["## Operations left out of the schemathesis run", ""]
        out += [f"- {m.upper()} {p}: {why}" for m, p, _, why in results["excluded"]] + [""]
    fz = results.get("fuzz")
    if fz:
        out += ["## Schemathesis rounds", ""]
        for r in fz["rounds"]:
            out.append(f"- round {r['round']} ({r['phases']}, max {r['max_examples']} examples per operation): "
                       f"{r['generated']} cases in {r['seconds']} s, exit {r['exit_code']}, "
                       f"{r['errored_operations']} errored operations")
            for f in r["failures"]:
                out.append(f"  - {f.get('code')} {f.get('title')}: {f.get('count')} on "
                           + ", ".join(f.get("operations", [])))
            for name, value in r["warnings"].items():
                out.append(f"  - warning {name}: {value if isinstance(value, (int, str)) else ', '.join(map(str, value))}")
        out.append(f"- judged here from the HAR: {fz['counts']}")
        out.append("")
    classes = failure_classes(results)
    out += ["## Failure classes (first examples)", ""]
    if not classes:
        out += ["None.", ""]
    for source, key, bucket in classes:
        out.append(f"### {source}: {key[0]} on {key[1]} {key[2]} -> {key[3]}, {bucket['count']} times")
        if bucket.get("probes"):
            out.append(f"probes: {', '.join(bucket['probes'])}")
        out += _example_lines(bucket) + [""]
    tbs = traceback_classes(results.get("failures") or [])
    out += ["## Daemon tracebacks (its JSON log), grouped", ""]
    if not tbs:
        out += ["None.", ""]
    for (why, kind, where), group in tbs:
        out += [f"### {group['count']} x {why} ({kind})", f"at {where}", "", "```",
                "\n".join(group["text"].splitlines()[-12:]), "```", ""]
    ld = results.get("load")
    if ld:
        out += ["## Load", "",
                f"{ld['clients']} clients over {ld['client_procs']} process(es), {ld['seconds']:.0f} s, think time "
                f"{ld['think']} s: {ld['requests']} requests ({ld['rps']:.0f}/s), p50 {_ms_value(ld['p50'])}, "
                f"p99 {_ms_value(ld['p99'])}, max {_ms_value(ld['max'])}.",
                f"Client: {ld['client_cpu'] * 100:.0f}% of one core, reactor lag p99 {_ms_value(ld['client_lag_p99'])}. "
                f"Canary (one client, one request at a time): {ld['canary']['requests']} requests, "
                f"{ld['canary']['errors']} errors, p50 {_ms_value(ld['canary']['p50'])}, "
                f"p99 {_ms_value(ld['canary']['p99'])}. Daemon CPU {ld['daemon_cpu'] * 100:.0f}% of one core "
                f"({_cpu_per_request(ld):.2f} ms per request), its reactor "
                f"thread waiting for a CPU {ld['reactor_cpu_wait'] * 100:.0f}% of the time; whole machine "
                f"{ld['machine_cpu'] * 100:.0f}% of one core ({ld['cores']} cores), of which "
                f"{_others(ld) * 100:.0f}% not this run's (dockerd, other work on the machine).",
                f"Resources idle {ld['idle']}, peak {ld['peak']}, after {ld['after']} (after {ld['settled_in']:.1f} s).",
                f"Open fds by kind: idle {ld['fd_kinds']['idle']}, after {ld['fd_kinds']['after']}.",
                "", "| path | requests | errors | statuses |", "|---|---|---|---|"]
        out += [f"| {p} | {s['requests']} | {s['errors']} | {s['statuses']} |" for p, s in ld["per_path"].items()]
        out.append("")
        for key, bucket in ld["error_classes"].items():
            out.append(f"- {bucket['count']} x {key}: {bucket['examples'][:2]}")
        dr = ld["driver"]
        out += ["", f"Driver: {dr['cycles']} cycles, {dr['changes']} changes; "
                + "; ".join(f"{k} n={dr[k]['count']} p50 {_ms(dr[k]['p50'])} max {_ms(dr[k]['max'])}"
                            for k in ("install", "update", "delete"))]
        out += [f"- {e}" for e in dr["errors"][:20]]
        out.append("")
    out += [f"Clean-up: daemon exit {results.get('daemon_exit')}, {results.get('swept')} Docker object(s) removed; "
            f"quiesce between the phases: {results.get('quiesce')}.", ""]
    return "\n".join(out)


def serializable(results: dict) -> dict:
    """results with the tuple-keyed example maps turned into lists (for results.json)."""
    out = dict(results)
    for source in ("fuzz", "probes"):
        if out.get(source):
            part = dict(out[source])
            part["examples"] = [{"key": list(k), **v} for k, v in part["examples"].items()]
            out[source] = part
    return out
