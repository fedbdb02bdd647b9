"""Turns run.py's raw results into the side-by-side table (terminal text and
BENCHMARKS.md). Pure formatting: no measuring here.

Every row shows tracebox, MLflow and the ratio = how many times better
tracebox is (MLflow / tracebox for times, memory and sizes; tracebox / MLflow
for rates), with the issue's goal for that row and whether it is met.
"""

import statistics

QUERY_LABELS = {
    "user": "search by user",
    "session": "search by session",
    "env_time": "search by environment + time range",
    "ordered": "search, ordered first page",
    "span_name": "search by span.name",
    "fulltext": "search full text (trace.text LIKE)",
    "get_trace": "get_trace by id",
}
SETUP_LABELS = {
    "sync/1": "synchronous logging, 1 client",
    "sync/4": "synchronous logging, 4 clients",
    "async/1": "async logging (SDK defaults), 1 client",
    "async/4": "async logging (SDK defaults), 4 clients",
}
MB = 1024 * 1024


def pct(xs, p):
    xs = sorted(xs)
    if not xs:
        return None
    k = (len(xs) - 1) * p
    lo = int(k)
    hi = min(lo + 1, len(xs) - 1)
    return xs[lo] + (xs[hi] - xs[lo]) * (k - lo)


def _num(x, digits=1):
    if x is None:
        return "—"
    if abs(x) >= 100:
        return f"{x:,.0f}"
    if abs(x) >= 10:
        return f"{x:.1f}"
    return f"{x:.{digits + 1}f}" if abs(x) < 1 else f"{x:.{digits}f}"


def _ratio(r):
    if r is None:
        return "—"
    return f"{r:,.0f}×" if r >= 100 else f"{r:.1f}×" if r >= 1 else f"{r:.2f}×"


class Row:
    def __init__(self, section, label, tb, ml, ratio=None, goal=None, met=None, note="", sdk="", server_ratio=""):
        self.section, self.label, self.tb, self.ml = section, label, tb, ml
        self.ratio, self.goal, self.met, self.note = ratio, goal, met, note
        # Query rows: the SDK's own time for the call (responses replayed from
        # memory) and the ratio of the servers' shares (call minus SDK time).
        self.sdk, self.server_ratio = sdk, server_ratio


def _better(tb, ml, lower_is_better=True):
    if tb is None or ml is None or tb == 0 and lower_is_better or ml == 0 and not lower_is_better:
        return None
    return ml / tb if lower_is_better else tb / ml


def _goal(ratio, minimum):
    if ratio is None:
        return None
    return ratio >= minimum


def rows(res):
    out = []
    ing = res.get("ingest", {})
    base = res.get("baseline", {})
    n = res["config"]["n"]
    tb_i, ml_i = ing.get("tracebox", {}), ing.get("mlflow", {})
    sec = f"Ingestion: {n:,} traces per set-up, real SDK, until counted on the server"
    ml_rates = [v["rate"] for v in ml_i.values() if "rate" in v]
    for key, label in SETUP_LABELS.items():
        t, m = tb_i.get(key, {}), ml_i.get(key, {})
        tr, mr = t.get("rate"), m.get("rate")
        ratio = _better(tr, mr, lower_is_better=False)
        goal = met = None
        if key == "sync/1":
            goal, met = "≥ 20×", _goal(ratio, 20)
        note = " ; ".join(x for x in (t.get("error", ""), m.get("error", "")) if x)[:120]
        out.append(Row(sec, f"{label} (traces/s)", _num(tr), _num(mr), _ratio(ratio), goal, met, note))
    t4 = tb_i.get("async/4", {})
    if "rate" in t4 and ml_rates:
        r = t4["rate"] / max(ml_rates)
        out.append(Row(sec, "async, 4 clients vs MLflow's best rate in any set-up", _num(t4["rate"]),
                       _num(max(ml_rates)), _ratio(r), "≥ 25×", _goal(r, 25)))
    for key in ("async/1", "async/4"):
        t, m = tb_i.get(key, {}), ml_i.get(key, {})
        if "dropped" in t or "dropped" in m:
            td, md = t.get("dropped"), m.get("dropped")
            out.append(Row(sec, f"traces dropped, {SETUP_LABELS[key]}", _fmt_drop(td, n), _fmt_drop(md, n), "—",
                           "0 dropped", None if td is None else td == 0))
    tprod = base.get("tracebox", {}).get("async/4", {}).get("seconds")
    mprod = base.get("mlflow", {}).get("async/4", {}).get("seconds")
    te, me = t4.get("seconds"), ml_i.get("async/4", {}).get("seconds")
    if tprod or mprod:
        tv = te / tprod if te and tprod else None
        mv = me / mprod if me and mprod else None
        out.append(Row(sec, "async, 4 clients: end-to-end ÷ the same clients' time with no server",
                       _num(tv, 2), _num(mv, 2), "—", "≤ 1.10", None if tv is None else tv <= 1.10))

    q = res.get("query", {})
    tbq, mlq = q.get("tracebox", {}), q.get("mlflow", {})
    sizes = res["config"]["sizes"]
    largest = str(max(sizes)) if sizes else None
    for size in map(str, sizes):
        sec = f"Queries at {int(size):,} stored traces: p50 (p95) ms through the SDK, first page of ≤ 100"
        tqs = tbq.get(size, {}).get("queries", {})
        mqs = mlq.get(size, {}).get("queries", {})
        for key in list(dict.fromkeys(list(tqs) + list(mqs))):
            name, _, variant = key.partition("/")
            label = QUERY_LABELS.get(name, name)
            if variant:
                label += ", with spans" if variant == "spans" else ", no spans"
            t, m = tqs.get(key, {}), mqs.get(key, {})
            tp, mp = _p(t, 0.5), _p(m, 0.5)
            ratio = _better(tp, mp)
            goal = met = None
            if size == largest:
                if name in ("span_name", "fulltext"):
                    goal = "≥ 100×"
                elif variant == "spans" or name == "get_trace":
                    goal = "≥ 20×"
                if goal:
                    met = _goal(ratio, float(goal.strip("≥ ×")))
            note = ""
            tr, mr = t.get("results", []), m.get("results", [])
            if tr and mr and tr[: len(mr)] != mr[: len(tr)]:
                note = "result counts differ"
            ts, ms = _server_side(t), _server_side(m)
            if ms is None and m.get("status") == "ok" and m.get("cold"):
                ms = _p(m, 0.5)  # one slow sample: the SDK's share is negligible
            sr = ms / ts if ts and ms is not None else None
            sdk = _sdk_alone(t)
            rtxt = _ratio(ratio)
            if ratio is None and m.get("status") == "timeout" and tp:
                lower = m.get("timeout_seconds", 0) * 1000 / tp
                rtxt = "> " + _ratio(lower)
                if met is None and goal:
                    met = _goal(lower, float(goal.strip("≥ ×"))) or None
            out.append(Row(sec, label, _qcell(t), _qcell(m), rtxt, goal, met, note,
                           sdk=_num(sdk) if sdk is not None else "—",
                           server_ratio=_ratio(sr)))

    c = res.get("cost", {})
    tc, mc = c.get("tracebox", {}), c.get("mlflow", {})
    sec = "Cost"

    def add(label, key, scale, unit_digits=1, goal=None, minimum=None):
        tv, mv = tc.get(key), mc.get(key)
        tv = tv / scale if tv is not None else None
        mv = mv / scale if mv is not None else None
        ratio = _better(tv, mv)
        out.append(Row(sec, label, _num(tv, unit_digits), _num(mv, unit_digits), _ratio(ratio), goal,
                       _goal(ratio, minimum) if minimum else None))

    for key in SETUP_LABELS:
        t, m = tb_i.get(key, {}), ml_i.get(key, {})
        tv = t["server_cpu_seconds"] / t["arrived"] * 1000 if t.get("arrived") and "server_cpu_seconds" in t else None
        mv = m["server_cpu_seconds"] / m["arrived"] * 1000 if m.get("arrived") and "server_cpu_seconds" in m else None
        out.append(Row(sec, f"server CPU per ingested trace, {SETUP_LABELS[key]} (ms)", _num(tv, 2), _num(mv, 2),
                       _ratio(_better(tv, mv))))
    for key in ("sync/1", "async/4"):
        t, m = tb_i.get(key, {}), ml_i.get(key, {})
        tv = t["server_write_bytes"] / t["arrived"] / 1024 if t.get("arrived") and "server_write_bytes" in t else None
        mv = m["server_write_bytes"] / m["arrived"] / 1024 if m.get("arrived") and "server_write_bytes" in m else None
        out.append(Row(sec, f"server writes to storage per ingested trace, {SETUP_LABELS[key]} (KB)", _num(tv, 1),
                       _num(mv, 1), _ratio(_better(tv, mv))))
    add("start-up to a healthy /health (s)", "startup_seconds", 1, 2, "≤ 1/50", 50)
    out.append(Row(sec, "processes", str(tc.get("processes", "—")), str(mc.get("processes", "—")), "—"))
    add("memory at rest, empty (MB, RSS summed over processes)", "rss_rest", MB, 1, "≤ 1/20", 20)
    add("memory peak under ingestion load (MB, RSS)", "rss_load", MB, 1, "≤ 1/20", 20)
    add("memory peak under ingestion load (MB, PSS: shared pages split)", "pss_load", MB, 1)
    if largest:
        add(f"memory at rest with {int(largest):,} traces (MB, RSS)", f"rss_rest_{largest}", MB, 1, "≤ 1/20", 20)
        add(f"memory peak during queries at {int(largest):,} (MB, RSS)", f"rss_query_{largest}", MB, 1, "≤ 1/20", 20)
    for size in sizes:
        key = f"disk_{size}"
        tv, mv = tc.get(key), mc.get(key)
        tv = tv / size / 1024 if tv is not None else None
        mv = mv / size / 1024 if mv is not None else None
        ratio = _better(tv, mv)
        last = str(size) == largest
        out.append(Row(sec, f"disk per trace at {size:,} traces (KB)", _num(tv, 2), _num(mv, 2), _ratio(ratio),
                       "≤ 1/2" if last else None, _goal(ratio, 2) if last else None))
    add("install size (MB: binary vs the mlflow venv)", "install_bytes", MB, 1, "≤ 1/20", 20)
    return out


def _fmt_drop(d, n):
    if d is None:
        return "—"
    return f"{d:,} of {n:,}"


def _p(entry, p):
    if entry.get("status") != "ok" or not entry.get("times"):
        return None
    return pct(entry["times"], p) * 1000


def _sdk_alone(entry):
    if entry.get("status") != "ok" or not entry.get("sdk_alone"):
        return None
    return statistics.median(entry["sdk_alone"]) * 1000


def _server_side(entry):
    """Median time of the call's own requests re-sent one by one without the
    SDK (the server's work plus one round trip per request), ms."""
    if entry.get("status") != "ok" or not entry.get("raw_http"):
        return None
    return statistics.median(entry["raw_http"]) * 1000


def _qcell(entry):
    if not entry:
        return "—"
    st = entry.get("status")
    if st == "timeout":
        return f"> {entry.get('timeout_seconds', 0):.0f} s (timeout)"
    if st != "ok":
        return st or "—"
    p50, p95 = _p(entry, 0.5), _p(entry, 0.95)
    reps = len(entry["times"])
    if entry.get("cold"):
        return f"{_num(p50)} (1 cold call)"
    s = f"{_num(p50)} ({_num(p95)})"
    return s if reps >= 20 else s + f" n={reps}"


def baseline_rows(res):
    base = res.get("baseline", {})
    ing = res.get("ingest", {})
    n = res["config"]["n"]
    out = []
    for key, label in SETUP_LABELS.items():
        b = base.get("tracebox", {}).get(key, {})
        bm = base.get("mlflow", {}).get(key, {})
        t = ing.get("tracebox", {}).get(key, {})
        m = ing.get("mlflow", {}).get(key, {})
        clients = int(key.split("/")[1])
        d = base.get(f"disabled/{clients}", {})
        out.append({
            "label": label,
            "disabled": d.get("rate"),
            "noop": b.get("rate"),
            "noop_ml": bm.get("rate"),
            "tracebox": t.get("rate"),
            "mlflow": m.get("rate"),
            "tb_share": (t["rate"] / b["rate"]) if t.get("rate") and b.get("rate") else None,
            "ml_share": (m["rate"] / bm["rate"]) if m.get("rate") and bm.get("rate") else None,
            "cpu_per_trace_ms": (b["cpu_seconds"] / n * 1000) if b.get("cpu_seconds") else None,
            "req_per_trace": (b["requests"] / n) if b.get("requests") else None,
        })
    return out


def client_overhead(res):
    """Where a synchronous client's time goes: waiting on the server vs the SDK."""
    out = {}
    for system in ("tracebox", "mlflow"):
        r = res.get("ingest", {}).get(system, {}).get("sync/1", {})
        if "seconds" in r and r.get("client_http_requests"):
            out[system] = {
                "per_trace_ms": r["clients_seconds"] / r["n"] * 1000,
                "wait_per_trace_ms": r["client_http_seconds"] / r["n"] * 1000,
                "per_request_wait_ms": r["client_http_seconds"] / r["client_http_requests"] * 1000,
                "requests_per_trace": r["client_http_requests"] / r["n"],
            }
    q = res.get("query", {})
    for system in ("tracebox", "mlflow"):
        for size, v in q.get(system, {}).items():
            gt = v.get("queries", {}).get("get_trace", {})
            if gt.get("times"):
                out.setdefault(system, {})[f"get_trace_{size}"] = {
                    "wall_ms": statistics.median(gt["times"]) * 1000,
                    "http_ms": statistics.median(gt["http"]) * 1000,
                    "floor_ms": v.get("http_floor_seconds", 0) * 1000,
                }
    return out


def auto_notes(res):
    out = []
    base = res.get("baseline", {}).get("tracebox", {})
    ing = res.get("ingest", {})
    ml_rates = [v["rate"] for v in ing.get("mlflow", {}).values() if "rate" in v]
    prod = base.get("async/4", {}).get("rate")
    tb4 = ing.get("tracebox", {}).get("async/4", {}).get("rate")
    if prod and ml_rates:
        out.append(
            f"Client limit: 4 SDK client processes with asynchronous logging produce {prod:.0f} traces/s on this "
            f"machine when every request is answered in-process (no server at all). MLflow's best rate was "
            f"{max(ml_rates):.1f} traces/s, so no server can be shown more than {prod / max(ml_rates):.0f}x faster "
            f"than MLflow here with this SDK"
            + (f"; tracebox reached {tb4:.0f} traces/s, {tb4 / prod * 100:.0f}% of that ceiling." if tb4 else "."))
    b1 = base.get("sync/1", {})
    t1 = ing.get("tracebox", {}).get("sync/1", {})
    if b1.get("cpu_seconds") and t1.get("n"):
        n = t1["n"]
        out.append(
            f"SDK overhead: a synchronous client spends {b1['cpu_seconds'] / n * 1000:.1f} ms of CPU per trace in the SDK "
            f"itself ({b1['requests'] / n:.0f} HTTP requests per trace, each prepared by `requests` and the SDK's "
            f"header providers), against {t1['client_http_seconds'] / n * 1000:.1f} ms per trace waiting on tracebox.")
    if b1.get("cpu_seconds") and t1.get("client_cpu_seconds") and t1.get("client_http_requests"):
        extra = (t1["client_cpu_seconds"] - b1["cpu_seconds"]) / t1["client_http_requests"] * 1000
        out.append(
            f"The no-op sink also skips the client's own networking: sending to tracebox, the synchronous client "
            f"used {extra:.2f} ms more CPU per request than with the no-op sink (sockets, `http.client` and "
            f"`urllib3` response handling), and waited {t1['client_http_seconds'] / t1['client_http_requests'] * 1000:.2f} ms "
            f"per request in total"
            + (f"; a bare `requests` round trip to tracebox's `/health` takes {_floor(res, 'tracebox'):.2f} ms."
               if _floor(res, "tracebox") else "."))
    t4 = ing.get("tracebox", {}).get("async/4", {})
    b4 = base.get("async/4", {})
    if t4.get("server_cpu_seconds") is not None and b4.get("cpu_seconds") and t4.get("client_cpu_seconds"):
        out.append(
            f"Async, 4 clients, CPU on this {res.get('environment', {}).get('nproc', '?')}-CPU machine: the clients used "
            f"{b4['cpu_seconds']:.1f} s alone and {t4['client_cpu_seconds']:.1f} s sending to tracebox, which itself "
            f"used {t4['server_cpu_seconds']:.1f} s ({t4['server_cpu_seconds'] / t4['n'] * 1000:.2f} ms per trace); "
            f"end-to-end {t4['seconds']:.1f} s against {b4['seconds']:.1f} s with no server.")
    loads = res.get("load", {})
    sizes = res["config"]["sizes"]
    if loads.get("tracebox") and loads.get("mlflow") and sizes:
        parts = []
        for system in ("tracebox", "mlflow"):
            total = sum(loads[system].values())
            parts.append(f"{system} {max(sizes) / total:.0f} traces/s" if total else system)
        out.append("Loading the query datasets (not comparable paths, for information): " + ", ".join(parts)
                   + " (tracebox over HTTP; MLflow in-process through its store).")
    return out


def _floor(res, system):
    vals = [v.get("http_floor_seconds") for v in res.get("query", {}).get(system, {}).values()
            if v.get("http_floor_seconds")]
    return min(vals) * 1000 if vals else None


def _mark(met):
    return "" if met is None else ("yes" if met else "NO")


def render(res):
    rs = rows(res)
    w = max(len(r.label) for r in rs) + 2
    lines = []
    section = None
    head = f"{'':{w}}{'tracebox':>18} {'MLflow':>18} {'ratio':>9}  {'goal':>8} {'met':>4}"
    qhead = head + f" {'SDK alone':>10} {'server ratio':>12}"
    for r in rs:
        if r.section != section:
            section = r.section
            lines += ["", r.section, qhead if r.section.startswith("Queries") else head]
        extra = f" {r.sdk:>10} {r.server_ratio:>12}" if r.section.startswith("Queries") else ""
        lines.append(f"{r.label:{w}}{r.tb:>18} {r.ml:>18} {r.ratio:>9}  {r.goal or '':>8} {_mark(r.met):>4}"
                     + extra + (f"  {r.note}" if r.note else ""))
    lines += ["", "Clients alone (traces/s): tracing disabled | no-op sink, run before tracebox | to tracebox "
              "| no-op sink, run before MLflow | to MLflow"]
    for b in baseline_rows(res):
        lines.append(f"  {b['label']:40} {_num(b['disabled']):>9} {_num(b['noop']):>9} {_num(b['tracebox']):>9} "
                     f"{_num(b['noop_ml']):>9} {_num(b['mlflow']):>9}")
    for c in res.get("checks", []):
        lines.append("check: " + c)
    return "\n".join(lines)


def markdown(res):
    env = res.get("environment", {})
    cfg = res["config"]
    rs = rows(res)
    L = []
    L.append("# tracebox vs MLflow: side-by-side benchmark")
    L.append("")
    L.append("Generated by `make bench-compare` (bench/compare/). Both servers run on this machine on loopback,")
    L.append("one at a time, and are driven by the real `mlflow-tracing` SDK with the same workload.")
    L.append("Absolute times are noisy on a shared machine; the ratios measured in one run are the figures")
    L.append("that count. Ratio = how many times better tracebox is (MLflow ÷ tracebox for times, memory")
    L.append("and sizes; tracebox ÷ MLflow for rates).")
    L.append("")
    L.append("## Run")
    L.append("")
    L.append(f"- Command: `{env.get('command', '?')}`")
    L.append(f"- Date: {env.get('date', '?')}; load average at start {' '.join(env.get('loadavg_start', []))}, "
             f"at end {' '.join(env.get('loadavg_end', []))}")
    L.append(f"- Machine: {env.get('nproc', '?')} CPUs (`nproc`), {env.get('cpu', '?')}, "
             f"{env.get('memory_gib', '?')} GiB memory, Linux {env.get('kernel', '?')}")
    L.append(f"- tracebox: `{env.get('tracebox', '?')}` (commit {env.get('tracebox_commit', '?')}), release build")
    L.append(f"- MLflow server: mlflow {env.get('mlflow_server', '?')} (SQLite backend, `mlflow server` defaults: "
             "4 uvicorn workers, artifact proxying)")
    L.append(f"- Clients: mlflow-tracing {env.get('mlflow_tracing', '?')}, Python {env.get('python', '?')}")
    L.append(f"- Sizes: N = {cfg['n']:,} traces per ingestion set-up; query datasets of "
             f"{', '.join(f'{s:,}' for s in cfg['sizes'])} traces; {cfg['reps']} repetitions per query "
             f"(fewer, at least 5, when a query exceeds {cfg['budget']:.0f} s in total: shown as n=…)")
    L.append("")
    L.append("## Results")
    L.append("")
    section = None
    for r in rs:
        q = r.section.startswith("Queries")
        if r.section != section:
            section = r.section
            if q:
                L += ["", f"**{section}**", "",
                      "| | tracebox | MLflow | ratio | goal | met | SDK alone | server-side ratio |",
                      "|---|---:|---:|---:|---|---|---:|---:|"]
            else:
                L += ["", f"**{section}**", "", "| | tracebox | MLflow | ratio | goal | met |",
                      "|---|---:|---:|---:|---|---|"]
        note = f" ({r.note})" if r.note else ""
        extra = f" {r.sdk} | {r.server_ratio} |" if q else ""
        L.append(f"| {r.label}{note} | {r.tb} | {r.ml} | {r.ratio} | {r.goal or ''} | {_mark(r.met)} |{extra}")
    L.append("")
    L.append("**The clients alone** (traces/s with the same N and set-up)")
    L.append("")
    L.append("Each \"no-op sink\" run is the same clients with every request answered in-process, run just "
             "before the server run it is compared with.")
    L.append("")
    L.append("| set-up | tracing disabled | no-op sink | to tracebox | tracebox ÷ no-op | no-op sink | to MLflow | "
             "MLflow ÷ no-op | SDK CPU per trace (ms) | requests per trace |")
    L.append("|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for b in baseline_rows(res):
        share = f"{b['tb_share'] * 100:.0f}%" if b["tb_share"] else "—"
        mshare = f"{b['ml_share'] * 100:.0f}%" if b["ml_share"] else "—"
        L.append(f"| {b['label']} | {_num(b['disabled'])} | {_num(b['noop'])} | {_num(b['tracebox'])} | {share} | "
                 f"{_num(b['noop_ml'])} | {_num(b['mlflow'])} | {mshare} | {_num(b['cpu_per_trace_ms'])} | "
                 f"{_num(b['req_per_trace'])} |")
    co = client_overhead(res)
    if co:
        L.append("")
        L.append("**Where a client's time goes** (synchronous, 1 client; `get_trace` at each size)")
        L.append("")
        for system, v in co.items():
            s = v.get
            if s("per_trace_ms"):
                L.append(f"- {system}: {v['per_trace_ms']:.1f} ms per trace, of which {v['wait_per_trace_ms']:.1f} ms "
                         f"waiting on the server ({v['requests_per_trace']:.0f} requests, "
                         f"{v['per_request_wait_ms']:.2f} ms each); the rest is the SDK's own work")
            for k, g in v.items():
                if k.startswith("get_trace_"):
                    L.append(f"- {system}, get_trace at {int(k[10:]):,} traces: {g['wall_ms']:.1f} ms in the SDK call, "
                             f"{g['http_ms']:.1f} ms of it in HTTP (2 requests)"
                             + (f"; a bare HTTP round trip (`/health` with `requests`) takes {g['floor_ms']:.2f} ms"
                                if system == "tracebox" else ""))
    notes = auto_notes(res)
    if notes:
        L.append("")
        L.append("**Notes computed from this run**")
        L.append("")
        L += [f"- {n}" for n in notes]
    if res.get("checks"):
        L.append("")
        L.append("**Checks**")
        L.append("")
        for c in res["checks"]:
            L.append(f"- {c}")
    L.append("")
    L.append(METHOD)
    return "\n".join(L) + "\n"


METHOD = """## Method

**Workload** (`bench/compare/workload.py`). Each trace is a chat turn logged with the SDK's
`mlflow.start_span`: a root CHAIN span, a RETRIEVER span (3 documents), a TOOL span (one of 8
tools) and an LLM span, chat inputs/outputs of about 1 KB, `update_current_trace(user=...,
session_id=..., client_request_id=..., tags={"environment": ...})`: about 4 KB of span data per
trace. 200 users, sessions of 5 traces, 70% production.

**Ingestion** (`ingest_client.py`). Client processes (1 or 4) import the SDK, set up, then start
together; each logs its share of the N traces and flushes. Synchronous logging is
`MLFLOW_ENABLE_ASYNC_TRACE_LOGGING=false` (one OTLP request per span, then StartTraceV3, on the
caller's thread); asynchronous is the SDK's default settings (batching span processor, a
1000-task queue that silently drops tasks when full, 10 sender threads). The clock runs from the
start signal until a count on the server (`search_traces`, 500 per page) shows all N traces;
traces that never arrive are counted as dropped once the count has not grown for 15 s. Rates are
traces that arrived per second. Completeness (trace info received and all 4 spans) is also read
from each server's SQLite file after the clock stops.

**The clients alone.** The same clients with the SDK's HTTP transport answered in-process
(`transport.NoopSink`: every request is prepared and serialised exactly as for a server, then
answered instantly) give the SDK's own production rate, the most any server could be shown to
accept from these clients on this machine; "tracing disabled" is the application code alone
(`mlflow.tracing.disable()`).

**Query datasets** (`dataset.py`, `load_tracebox.py`, `load_mlflow.py`). Logging 100,000 traces
through an MLflow server takes hours, so the datasets are loaded without the SDK but with the
SDK's exact bytes: 1,000 template traces are recorded from the SDK (what it sends: OTLP spans and
StartTraceV3 bodies), and trace i is template i mod 1000 with new trace/span ids, times (one
trace every 500 ms) and equal-length identifiers (order number, user, session, request id); a
self-check at every run compares clones with fresh SDK output. tracebox receives them over its
public HTTP API (StartTraceV3, then one OTLP request per 50 traces). MLflow receives the same
bodies in-process through its own store, exactly as its HTTP handlers pass them on
(`TraceInfo.from_proto` -> `SqlAlchemyStore.start_trace`, `Span.from_otel_proto` ->
`SqlAlchemyStore.log_spans`), into the SQLite file its running server uses, with fsync off for
the loader's own connection only.

**Queries** (`query_client.py`) go through the SDK as a user calls them:
`mlflow.search_traces(locations=[experiment], filter_string=..., max_results=100,
include_spans=True|False)` (with spans is the SDK default: one search request, then `batchGet`
of the returned traces, 10 per request) and `mlflow.get_trace(id)` (2 requests). Filters:
`metadata.`mlflow.trace.user` = ...`, `metadata.`mlflow.trace.session` = ...`, `tags.environment =
'production' AND attributes.timestamp_ms` within a window of 10% of the data, no filter with
`order_by timestamp_ms DESC`, `span.name = '<tool>'` (1/8 of the traces), `trace.text LIKE
'%ORD0012345%'` (exactly one trace). Parameters are drawn from a seeded generator (same sequence
for both servers); one untimed warm-up call per query; the number of results per call is compared
between the systems. A filter a server rejects is shown as "unsupported". For the first 5
repetitions the same call is repeated with every HTTP response replayed from memory
(`transport.Replay`): "SDK alone" is that time, the SDK's own work for the call (building
requests, parsing JSON into `Trace` objects), which no server can go below; then the call's
recorded requests are sent once more one after another with plain `requests` and no SDK:
"server-side ratio" is MLflow's median of that time ÷ tracebox's (each includes one loopback
round trip per request). A query whose first call alone would exceed the budget 5 times over is
measured once ("1 cold call"); a call that exceeds the SDK's HTTP timeout is shown as "> T s"
with a lower bound for the ratio, and the next query waits until the server is idle.

**Cost.** Start-up: process start to the first 200 from `/health` (polled every 10 ms), empty
data directory. Memory: RSS summed over the server's whole process tree (MLflow runs a
supervisor, 4 uvicorn workers and job runners; PSS, which splits pages shared between forked
workers, is shown too), at rest (empty: 3 s after start; with data: once the server has gone
idle after loading, under 0.2 s of CPU in 2 s, and 3 s more) and peak sampled every 0.5 s under
load. Disk: the data directory (database, WAL, indexes; MLflow's SQLite file and artifact
directory) divided by the traces stored, at the same moment as memory at rest. Install: the tracebox binary vs the mlflow venv (`pip install mlflow==3.17.2`).
"""


if __name__ == "__main__":
    # Re-render from saved raw figures, e.g. of a run stopped part-way:
    #   python bench/compare/report.py target/bench-compare/results.json [--markdown]
    import json
    import sys

    with open(sys.argv[1] if len(sys.argv) > 1 else "target/bench-compare/results.json") as f:
        saved = json.load(f)
    print(markdown(saved) if "--markdown" in sys.argv else render(saved))
