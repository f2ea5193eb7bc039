#!/usr/bin/env python3
"""Asserts the hardening rules of issue 3 on the rendered Kubernetes overlays.

Renders kube/overlays/prod and kube/overlays/dev with `kubectl kustomize` and checks, on every
pod template (Deployments, StatefulSets, Jobs, ...):
  - runAsNonRoot, a non-zero user, allowPrivilegeEscalation false, readOnlyRootFilesystem true,
    capabilities drop ALL, seccomp RuntimeDefault, automountServiceAccountToken false, no host
    namespaces or hostPath volumes;
  - CPU and memory requests and a memory limit on every container;
  - on the services: startup, readiness (/readyz) and liveness (/healthz) probes, a high UID,
    MIGRATE_ON_START=false with a migration Job running the same image, and a termination grace
    period longer than the preStop pause plus SHUTDOWN_TIMEOUT_SECS;
and on the whole output: no credential as a literal in a ConfigMap or an env value, no Secret
committed, the JWT signing key reaching auth only (each other Secret only its own workload), the
restricted Pod Security Standard on the namespace, a default-deny NetworkPolicy, RabbitMQ
definitions that match common/src/amqp/topology.rs argument for argument (with products unable
to configure the order queue) and a max_message_size, and two Ingresses for one host that
limit each client address (login and register, in shop-credentials, more strictly) and do not
route GET /metrics. Where the monitoring component (kube/components/monitoring) is
included (prod must, dev must not: kind has no Prometheus Operator): a ServiceMonitor scraping
/metrics of exactly the three services, a PrometheusRule whose spec is
monitoring/prometheus/alerts.yml and whose alerts all have a severity, a summary and a
description, and a NetworkPolicy letting only the Prometheus pods of the monitoring namespace
reach the services' HTTP port; without it, no policy lets that namespace in.

Usage: check_manifests.py [--quiet] [--kube-dir DIR] [--repo-root DIR] [OVERLAY ...]
Prints one line per check (--quiet: only the failures) and ends with "N passed, M failed";
exits 1 when any failed.
Needs kubectl (with its built-in kustomize) and PyYAML.
"""

from __future__ import annotations

import argparse
import json
import re
import subprocess
import sys
from pathlib import Path

import yaml

SERVICES = ("auth", "products", "orders")
NAMESPACE = "shop"
POD_KINDS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job", "CronJob", "Pod"}
JWT_SECRET = "auth-jwt-key"
# Which workloads may reference which operator-created Secret; any other reference fails.
SECRET_READERS = {
    JWT_SECRET: {("Deployment", "auth")},
    "auth-credentials": {("Deployment", "auth"), ("Job", "auth-migrate")},
    "products-credentials": {("Deployment", "products"), ("Job", "products-migrate")},
    "orders-credentials": {("Deployment", "orders"), ("Job", "orders-migrate")},
    "postgres-credentials": {("StatefulSet", "postgres")},
    "rabbitmq-users": {("StatefulSet", "rabbitmq")},
}
# A URL with a password in it: scheme://user:password@host.
URL_WITH_PASSWORD = re.compile(r"://[^/\s:@]*:[^@\s]*@")
CREDENTIAL_WORDS = {"PASSWORD", "PASSWD", "PASS", "PWD", "SECRET", "TOKEN", "KEY", "CREDENTIALS", "APIKEY"}
# What the monitoring component adds (kube/components/monitoring), and who may scrape.
MONITORING_GROUP = "monitoring.coreos.com/"
ALERT_RULES = Path("monitoring/prometheus/alerts.yml")
PROMETHEUS_NAMESPACE = "monitoring"
PROMETHEUS_POD_LABELS = {"app.kubernetes.io/name": "prometheus"}
SEVERITIES = {"critical", "warning"}
# Names with these endings carry a path or a duration next to a credential word, not the
# credential itself (JWT_PRIVATE_KEY_FILE, TOKEN_TTL_SECS).
NON_CREDENTIAL_SUFFIXES = ("_FILE", "_PATH", "_DIR", "_SECS", "_MS", "_TTL")
# Names with these beginnings are switches about a credential (REQUIRE_JWT_KEY), not one.
NON_CREDENTIAL_PREFIXES = ("REQUIRE_",)


class Report:
    def __init__(self, quiet: bool) -> None:
        self.quiet = quiet
        self.passed = 0
        self.failed = 0

    def check(self, name: str, ok: bool, detail: str = "") -> bool:
        if ok:
            self.passed += 1
            if not self.quiet:
                print(f"ok   {name}")
        else:
            self.failed += 1
            print(f"FAIL {name}{': ' + detail if detail else ''}")
        return ok


def render(kube_dir: Path, overlay: str) -> list[dict]:
    out = subprocess.run(
        ["kubectl", "kustomize", str(kube_dir / "overlays" / overlay)],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout
    return [doc for doc in yaml.safe_load_all(out) if doc]


def name_of(obj: dict) -> str:
    return f"{obj['kind']}/{obj['metadata']['name']}"


def pod_spec(obj: dict) -> dict | None:
    kind = obj["kind"]
    if kind not in POD_KINDS:
        return None
    if kind == "Pod":
        return obj["spec"]
    if kind == "CronJob":
        return obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return obj["spec"]["template"]["spec"]


def containers(spec: dict) -> list[dict]:
    return spec.get("initContainers", []) + spec.get("containers", [])


def effective(spec: dict, container: dict, key: str):
    """A security setting as it applies to the container: its own, else the pod's."""
    own = (container.get("securityContext") or {}).get(key)
    return own if own is not None else (spec.get("securityContext") or {}).get(key)


def is_credential_name(name: str) -> bool:
    upper = name.upper()
    if upper.endswith(NON_CREDENTIAL_SUFFIXES) or upper.startswith(NON_CREDENTIAL_PREFIXES):
        return False
    return any(word in CREDENTIAL_WORDS for word in re.split(r"[^A-Z0-9]+", upper))


def literal_credential(name: str, value) -> str | None:
    """Why `name: value` looks like a credential written in the clear, or None."""
    if not isinstance(value, str) or not value.strip():
        return None
    if URL_WITH_PASSWORD.search(value):
        return "a URL with a password"
    if "PRIVATE KEY-----" in value:
        return "a private key"
    if is_credential_name(name):
        return "a credential-like name with a literal value"
    return None


def env_literals(spec: dict) -> dict[str, str]:
    return {
        env["name"]: env["value"]
        for c in containers(spec)
        for env in c.get("env", [])
        if "value" in env
    }


def config_of(objs: list[dict], spec: dict, container: dict) -> dict[str, str]:
    """The environment a container gets from its ConfigMaps and literal values."""
    maps = {o["metadata"]["name"]: o.get("data", {}) for o in objs if o["kind"] == "ConfigMap"}
    env: dict[str, str] = {}
    for source in container.get("envFrom", []):
        ref = source.get("configMapRef")
        if ref:
            env.update(maps.get(ref["name"], {}))
    for item in container.get("env", []):
        if "value" in item:
            env[item["name"]] = item["value"]
    return env


def secret_references(spec: dict) -> set[str]:
    names = set()
    for volume in spec.get("volumes", []):
        if "secret" in volume:
            names.add(volume["secret"]["secretName"])
        for source in (volume.get("projected") or {}).get("sources", []):
            if "secret" in source:
                names.add(source["secret"]["name"])
    for c in containers(spec):
        for env in c.get("env", []):
            ref = (env.get("valueFrom") or {}).get("secretKeyRef")
            if ref:
                names.add(ref["name"])
        for source in c.get("envFrom", []):
            if "secretRef" in source:
                names.add(source["secretRef"]["name"])
    if spec.get("imagePullSecrets"):
        names.update(s["name"] for s in spec["imagePullSecrets"])
    return names


def check_pod(r: Report, where: str, obj: dict, spec: dict) -> None:
    r.check(f"{where}: automountServiceAccountToken is false",
            spec.get("automountServiceAccountToken") is False)
    for key in ("hostNetwork", "hostPID", "hostIPC"):
        r.check(f"{where}: no {key}", not spec.get(key))
    host_paths = [v["name"] for v in spec.get("volumes", []) if "hostPath" in v]
    r.check(f"{where}: no hostPath volumes", not host_paths, ", ".join(host_paths))
    for c in containers(spec):
        at = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        user = effective(spec, c, "runAsUser")
        r.check(f"{at}: runAsNonRoot", effective(spec, c, "runAsNonRoot") is True)
        r.check(f"{at}: runs as a non-zero user", isinstance(user, int) and user > 0, f"runAsUser={user}")
        r.check(f"{at}: allowPrivilegeEscalation is false", sc.get("allowPrivilegeEscalation") is False)
        r.check(f"{at}: readOnlyRootFilesystem", sc.get("readOnlyRootFilesystem") is True)
        r.check(f"{at}: not privileged", not sc.get("privileged"))
        caps = sc.get("capabilities") or {}
        r.check(f"{at}: capabilities drop ALL", "ALL" in (caps.get("drop") or []))
        r.check(f"{at}: adds no capability", not caps.get("add"), str(caps.get("add")))
        seccomp = effective(spec, c, "seccompProfile") or {}
        r.check(f"{at}: seccomp RuntimeDefault", seccomp.get("type") == "RuntimeDefault", str(seccomp))
        resources = c.get("resources") or {}
        requests = resources.get("requests") or {}
        r.check(f"{at}: CPU and memory requests", "cpu" in requests and "memory" in requests, str(requests))
        r.check(f"{at}: memory limit", "memory" in (resources.get("limits") or {}))


def probe_path(container: dict, probe: str) -> str | None:
    return ((container.get(probe) or {}).get("httpGet") or {}).get("path")


def pre_stop_seconds(container: dict) -> int:
    pre_stop = (container.get("lifecycle") or {}).get("preStop") or {}
    if "sleep" in pre_stop:
        return int(pre_stop["sleep"]["seconds"])
    return 0


def check_service(r: Report, where: str, objs: list[dict], deployment: dict) -> None:
    spec = deployment["spec"]["template"]["spec"]
    svc = deployment["metadata"]["name"]
    main = next((c for c in spec["containers"] if c["name"] == svc), None)
    if not r.check(f"{where}: has a container named {svc}", main is not None):
        return
    r.check(f"{where}: startup probe", "startupProbe" in main)
    r.check(f"{where}: readiness probe on /readyz", probe_path(main, "readinessProbe") == "/readyz")
    r.check(f"{where}: liveness probe on /healthz", probe_path(main, "livenessProbe") == "/healthz")
    user = effective(spec, main, "runAsUser")
    r.check(f"{where}: runs as a high UID (>= 10000)", isinstance(user, int) and user >= 10000, f"runAsUser={user}")
    env = config_of(objs, spec, main)
    r.check(f"{where}: MIGRATE_ON_START=false", env.get("MIGRATE_ON_START") == "false",
            f"MIGRATE_ON_START={env.get('MIGRATE_ON_START')}")
    shutdown = int(env.get("SHUTDOWN_TIMEOUT_SECS", "20"))
    grace = spec.get("terminationGracePeriodSeconds", 30)
    pause = pre_stop_seconds(main)
    r.check(f"{where}: terminationGracePeriodSeconds ({grace}) > preStop ({pause}) + SHUTDOWN_TIMEOUT_SECS ({shutdown})",
            grace > pause + shutdown)
    spread = spec.get("topologySpreadConstraints") or []
    r.check(f"{where}: spread across nodes",
            any(t.get("topologyKey") == "kubernetes.io/hostname" for t in spread))
    for key, value in env.items():
        if key.endswith("_FILE"):
            r.check(f"{where}: {key} is a path", value.startswith("/"), value)

    jobs = [o for o in objs if o["kind"] == "Job"
            and any("migrate" in (c.get("args") or []) for c in o["spec"]["template"]["spec"]["containers"])
            and o["spec"]["template"]["metadata"].get("labels", {}).get("app.kubernetes.io/name") == svc]
    if r.check(f"{where}: one migration Job", len(jobs) == 1, f"found {len(jobs)}"):
        job_image = jobs[0]["spec"]["template"]["spec"]["containers"][0]["image"]
        r.check(f"{where}: migration Job runs the service's image", job_image == main["image"],
                f"{job_image} != {main['image']}")
    for kind in ("Service", "HorizontalPodAutoscaler", "PodDisruptionBudget"):
        found = [o for o in objs if o["kind"] == kind and o["metadata"]["name"] == svc]
        r.check(f"{where}: has a {kind}", len(found) == 1)
    hpa = [o for o in objs if o["kind"] == "HorizontalPodAutoscaler" and o["metadata"]["name"] == svc]
    if hpa:
        r.check(f"{where}: HPA is autoscaling/v2", hpa[0]["apiVersion"] == "autoscaling/v2")


def check_jwt_key(r: Report, objs: list[dict], overlay: str) -> None:
    auth = next((o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == "auth"), None)
    if not r.check(f"{overlay}: auth Deployment exists", auth is not None):
        return
    spec = auth["spec"]["template"]["spec"]
    volumes = [v["name"] for v in spec.get("volumes", [])
               if (v.get("secret") or {}).get("secretName") == JWT_SECRET]
    main = next(c for c in spec["containers"] if c["name"] == "auth")
    mounts = [m["mountPath"] for m in main.get("volumeMounts", []) if m["name"] in volumes]
    config = config_of(objs, spec, main)
    key_file = config.get("JWT_PRIVATE_KEY_FILE", "")
    r.check(f"{overlay}: auth mounts {JWT_SECRET} read-only",
            bool(mounts) and all(m.get("readOnly") for m in main["volumeMounts"] if m["name"] in volumes))
    r.check(f"{overlay}: JWT_PRIVATE_KEY_FILE ({key_file}) lies in the mounted key",
            any(key_file.startswith(m.rstrip("/") + "/") for m in mounts))
    r.check(f"{overlay}: auth refuses to start without its key (REQUIRE_JWT_KEY=true)",
            config.get("REQUIRE_JWT_KEY") == "true")


def check_secrets(r: Report, objs: list[dict], overlay: str) -> None:
    committed = [name_of(o) for o in objs if o["kind"] == "Secret"]
    r.check(f"{overlay}: no Secret is part of the manifests", not committed, ", ".join(committed))
    for obj in objs:
        spec = pod_spec(obj)
        if spec is None:
            continue
        for secret in sorted(secret_references(spec)):
            readers = SECRET_READERS.get(secret)
            if readers is None:
                r.check(f"{overlay} {name_of(obj)}: references only known Secrets", False, secret)
            else:
                r.check(f"{overlay} {name_of(obj)}: may read Secret {secret}",
                        (obj["kind"], obj["metadata"]["name"]) in readers,
                        f"only {sorted(n for _, n in readers)} may")


def check_literals(r: Report, objs: list[dict], overlay: str) -> None:
    for obj in objs:
        if obj["kind"] == "ConfigMap":
            for key, value in (obj.get("data") or {}).items():
                found = literal_credential(key, value)
                r.check(f"{overlay} {name_of(obj)}: {key} holds no credential", found is None, found or "")
        spec = pod_spec(obj)
        if spec is not None:
            for key, value in env_literals(spec).items():
                found = literal_credential(key, value)
                r.check(f"{overlay} {name_of(obj)}: env {key} holds no credential", found is None, found or "")


def check_namespace(r: Report, objs: list[dict], overlay: str) -> None:
    ns = [o for o in objs if o["kind"] == "Namespace"]
    labels = ns[0]["metadata"].get("labels", {}) if ns else {}
    r.check(f"{overlay}: namespace enforces the restricted Pod Security Standard",
            labels.get("pod-security.kubernetes.io/enforce") == "restricted")
    stray = [name_of(o) for o in objs if o["kind"] != "Namespace" and o["metadata"].get("namespace") != NAMESPACE]
    r.check(f"{overlay}: every object is in namespace {NAMESPACE}", not stray, ", ".join(stray))
    accounts = [o for o in objs if o["kind"] == "ServiceAccount"]
    r.check(f"{overlay}: every ServiceAccount disables token automount",
            all(o.get("automountServiceAccountToken") is False for o in accounts))


def check_network_policies(r: Report, objs: list[dict], overlay: str) -> None:
    policies = [o for o in objs if o["kind"] == "NetworkPolicy"]
    deny = [p for p in policies
            if p["spec"].get("podSelector") == {}
            and set(p["spec"].get("policyTypes", [])) == {"Ingress", "Egress"}
            and not p["spec"].get("ingress") and not p["spec"].get("egress")]
    r.check(f"{overlay}: a default-deny NetworkPolicy for ingress and egress", len(deny) == 1)
    management = [name_of(p) for p in policies
                  for rule in p["spec"].get("ingress", []) + p["spec"].get("egress", [])
                  for port in rule.get("ports", []) if port.get("port") in (15672, "management")]
    r.check(f"{overlay}: no NetworkPolicy opens the RabbitMQ management port", not management)
    services = [o for o in objs if o["kind"] == "Service"]
    exposed = [name_of(s) for s in services
               if s["spec"].get("type", "ClusterIP") != "ClusterIP"
               or any(p.get("port") == 15672 or p.get("targetPort") in (15672, "management")
                      for p in s["spec"]["ports"])]
    r.check(f"{overlay}: only ClusterIP Services, none for the management UI", not exposed, ", ".join(exposed))


def check_ingress(r: Report, objs: list[dict], overlay: str) -> None:
    ingresses = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Ingress"}
    if not r.check(f"{overlay}: the Ingresses shop and shop-credentials", set(ingresses) == {"shop", "shop-credentials"},
                   ", ".join(ingresses)):
        return
    for name, ingress in ingresses.items():
        spec = ingress["spec"]
        r.check(f"{overlay}: Ingress {name} has a class", bool(spec.get("ingressClassName")))
        r.check(f"{overlay}: Ingress {name} terminates TLS from a Secret",
                bool(spec.get("tls")) and all(t.get("secretName") for t in spec["tls"]))
        metrics = [p["path"] for rule in spec["rules"] for p in rule["http"]["paths"] if routes_path(p, "/metrics")]
        r.check(f"{overlay}: Ingress {name} does not route /metrics", not metrics and "defaultBackend" not in spec,
                f"paths {metrics}" if metrics else "a defaultBackend takes every path")
    main, credentials = ingresses["shop"], ingresses["shop-credentials"]
    hosts = {name: sorted(rule.get("host", "") for rule in o["spec"]["rules"]) for name, o in ingresses.items()}
    r.check(f"{overlay}: both Ingresses serve the same host", hosts["shop"] == hosts["shop-credentials"], str(hosts))
    routes = {p["path"]: p["backend"]["service"]["name"]
              for rule in main["spec"]["rules"] for p in rule["http"]["paths"]}
    r.check(f"{overlay}: Ingress shop routes /auth, /products, /orders to their services",
            routes == {f"/{s}": s for s in SERVICES}, str(routes))
    exact = {(p["path"], p.get("pathType"), p["backend"]["service"]["name"])
             for rule in credentials["spec"]["rules"] for p in rule["http"]["paths"]}
    r.check(f"{overlay}: Ingress shop-credentials routes exactly /auth/login and /auth/register to auth",
            exact == {("/auth/login", "Exact", "auth"), ("/auth/register", "Exact", "auth")}, str(sorted(exact)))
    main_limits, credential_limits = (edge_limits(o) for o in (main, credentials))
    r.check(f"{overlay}: Ingress shop limits requests and connections per client address",
            all(main_limits.values()), str(main_limits))
    r.check(f"{overlay}: Ingress shop-credentials limits login and register more strictly",
            all(credential_limits.values())
            and credential_limits["per_minute"] < main_limits["per_minute"]
            and credential_limits["connections"] < main_limits["connections"],
            f"{credential_limits} against {main_limits}")


def edge_limits(ingress: dict) -> dict[str, int]:
    """ingress-nginx's per-address limits of an Ingress: requests a minute (from limit-rps or
    limit-rpm) and connections; 0 where unset or not a positive whole number."""
    annotations = ingress["metadata"].get("annotations", {})

    def number(key: str) -> int:
        value = annotations.get(f"nginx.ingress.kubernetes.io/{key}", "")
        return int(value) if value.isdigit() else 0

    return {"per_minute": number("limit-rps") * 60 or number("limit-rpm"), "connections": number("limit-connections")}


def routes_path(path_rule: dict, request_path: str) -> bool:
    """Whether an Ingress path sends request_path to its backend. Prefix matches whole path
    elements; ImplementationSpecific is read as Prefix, the widest reading of the common
    controllers."""
    path = path_rule.get("path") or "/"
    if path_rule.get("pathType") == "Exact":
        return request_path == path
    prefix = path.rstrip("/")
    return prefix == "" or request_path == prefix or request_path.startswith(prefix + "/")


def matches(selector: dict, labels: dict) -> bool:
    """A label selector with matchLabels only, as the manifests write them."""
    return set(selector) <= {"matchLabels"} and all(labels.get(k) == v for k, v in selector.get("matchLabels", {}).items())


def admits_prometheus(policy: dict) -> bool:
    for rule in policy["spec"].get("ingress", []):
        for peer in rule.get("from", []):
            namespaces = peer.get("namespaceSelector")
            if namespaces is not None and matches(namespaces, {"kubernetes.io/metadata.name": PROMETHEUS_NAMESPACE}):
                return True
    return False


def check_monitoring(r: Report, objs: list[dict], overlay: str, repo_root: Path) -> None:
    custom = [o for o in objs if o["apiVersion"].startswith(MONITORING_GROUP)]
    policies = [o for o in objs if o["kind"] == "NetworkPolicy" and admits_prometheus(o)]
    if overlay == "dev":
        r.check("dev: no monitoring component (kind runs no Prometheus Operator)", not custom,
                ", ".join(name_of(o) for o in custom))
    elif overlay == "prod":
        r.check("prod: includes the monitoring component", bool(custom))
    if not custom:
        r.check(f"{overlay}: without the monitoring component no NetworkPolicy lets {PROMETHEUS_NAMESPACE} in",
                not policies, ", ".join(name_of(p) for p in policies))
        return

    services = {o["metadata"]["name"]: o for o in objs if o["kind"] == "Service"}
    monitors = [o for o in custom if o["kind"] == "ServiceMonitor"]
    if r.check(f"{overlay}: one ServiceMonitor", len(monitors) == 1, f"found {len(monitors)}"):
        spec = monitors[0]["spec"]
        selected = sorted(n for n, svc in services.items() if matches(spec["selector"], svc["metadata"].get("labels", {})))
        r.check(f"{overlay}: ServiceMonitor selects the Services {', '.join(SERVICES)} and no other",
                selected == sorted(SERVICES), str(selected))
        r.check(f"{overlay}: ServiceMonitor looks in namespace {NAMESPACE} only",
                spec.get("namespaceSelector") == {"matchNames": [NAMESPACE]}, str(spec.get("namespaceSelector")))
        r.check(f"{overlay}: ServiceMonitor leaves the job label to the Service name", "jobLabel" not in spec)
        endpoints = spec.get("endpoints") or []
        r.check(f"{overlay}: ServiceMonitor scrapes GET /metrics",
                bool(endpoints) and all(e.get("path") == "/metrics" for e in endpoints), str(endpoints))
        for svc in SERVICES:
            ports = {p.get("name") for p in services.get(svc, {}).get("spec", {}).get("ports", [])}
            r.check(f"{overlay}: ServiceMonitor's ports are named on Service {svc}",
                    bool(endpoints) and all(e.get("port") in ports for e in endpoints), f"{ports}")

    rules = [o for o in custom if o["kind"] == "PrometheusRule"]
    if r.check(f"{overlay}: one PrometheusRule", len(rules) == 1, f"found {len(rules)}"):
        source = yaml.safe_load((repo_root / ALERT_RULES).read_text())
        r.check(f"{overlay}: PrometheusRule {rules[0]['metadata']['name']} holds exactly {ALERT_RULES}",
                rules[0]["spec"] == source, "it differs: run scripts/gen-prometheus-rule")
        for group in rules[0]["spec"].get("groups", []):
            for rule in group.get("rules", []):
                if "alert" not in rule:
                    continue
                annotations = rule.get("annotations") or {}
                r.check(f"{overlay}: alert {rule['alert']} has a severity, a summary and a description",
                        (rule.get("labels") or {}).get("severity") in SEVERITIES
                        and bool(annotations.get("summary")) and bool(annotations.get("description")))

    pods = {o["metadata"]["name"]: o["spec"]["template"]["metadata"].get("labels", {})
            for o in objs if o["kind"] == "Deployment"}
    prometheus = {"matchLabels": {"kubernetes.io/metadata.name": PROMETHEUS_NAMESPACE}}
    for policy in policies:
        spec = policy["spec"]
        admitted = sorted(n for n, labels in pods.items() if matches(spec["podSelector"], labels))
        r.check(f"{overlay} {name_of(policy)}: lets the monitoring namespace reach the services only",
                admitted == sorted(SERVICES), str(admitted))
        for rule in spec.get("ingress", []):
            peers = rule.get("from", [])
            r.check(f"{overlay} {name_of(policy)}: admits the Prometheus pods of {PROMETHEUS_NAMESPACE} only",
                    bool(peers) and all(p.get("namespaceSelector") == prometheus
                                        and p.get("podSelector") == {"matchLabels": PROMETHEUS_POD_LABELS}
                                        for p in peers), str(peers))
            r.check(f"{overlay} {name_of(policy)}: on the HTTP port only",
                    rule.get("ports") == [{"protocol": "TCP", "port": "http"}], str(rule.get("ports")))
    r.check(f"{overlay}: a NetworkPolicy lets Prometheus scrape the services", bool(policies))


# The names common/src/messages.rs and products/src/config.rs default to, which kube/ keeps.
RESOLVE_QUEUE = "ORDER_RESOLVE"
EVENTS_EXCHANGE = "shop.events"
EVENTS_QUEUE = "products.order-events"
EVENT_ROUTING_KEYS = ("order.created.v1", "order.cancelled.v1")


def expected_queues(topology_rs: str, queue: str) -> dict[str, dict]:
    """The arguments declare_work_queue passes, read from its source."""
    limits = dict(re.findall(r"\bconst (\w*DELIVERY_LIMIT): i32 = (\d+);", topology_rs))
    if not limits:
        raise ValueError("no DELIVERY_LIMIT constant found")
    names = {"dlq_args": f"{queue}.dlq", "args": queue}
    queues: dict[str, dict] = {n: {} for n in names.values()}
    inserts = re.findall(r"(\w+)\.insert\(\s*\"([^\"]+)\"\.into\(\),\s*(.+?)\);\s*$", topology_rs, re.M | re.S)
    if not inserts:
        raise ValueError("no argument insertions found")
    for table, key, value in inserts:
        if table not in names:
            raise ValueError(f"arguments inserted into unknown table {table}")
        value = " ".join(value.split()).rstrip(",").strip()
        if m := re.fullmatch(r'text\("([^"]*)"\)', value):
            parsed = m.group(1)
        elif value == "text(&dlq)":
            parsed = f"{queue}.dlq"
        elif (m := re.fullmatch(r"AMQPValue::LongInt\((\w+)\)", value)) and m.group(1) in limits:
            parsed = int(limits[m.group(1)])
        else:
            raise ValueError(f"cannot read the value of {key}: {value}")
        queues[names[table]][key] = parsed
    return queues


def check_rabbitmq_definitions(r: Report, objs: list[dict], overlay: str, repo_root: Path) -> None:
    maps = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("rabbitmq-definitions")]
    if not r.check(f"{overlay}: rabbitmq-definitions ConfigMap exists", len(maps) == 1):
        return
    data = maps[0]["data"]
    queues = {q["name"]: q for q in json.loads(data["20-queues.json"])["queues"]}
    order_queues = {
        value for o in objs if o["kind"] == "ConfigMap"
        for key, value in (o.get("data") or {}).items() if key == "ORDER_QUEUE"
    }
    r.check(f"{overlay}: products and orders agree on ORDER_QUEUE", len(order_queues) == 1, str(order_queues))
    queue = next(iter(order_queues), "ORDER")
    # Every work and event queue is declared by declare_work_queue, with the same arguments.
    work_queues = [queue, RESOLVE_QUEUE, EVENTS_QUEUE]
    try:
        topology = (repo_root / "common/src/amqp/topology.rs").read_text()
        expected = {name: args for q in work_queues for name, args in expected_queues(topology, q).items()}
    except (OSError, ValueError) as e:
        r.check(f"{overlay}: read the queue arguments from common/src/amqp/topology.rs", False, str(e))
        return
    for name, arguments in expected.items():
        defined = queues.get(name)
        if not r.check(f"{overlay}: RabbitMQ definitions declare queue {name}", defined is not None):
            continue
        r.check(f"{overlay}: queue {name} is durable, not auto-delete, in vhost /",
                defined.get("durable") is True and defined.get("auto_delete") is False and defined.get("vhost") == "/")
        r.check(f"{overlay}: queue {name} has exactly the arguments of topology.rs",
                defined.get("arguments") == arguments, f"{defined.get('arguments')} != {arguments}")
    definitions = json.loads(data["20-queues.json"])
    exchanges = {e["name"]: e for e in definitions.get("exchanges", [])}
    events = exchanges.get(EVENTS_EXCHANGE) or {}
    r.check(f"{overlay}: RabbitMQ definitions declare the durable topic exchange {EVENTS_EXCHANGE}",
            events.get("type") == "topic" and events.get("durable") is True
            and events.get("auto_delete") is False and events.get("vhost") == "/", str(events))
    bindings = {(b["source"], b["destination"], b["destination_type"], b["routing_key"])
                for b in definitions.get("bindings", [])}
    wanted = {(EVENTS_EXCHANGE, EVENTS_QUEUE, "queue", key) for key in EVENT_ROUTING_KEYS}
    r.check(f"{overlay}: {EVENTS_QUEUE} is bound to {EVENTS_EXCHANGE} for every order event, and nothing else is bound",
            bindings == wanted, str(sorted(bindings)))
    permissions = {p["user"]: p for p in json.loads(data["30-permissions.json"])["permissions"]}
    allowed = {
        # (user, permission, resource, expected)
        # Products only looks the queue up (a passive declare, which needs no right) and
        # publishes through the default exchange: it may not configure, so not delete, it.
        ("products", "configure", queue, False),
        ("products", "configure", f"{queue}.dlq", False),
        ("products", "read", f"{queue}.dlq", False),
        ("products", "configure", "amq.gen-Xy12", True),
        ("products", "read", "amq.gen-Xy12", True),
        ("products", "read", queue, False),
        ("products", "write", "amq.default", True),
        ("products", "configure", "other", False),
        ("orders", "configure", queue, True),
        ("orders", "configure", f"{queue}.dlq", True),
        ("orders", "read", queue, True),
        ("orders", "read", f"{queue}.dlq", False),
        ("orders", "write", "amq.default", True),
        ("orders", "configure", "amq.gen-Xy12", False),
        # The reservation questions: orders consumes them, products only publishes them.
        ("orders", "configure", RESOLVE_QUEUE, True),
        ("orders", "read", RESOLVE_QUEUE, True),
        ("products", "configure", RESOLVE_QUEUE, False),
        ("products", "read", RESOLVE_QUEUE, False),
        # The events: orders alone may publish them; products binds and reads its own queue.
        ("orders", "configure", EVENTS_EXCHANGE, True),
        ("orders", "write", EVENTS_EXCHANGE, True),
        ("products", "write", EVENTS_EXCHANGE, False),
        ("products", "configure", EVENTS_EXCHANGE, False),
        ("products", "read", EVENTS_EXCHANGE, True),
        ("products", "configure", EVENTS_QUEUE, True),
        ("products", "configure", f"{EVENTS_QUEUE}.dlq", True),
        ("products", "write", EVENTS_QUEUE, True),
        ("products", "read", EVENTS_QUEUE, True),
        ("orders", "read", EVENTS_QUEUE, False),
        ("orders", "configure", EVENTS_QUEUE, False),
    }
    for user, permission, resource, expect in sorted(allowed):
        pattern = (permissions.get(user) or {}).get(permission)
        granted = pattern is not None and re.search(pattern, resource) is not None
        verb = "may" if expect else "may not"
        r.check(f"{overlay}: RabbitMQ user {user} {verb} {permission} {resource}", granted == expect, f"pattern {pattern!r}")


# The broker's max_message_size: above the largest request products sends (common/src/messages.rs
# tests that against the same line), far below RabbitMQ's default of 128 MiB.
MAX_MESSAGE_SIZE = 262144


def check_rabbitmq_config(r: Report, objs: list[dict], overlay: str) -> None:
    maps = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("rabbitmq-config")]
    if not r.check(f"{overlay}: rabbitmq-config ConfigMap exists", len(maps) == 1):
        return
    conf = "\n".join((maps[0].get("data") or {}).values())
    sizes = re.findall(r"^max_message_size\s*=\s*(\d+)\s*$", conf, re.M)
    r.check(f"{overlay}: RabbitMQ refuses messages over {MAX_MESSAGE_SIZE} bytes",
            sizes == [str(MAX_MESSAGE_SIZE)], f"max_message_size {sizes}")


def check_postgres_init(r: Report, objs: list[dict], overlay: str) -> None:
    maps = [o for o in objs if o["kind"] == "ConfigMap" and o["metadata"]["name"].startswith("postgres-init")]
    r.check(f"{overlay}: postgres-init ConfigMap exists", len(maps) == 1)


def check_overlay(r: Report, kube_dir: Path, repo_root: Path, overlay: str) -> None:
    objs = render(kube_dir, overlay)
    for obj in objs:
        spec = pod_spec(obj)
        if spec is not None:
            check_pod(r, f"{overlay} {name_of(obj)}", obj, spec)
    for svc in SERVICES:
        deployments = [o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == svc]
        if r.check(f"{overlay}: Deployment {svc} exists", len(deployments) == 1):
            check_service(r, f"{overlay} Deployment/{svc}", objs, deployments[0])
    if overlay == "prod":
        for svc in SERVICES:
            deployment = next((o for o in objs if o["kind"] == "Deployment" and o["metadata"]["name"] == svc), {})
            hpa = next((o for o in objs if o["kind"] == "HorizontalPodAutoscaler" and o["metadata"]["name"] == svc), {})
            replicas = (deployment.get("spec") or {}).get("replicas")
            r.check(f"prod: {svc} runs 2 replicas", replicas == 2, f"replicas={replicas}")
            r.check(f"prod: {svc} autoscales from at least 2",
                    (hpa.get("spec") or {}).get("minReplicas", 0) >= 2)
    for name in ("postgres", "rabbitmq"):
        sets = [o for o in objs if o["kind"] == "StatefulSet" and o["metadata"]["name"] == name]
        r.check(f"{overlay}: StatefulSet {name} keeps its data on a PersistentVolumeClaim",
                len(sets) == 1 and bool(sets[0]["spec"].get("volumeClaimTemplates")))
    check_jwt_key(r, objs, overlay)
    check_secrets(r, objs, overlay)
    check_literals(r, objs, overlay)
    check_namespace(r, objs, overlay)
    check_network_policies(r, objs, overlay)
    check_ingress(r, objs, overlay)
    check_rabbitmq_definitions(r, objs, overlay, repo_root)
    check_rabbitmq_config(r, objs, overlay)
    check_postgres_init(r, objs, overlay)
    check_monitoring(r, objs, overlay, repo_root)


def main() -> int:
    here = Path(__file__).resolve().parent
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quiet", action="store_true", help="print only the failures and the count")
    parser.add_argument("--kube-dir", type=Path, default=here.parent)
    parser.add_argument("--repo-root", type=Path)
    parser.add_argument("overlays", nargs="*", default=["prod", "dev"])
    args = parser.parse_args()
    repo_root = args.repo_root or args.kube_dir.resolve().parent

    r = Report(args.quiet)
    for overlay in args.overlays:
        try:
            check_overlay(r, args.kube_dir, repo_root, overlay)
        except subprocess.CalledProcessError as e:
            r.check(f"{overlay}: kubectl kustomize renders it", False, e.stderr.strip())
        except (KeyError, TypeError) as e:
            r.check(f"{overlay}: manifests have the expected shape", False, f"missing {e}")
    print(f"{r.passed} passed, {r.failed} failed")
    return 1 if r.failed else 0


if __name__ == "__main__":
    sys.exit(main())
