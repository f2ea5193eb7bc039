#!/usr/bin/env python3
"""Checks the provisioned Grafana dashboard against the metrics the services export.

For monitoring/grafana/dashboards/shop.json (or --dashboard):
  - the dashboard has a uid, and its panels unique ids and titles;
  - every panel and every query names the datasource by the uid that
    monitoring/grafana/provisioning/datasources/prometheus.yml provisions;
  - every query, with Grafana's $__rate_interval set to 5m, parses and returns at least one
    number (not NaN) when Prometheus holds the series of METRICS below. Each query runs through
    `promtool test rules` as an alert `count((query) >= 0) > 0` over those series, so a
    misspelt metric, label or label value, or a quantile over something that is no histogram,
    leaves the query empty and fails it.

METRICS is issue 11's list of what each service exports on GET /metrics, as the scrape sees it
(job = the service). A panel needing a metric that is not in it fails here until both the
service and this list have it.

Usage: check_dashboard.py [--quiet] [--dashboard FILE] [--datasources FILE]
Prints one line per check (--quiet: only the failures) and ends with "N passed, M failed";
exits 1 when any failed. Needs promtool (Debian: apt-get install prometheus).
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
import tempfile
from pathlib import Path

HERE = Path(__file__).resolve().parent
MONITORING = HERE.parent

# The buckets issue 11 gives the HTTP histogram; the other histograms are assumed to share them.
BUCKETS = ("0.001", "0.0025", "0.005", "0.01", "0.025", "0.05", "0.1", "0.25", "0.5", "1", "2.5", "5", "10", "+Inf")
HTTP_REQUESTS = {
    "auth": [("POST", "/auth/login", "200"), ("POST", "/auth/login", "401"), ("POST", "/auth/register", "201"),
             ("GET", "unmatched", "404")],
    "products": [("POST", "/products/buy", "201"), ("POST", "/products/buy", "504"), ("GET", "/products/{id}", "200"),
                 ("GET", "/products", "200")],
    "orders": [("GET", "/orders/{id}", "200"), ("GET", "/orders", "200")],
}
# (kind, name, label sets) per job; "histogram" stands for its _bucket, _sum and _count.
METRICS: dict[str, list[tuple[str, str, list[dict[str, str]]]]] = {
    job: [
        ("histogram", "http_server_request_duration_seconds",
         [{"http_request_method": m, "http_route": r, "http_response_status_code": c} for m, r, c in HTTP_REQUESTS[job]]),
        ("gauge", "shop_db_pool_connections", [{"state": "in_use"}, {"state": "idle"}]),
        ("gauge", "shop_db_pool_max_connections", [{}]),
        ("counter", "process_cpu_seconds_total", [{}]),
        ("gauge", "process_resident_memory_bytes", [{}]),
        ("gauge", "process_open_fds", [{}]),
        ("gauge", "process_start_time_seconds", [{}]),
    ]
    for job in ("auth", "products", "orders")
}
METRICS["products"] += [
    ("histogram", "shop_rpc_client_duration_seconds",
     [{"reply_mode": mode, "outcome": outcome} for mode in ("per-request", "direct")
      for outcome in ("order", "problem", "timeout", "unavailable", "bad_reply")]),
    ("counter", "shop_catalog_cache_requests_total",
     [{"cache": cache, "result": result} for cache in ("product", "page") for result in ("hit", "miss")]),
    ("gauge", "shop_amqp_connected", [{}]),
]
METRICS["orders"] += [
    ("counter", "shop_orders_created_total", [{}]),
    ("counter", "shop_amqp_consumed_total",
     [{"queue": "ORDER", "outcome": o} for o in ("ack", "dead_lettered", "retried", "expired")]),
    ("histogram", "shop_amqp_handling_duration_seconds", [{"queue": "ORDER"}]),
    ("gauge", "shop_amqp_consumers", [{"queue": "ORDER"}]),
    ("gauge", "shop_amqp_connected", [{}]),
]
METRICS["auth"] += [
    ("counter", "shop_logins_total", [{"outcome": o} for o in ("success", "invalid_credentials", "refused", "error")]),
    ("gauge", "shop_password_hash_queue_depth", [{}]),
]
PORTS = {"auth": 3001, "products": 3002, "orders": 3003}
# Grafana's own variables, as it would set them for a 5 s scrape and a short range.
GRAFANA_VARIABLES = {"$__rate_interval": "5m", "$__interval": "1m", "$__range": "30m"}


def selector(name: str, labels: dict[str, str]) -> str:
    inner = ", ".join(f'{k}="{v}"' for k, v in labels.items())
    return f"{name}{{{inner}}}"


def input_series() -> list[dict[str, str]]:
    """Twenty minutes of samples, one a minute, for every series of METRICS."""
    out = []
    for job, metrics in METRICS.items():
        target = {"job": job, "instance": f"{job}:{PORTS[job]}"}
        for kind, name, label_sets in metrics:
            for labels in label_sets:
                labels = {**target, **labels}
                if kind == "counter":
                    out.append({"series": selector(name, labels), "values": "0+3x20"})
                elif kind == "gauge":
                    out.append({"series": selector(name, labels), "values": "4x20"})
                else:
                    # Cumulative buckets: each one at least as large as the one below it.
                    for i, le in enumerate(BUCKETS):
                        out.append({"series": selector(f"{name}_bucket", {**labels, "le": le}),
                                    "values": f"0+{i + 1}x20"})
                    out.append({"series": selector(f"{name}_count", labels), "values": f"0+{len(BUCKETS)}x20"})
                    out.append({"series": selector(f"{name}_sum", labels), "values": "0+2x20"})
    return out


def datasource_uid(path: Path) -> str | None:
    match = re.search(r"^\s*uid:\s*[\"']?([\w.-]+)", path.read_text(), re.M)
    return match.group(1) if match else None


def query_returns_data(expr: str, series: list[dict[str, str]], work: Path) -> tuple[bool, str]:
    for variable, value in GRAFANA_VARIABLES.items():
        expr = expr.replace(variable, value)
    rules = {"groups": [{"name": "panel", "rules": [{"alert": "PanelHasData", "expr": f"count(({expr}) >= 0) > 0"}]}]}
    test = {
        "rule_files": ["rules.json"],
        "evaluation_interval": "1m",
        "tests": [{
            "interval": "1m",
            "input_series": series,
            "alert_rule_test": [{"eval_time": "15m", "alertname": "PanelHasData", "exp_alerts": [{"exp_labels": {}}]}],
        }],
    }
    (work / "rules.json").write_text(json.dumps(rules))
    (work / "test.json").write_text(json.dumps(test))
    run = subprocess.run(["promtool", "test", "rules", str(work / "test.json")],
                         capture_output=True, text=True, timeout=60)
    if run.returncode == 0:
        return True, ""
    lines = [line.strip() for line in (run.stdout + run.stderr).splitlines()]
    if any("got:[]" in line for line in lines):
        return False, "no data from the metrics issue 11 lists"
    return False, " ".join(line for line in lines if line and "Unit Testing" not in line)[:400]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="print only the failures and the count")
    parser.add_argument("--dashboard", type=Path, default=MONITORING / "grafana/dashboards/shop.json")
    parser.add_argument("--datasources", type=Path,
                        default=MONITORING / "grafana/provisioning/datasources/prometheus.yml")
    args = parser.parse_args()

    passed = failed = 0

    def check(name: str, ok: bool, detail: str = "") -> None:
        nonlocal passed, failed
        if ok:
            passed += 1
            if not args.quiet:
                print(f"ok   {name}")
        else:
            failed += 1
            print(f"FAIL {name}{': ' + detail if detail else ''}")

    dashboard = json.loads(args.dashboard.read_text())
    uid = datasource_uid(args.datasources)
    check(f"{args.datasources.name} provisions a datasource uid", uid is not None)
    check("the dashboard has a uid", bool(dashboard.get("uid")))
    panels = dashboard.get("panels") or []
    check("the dashboard has panels", bool(panels))
    ids = [p.get("id") for p in panels]
    titles = [p.get("title") for p in panels]
    check("panel ids are unique", len(set(ids)) == len(ids), str(ids))
    check("panel titles are unique and set", all(titles) and len(set(titles)) == len(titles), str(titles))

    series = input_series()
    with tempfile.TemporaryDirectory() as tmp:
        for panel in panels:
            where = f"panel {panel.get('id')} \"{panel.get('title')}\""
            check(f"{where}: datasource uid {uid}", (panel.get("datasource") or {}).get("uid") == uid,
                  str(panel.get("datasource")))
            targets = panel.get("targets") or []
            check(f"{where}: has queries", bool(targets))
            for target in targets:
                at = f"{where} query {target.get('refId')}"
                check(f"{at}: datasource uid {uid}", (target.get("datasource") or {}).get("uid") == uid,
                      str(target.get("datasource")))
                expr = target.get("expr") or ""
                ok, why = query_returns_data(expr, series, Path(tmp)) if expr else (False, "no expr")
                check(f"{at}: returns data: {expr}", ok, why)

    print(f"{passed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
