#!/usr/bin/env python3
"""Checks on rendered certctl chart manifests, run by scripts/chart-check.sh.

    check_render.py render FILE VALUES NAME [--upgrade]
        FILE: `helm template` output; VALUES: the values file it was rendered with (for the
        names of Secrets and ConfigMaps the user provides); NAME: the fixture (defaults,
        backup-pvc, ...), which selects the fixture-specific assertions.
        Built-in kinds must have been validated with kubernetes-validate already; this checks
        the custom resources (Certificate, ServiceMonitor, PrometheusRule) against the small
        schemas below, and what a user would check by hand: security contexts, env names,
        hooks, checksums, references between objects.
    check_render.py builtins FILE OUT
        writes the documents of built-in kinds to OUT (for kubernetes-validate) and prints the
        custom ones it left out.
    check_render.py rules FILE OUT
        writes the PrometheusRule's spec (a Prometheus rules file) to OUT.
    check_render.py comments VALUES_YAML
        every key of values.yaml has a comment right above it.
    check_render.py dockeys VALUES_YAML DOC...
        the values keys kept from the original chart exist, and every values key the docs name
        (`server.replicas`, `backup.s3.bucket`, ...) exists in values.yaml.
    check_render.py schema VALUES_YAML SCHEMA_JSON
        the schema declares exactly the keys of values.yaml and is closed at every level.
    check_render.py docvalues MARKDOWN OUT
        writes the YAML block following `<!-- chart-check: values -->` to OUT.
    check_render.py state RENDER OUT_JSON none|expiring|renamed
    check_render.py compare RENDER1 RENDER2 fresh|upgrade|renewal-...
        the lookup checks: the Secrets of a render as ci/fake_apiserver.py's state (optionally
        with the server certificate near expiry or its names changed), and what must (not)
        change between two renders.
    check_render.py materialize RENDER CONTAINER OUTDIR
        the files and environment a container would get, laid out under OUTDIR, for running
        the real binaries with exactly what the chart gives them.

Prints one `PASS <what>` or `FAIL <what>: <why>` line per assertion; exits 1 on any failure.
Needs PyYAML and jsonschema (both come with kubernetes-validate) and openssl on PATH.
"""

import base64
import json
import os
import re
import subprocess
import sys
import tempfile
import tomllib

import jsonschema
import yaml

ROOT = os.path.abspath(os.path.join(os.path.dirname(__file__), "..", "..", ".."))
FAILED = False


def report(ok, what, why=""):
    global FAILED
    if ok:
        print(f"PASS {what}")
    else:
        FAILED = True
        print(f"FAIL {what}: {why}")
    return ok


# Environment variables the binaries read (docs/operators/configuration.md, plugins.md,
# agents.md). CERTCTL_INSTANCES_FILE is the plugin-instances file the chart renders.
SERVER_VARS = {
    "CERTCTL_CONFIG_FILE", "CERTCTL_SERVER_HOST", "CERTCTL_SERVER_PORT", "CERTCTL_SERVER_TLS_CERT_PATH",
    "CERTCTL_SERVER_TLS_KEY_PATH", "CERTCTL_SERVER_TLS_MIN_VERSION", "CERTCTL_DATA_DIR", "CERTCTL_DATABASE_URL",
    "CERTCTL_DATABASE_MAX_CONNS", "CERTCTL_LOG_LEVEL", "CERTCTL_LOG_FORMAT", "CERTCTL_AUTH_TYPE",
    "CERTCTL_API_KEYS_NAMED", "CERTCTL_AGENT_BOOTSTRAP_TOKEN", "CERTCTL_CONFIG_ENCRYPTION_KEY",
    "CERTCTL_MIGRATIONS_VIA_HOOK", "CERTCTL_MAX_BODY_BYTES", "CERTCTL_SCHEDULER_ENABLED",
    "CERTCTL_SCHEDULER_JOB_INTERVAL", "CERTCTL_SCHEDULER_RENEWAL_INTERVAL", "CERTCTL_SCHEDULER_ALERT_INTERVAL",
    "CERTCTL_SCHEDULER_AGENT_HEALTH_INTERVAL", "CERTCTL_SCHEDULER_CLEANUP_INTERVAL",
    "CERTCTL_SCHEDULER_RETENTION_DAYS", "CERTCTL_SMTP_HOST", "CERTCTL_SMTP_PORT", "CERTCTL_SMTP_TLS",
    "CERTCTL_SMTP_USERNAME", "CERTCTL_SMTP_PASSWORD", "CERTCTL_SMTP_FROM", "CERTCTL_SMTP_CA_BUNDLE",
    "CERTCTL_SMTP_TIMEOUT_SECONDS", "CERTCTL_ACME_HTTP01_ADDRESS", "CERTCTL_DNS_RESOLVERS",
    "CERTCTL_DNS_NAMESERVER_PORT", "CERTCTL_DNS_TIMEOUT_SECONDS", "CERTCTL_PLUGIN_DIRS", "CERTCTL_PLUGIN_GRANTS",
    "CERTCTL_PLUGIN_POOLING", "CERTCTL_PLUGIN_CA_BUNDLE", "CERTCTL_PLUGIN_MEMORY_MB",
    "CERTCTL_PLUGIN_CALL_TIMEOUT_SECONDS", "CERTCTL_INSTANCES_FILE",
}
AGENT_VARS = {
    "CERTCTL_SERVER_URL", "CERTCTL_AGENT_BOOTSTRAP_TOKEN", "CERTCTL_API_KEY", "CERTCTL_AGENT_NAME",
    "CERTCTL_KEY_DIR", "CERTCTL_AGENT_STATE_DIR", "CERTCTL_DISCOVERY_DIRS", "CERTCTL_SERVER_CA_BUNDLE_PATH",
    "CERTCTL_SERVER_TLS_INSECURE_SKIP_VERIFY", "CERTCTL_AGENT_HEARTBEAT_SECONDS", "CERTCTL_AGENT_POLL_SECONDS",
    "CERTCTL_AGENT_DISCOVERY_SECONDS", "CERTCTL_LOG_LEVEL", "CERTCTL_LOG_FORMAT",
}
# The one non-CERTCTL variable a certctl container may carry: the bundled PostgreSQL's password
# from an existing Secret, which CERTCTL_DATABASE_URL is composed from ($(PGPASSWORD)).
COMPOSE_VARS = {"PGPASSWORD"}

BUILTIN_GROUPS = {"v1", "apps/v1", "batch/v1", "policy/v1", "networking.k8s.io/v1",
                  "rbac.authorization.k8s.io/v1"}

# Small schemas of the custom resources the chart renders (their CRDs are not bundled with
# kubernetes-validate): the fields the chart uses, with their types, and nothing unknown.
_str = {"type": "string"}
_strmap = {"type": "object", "additionalProperties": {"type": "string"}}
_secretkey = {"type": "object", "additionalProperties": False, "required": ["name", "key"],
              "properties": {"name": _str, "key": _str, "optional": {"type": "boolean"}}}
_meta = {"type": "object", "required": ["name"],
         "properties": {"name": {"type": "string", "pattern": "^[a-z0-9]([-a-z0-9.]*[a-z0-9])?$"},
                        "labels": _strmap, "annotations": _strmap}}
_duration = {"type": "string", "pattern": "^(0|([0-9]+(ms|s|m|h|d|w|y))+)$"}
CRD_SCHEMAS = {
    ("cert-manager.io/v1", "Certificate"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"],
        "additionalProperties": False,
        "properties": {
            "apiVersion": _str, "kind": _str, "metadata": _meta,
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["secretName", "issuerRef"],
                "properties": {
                    "secretName": _str, "commonName": {"type": "string", "maxLength": 64},
                    "dnsNames": {"type": "array", "minItems": 1, "items": _str},
                    "ipAddresses": {"type": "array", "items": _str},
                    "duration": {"type": "string", "pattern": "^([0-9]+(h|m|s))+$"},
                    "renewBefore": {"type": "string", "pattern": "^([0-9]+(h|m|s))+$"},
                    "privateKey": {"type": "object", "additionalProperties": False, "properties": {
                        "algorithm": {"enum": ["RSA", "ECDSA", "Ed25519"]}, "size": {"type": "integer"},
                        "rotationPolicy": {"enum": ["Never", "Always"]}, "encoding": {"enum": ["PKCS1", "PKCS8"]}}},
                    "usages": {"type": "array", "items": {"enum": [
                        "signing", "digital signature", "content commitment", "key encipherment",
                        "key agreement", "data encipherment", "cert sign", "crl sign", "encipher only",
                        "decipher only", "any", "server auth", "client auth", "code signing",
                        "email protection", "s/mime", "ipsec end system", "ipsec tunnel", "ipsec user",
                        "timestamping", "ocsp signing", "microsoft sgc", "netscape sgc"]}},
                    "issuerRef": {"type": "object", "additionalProperties": False, "required": ["name"],
                                  "properties": {"name": {"type": "string", "minLength": 1},
                                                 "kind": {"enum": ["Issuer", "ClusterIssuer"]}, "group": _str}},
                }}}},
    ("monitoring.coreos.com/v1", "ServiceMonitor"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": _str, "kind": _str, "metadata": _meta,
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["selector", "endpoints"],
                "properties": {
                    "selector": {"type": "object", "additionalProperties": False,
                                 "properties": {"matchLabels": _strmap, "matchExpressions": {"type": "array"}}},
                    "namespaceSelector": {"type": "object", "additionalProperties": False,
                                          "properties": {"any": {"type": "boolean"},
                                                         "matchNames": {"type": "array", "items": _str}}},
                    "endpoints": {"type": "array", "minItems": 1, "items": {
                        "type": "object", "additionalProperties": False,
                        "properties": {
                            "port": _str, "path": _str, "scheme": {"enum": ["http", "https"]},
                            "interval": _duration, "scrapeTimeout": _duration,
                            "authorization": {"type": "object", "additionalProperties": False,
                                              "properties": {"type": _str, "credentials": _secretkey}},
                            "tlsConfig": {"type": "object", "additionalProperties": False, "properties": {
                                "ca": {"type": "object", "additionalProperties": False,
                                       "properties": {"secret": _secretkey, "configMap": _secretkey}},
                                "cert": {"type": "object"}, "keySecret": _secretkey,
                                "serverName": _str, "insecureSkipVerify": {"type": "boolean"}}},
                        }}},
                }}}},
    ("monitoring.coreos.com/v1", "PrometheusRule"): {
        "type": "object", "required": ["apiVersion", "kind", "metadata", "spec"], "additionalProperties": False,
        "properties": {
            "apiVersion": _str, "kind": _str, "metadata": _meta,
            "spec": {
                "type": "object", "additionalProperties": False, "required": ["groups"],
                "properties": {"groups": {"type": "array", "minItems": 1, "items": {
                    "type": "object", "additionalProperties": False, "required": ["name", "rules"],
                    "properties": {"name": _str, "interval": _duration, "rules": {"type": "array", "items": {
                        "type": "object", "additionalProperties": False, "required": ["expr"],
                        "properties": {"alert": _str, "record": _str, "expr": _str, "for": _duration,
                                       "labels": _strmap, "annotations": _strmap}}}}}}}}}},
}


def load_docs(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d]


def by_kind(docs, kind):
    return [d for d in docs if d.get("kind") == kind]


def named(docs, kind, suffix=None):
    out = by_kind(docs, kind)
    if suffix is not None:
        out = [d for d in out if d["metadata"]["name"].endswith(suffix)]
    return out


def pod_spec(d):
    k = d["kind"]
    if k in ("Deployment", "DaemonSet", "StatefulSet", "Job"):
        return d["spec"]["template"]["spec"]
    if k == "CronJob":
        return d["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    return None


def pod_meta(d):
    if d["kind"] == "CronJob":
        return d["spec"]["jobTemplate"]["spec"]["template"]["metadata"]
    return d["spec"]["template"]["metadata"]


def containers(spec):
    return [("init", c) for c in spec.get("initContainers", []) or []] + [("main", c) for c in spec["containers"]]


def env_of(c):
    return {e["name"]: e for e in c.get("env", []) or []}


def env_value(c, name):
    e = env_of(c).get(name)
    return None if e is None else e.get("value")


def workloads(docs):
    return [d for d in docs if pod_spec(d) is not None]


def find_container(docs, name):
    for d in workloads(docs):
        for _, c in containers(pod_spec(d)):
            if c["name"] == name:
                return d, c
    return None, None


def server_deployment(docs):
    for d in by_kind(docs, "Deployment"):
        if d["metadata"]["labels"].get("app.kubernetes.io/component") == "server":
            return d
    return None


# ----------------------------------------------------------------------------------------
# Assertions every render must meet.

def generic(docs, text, values, name):
    # Custom resources against their schemas; nothing of an unknown kind.
    for d in docs:
        key = (d.get("apiVersion"), d.get("kind"))
        if key in CRD_SCHEMAS:
            errors = sorted(jsonschema.Draft7Validator(CRD_SCHEMAS[key]).iter_errors(d), key=str)
            report(not errors, f"{name}: {key[1]}/{d['metadata']['name']} matches its schema",
                   "; ".join(f"{'/'.join(map(str, e.absolute_path))}: {e.message}" for e in errors[:3]))
        elif key[0] not in BUILTIN_GROUPS:
            report(False, f"{name}: {key[1]} {key[0]}", "no schema to validate it with")

    report("CERTCTL_AGENT_ID" not in text, f"{name}: CERTCTL_AGENT_ID appears nowhere", "found in the render")
    report(not re.search(r"^\s*subPath:", text, re.M), f"{name}: no subPath mounts", "a subPath mount never sees updates")

    tls_mode = "existing" if values_get(values, "server.tls.existingSecret") else \
        "cert-manager" if values_get(values, "server.tls.certManager.enabled") else "generated"
    pg_existing = values_get(values, "postgresql.enabled", True) and values_get(values, "postgresql.auth.existingSecret")

    for d in workloads(docs):
        spec = pod_spec(d)
        wname = f"{d['kind']}/{d['metadata']['name']}"
        psc = spec.get("securityContext", {})
        for phase, c in containers(spec):
            cname = f"{name}: {wname} container {c['name']}"
            sc = c.get("securityContext") or {}
            caps = (sc.get("capabilities") or {})
            seccomp = (sc.get("seccompProfile") or psc.get("seccompProfile") or {}).get("type")
            base_ok = (sc.get("allowPrivilegeEscalation") is False and sc.get("readOnlyRootFilesystem") is True
                       and "ALL" in (caps.get("drop") or []) and seccomp == "RuntimeDefault")
            if c["name"] == "key-dir-permissions":
                ok = base_ok and sc.get("runAsUser") == 0 and sorted(caps.get("add") or []) == ["CHOWN", "FOWNER"]
                report(ok, f"{cname}: root with only CHOWN+FOWNER, read-only, no escalation", json.dumps(sc))
            else:
                uid = sc.get("runAsUser", psc.get("runAsUser"))
                nonroot = sc.get("runAsNonRoot", psc.get("runAsNonRoot")) is True and uid not in (None, 0)
                ok = base_ok and nonroot and not caps.get("add")
                if c["image"].startswith("certctl/") or c["name"] in ("server", "agent", "migrate"):
                    ok = ok and uid == 1000
                report(ok, f"{cname}: non-root, read-only root fs, no escalation, caps dropped, seccomp",
                       json.dumps(sc))
            res = c.get("resources") or {}
            report(bool((res.get("requests") or {}).get("memory")) and bool((res.get("limits") or {}).get("memory")),
                   f"{cname}: memory request and limit", json.dumps(res))
            names = [e["name"] for e in c.get("env", []) or []]
            report(len(names) == len(set(names)), f"{cname}: no duplicate env names", str(names))
            allowed = None
            if c["name"] == "server":
                allowed = SERVER_VARS
            elif c["name"] == "agent":
                allowed = AGENT_VARS
            elif c["name"] == "migrate":
                allowed = {"CERTCTL_DATABASE_URL"}
            if allowed is not None:
                extra = COMPOSE_VARS if (pg_existing and c["name"] in ("server", "migrate")) else set()
                bad = [n for n in names if n not in allowed | extra]
                report(not bad, f"{cname}: env names are known {c['name']} variables", f"unknown: {bad}")
        if d["kind"] in ("Deployment", "DaemonSet", "StatefulSet"):
            report(spec.get("automountServiceAccountToken") is False, f"{name}: {wname} mounts no API token",
                   str(spec.get("automountServiceAccountToken")))

    server = server_deployment(docs)
    if not report(server is not None, f"{name}: server Deployment rendered", "missing"):
        return
    spec = pod_spec(server)
    ann = pod_meta(server).get("annotations") or {}
    report(re.fullmatch(r"[0-9a-f]{64}", ann.get("checksum/config", "")) is not None and
           re.fullmatch(r"[0-9a-f]{64}", ann.get("checksum/secret", "")) is not None,
           f"{name}: server pods carry checksum/config and checksum/secret", json.dumps(ann))
    srv = [c for _, c in containers(spec) if c["name"] == "server"][0]
    live = srv.get("livenessProbe", {}).get("httpGet", {})
    ready = srv.get("readinessProbe", {}).get("httpGet", {})
    report(live.get("path") == "/health" and live.get("scheme") == "HTTPS" and ready.get("path") == "/ready"
           and ready.get("scheme") == "HTTPS", f"{name}: liveness GET /health, readiness GET /ready, over HTTPS",
           f"{live} {ready}")
    env = env_of(srv)
    for var in ("CERTCTL_API_KEYS_NAMED", "CERTCTL_AGENT_BOOTSTRAP_TOKEN", "CERTCTL_CONFIG_ENCRYPTION_KEY"):
        report("secretKeyRef" in (env.get(var, {}).get("valueFrom") or {}), f"{name}: server {var} from a Secret",
               json.dumps(env.get(var)))
    report(env_value(srv, "CERTCTL_SERVER_HOST") in ("0.0.0.0", "::"), f"{name}: server listens on all addresses",
           str(env_value(srv, "CERTCTL_SERVER_HOST")))
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = {m["mountPath"]: m["name"] for m in srv.get("volumeMounts", [])}
    data_dir = env_value(srv, "CERTCTL_DATA_DIR")
    report(data_dir in mounts and "emptyDir" in vols.get(mounts[data_dir], {}),
           f"{name}: CERTCTL_DATA_DIR is a writable emptyDir", f"{data_dir} {mounts}")
    tls_vol = vols.get(mounts.get("/etc/certctl/tls", ""), {}).get("secret", {}).get("secretName")
    expected_tls = values_get(values, "server.tls.existingSecret") or server["metadata"]["name"] + "-tls"
    report(tls_vol == expected_tls, f"{name}: server TLS from Secret {expected_tls} ({tls_mode})", str(tls_vol))
    if tls_mode == "generated":
        check_generated_tls(docs, server, name)
    if tls_mode == "cert-manager":
        certs = by_kind(docs, "Certificate")
        report(len(certs) == 1 and certs[0]["spec"]["secretName"] == expected_tls,
               f"{name}: cert-manager Certificate writes {expected_tls}", str(certs))
    sidecar = any(c["name"] == "tls-reloader" for _, c in containers(spec))
    report(sidecar == (tls_mode != "generated" and values_get(values, "server.tls.reloadSidecar", True))
           and (spec.get("shareProcessNamespace") is True) == sidecar,
           f"{name}: TLS reload sidecar only for certificates that change outside Helm", str(sidecar))

    check_references(docs, values, name)
    check_services(docs, name)
    secrets = {d["metadata"]["name"]: d for d in by_kind(docs, "Secret")}
    full = server["metadata"]["name"]
    if full + "-db" in secrets and full + "-migrate" in secrets:
        report(secrets[full + "-db"]["data"]["database-url"] == secrets[full + "-migrate"]["data"]["database-url"],
               f"{name}: one generated database URL for the server and the migration hook", "two different ones")
    if full in secrets:
        named_keys = base64.b64decode(secrets[full]["data"]["api-keys-named"]).decode()
        admin = base64.b64decode(secrets[full]["data"]["admin-api-key"]).decode()
        metrics = base64.b64decode(secrets[full]["data"]["metrics-api-key"]).decode()
        report(named_keys == f"admin:{admin}:admin,metrics:{metrics}:metrics",
               f"{name}: CERTCTL_API_KEYS_NAMED holds the admin and metrics keys", named_keys[:20])
    check_instances(docs, srv, spec, name)


def check_generated_tls(docs, server, name):
    full = server["metadata"]["name"]
    secrets = {d["metadata"]["name"]: d for d in by_kind(docs, "Secret")}
    tls, ca = secrets.get(full + "-tls"), secrets.get(full + "-ca")
    if not report(tls is not None and ca is not None, f"{name}: generated CA and server certificate Secrets", "missing"):
        return
    ns = "certctl"
    with tempfile.TemporaryDirectory() as tmp:
        paths = {}
        for key, src in (("tls.crt", tls), ("ca.crt", tls), ("tls.key", tls)):
            paths[key] = os.path.join(tmp, key)
            with open(paths[key], "wb") as f:
                f.write(base64.b64decode(src["data"][key]))
        ok = subprocess.run(["openssl", "verify", "-CAfile", paths["ca.crt"], paths["tls.crt"]],
                            capture_output=True, text=True)
        report(ok.returncode == 0, f"{name}: server certificate verifies against the generated CA", ok.stderr.strip())
        text = subprocess.run(["openssl", "x509", "-in", paths["tls.crt"], "-noout", "-ext", "subjectAltName"],
                              capture_output=True, text=True).stdout
        want = [full, f"{full}.{ns}", f"{full}.{ns}.svc", f"{full}.{ns}.svc.cluster.local"]
        missing = [n for n in want if f"DNS:{n}," not in text + "," and f"DNS:{n}\n" not in text + "\n"]
        report(not missing, f"{name}: server certificate names the Service's DNS names", f"missing {missing}: {text}")
        same_key = [subprocess.run(["openssl", *args, paths[p]], capture_output=True, text=True).stdout
                    for args, p in ((("x509", "-noout", "-pubkey", "-in"), "tls.crt"),
                                    (("pkey", "-pubout", "-in"), "tls.key"))]
        report(same_key[0] and same_key[0] == same_key[1], f"{name}: tls.key belongs to tls.crt", "mismatch")
    report(base64.b64decode(ca["data"]["ca.crt"]) == base64.b64decode(tls["data"]["ca.crt"]),
           f"{name}: agents' ca.crt is the CA that signed the server", "different")
    report((ca["metadata"].get("annotations") or {}).get("helm.sh/resource-policy") == "keep",
           f"{name}: generated CA kept on uninstall", str(ca["metadata"].get("annotations")))


def values_get(values, path, default=None):
    cur = values
    for part in path.split("."):
        if not isinstance(cur, dict) or part not in cur:
            return default
        cur = cur[part]
    return cur


def check_references(docs, values, name):
    """Every Secret, ConfigMap and claim a pod uses is rendered, or named in the values."""
    rendered = {(d["kind"], d["metadata"]["name"]) for d in docs}
    for c in by_kind(docs, "Certificate"):
        rendered.add(("Secret", c["spec"]["secretName"]))
    external = set()
    for p in ("server.tls.existingSecret", "server.existingSecret", "externalDatabase.existingSecret",
              "postgresql.auth.existingSecret", "backup.s3.existingSecret", "agent.serverCA.secretName"):
        if values_get(values, p):
            external.add(("Secret", values_get(values, p)))
    for kind in ("issuers", "dnsSolvers", "notifiers"):
        for inst in values_get(values, f"plugins.instances.{kind}", []) or []:
            for ref in (inst.get("secretRefs") or {}).values():
                external.add(("Secret", ref["secretName"]))
    eab = values_get(values, "server.issuer.acme.eabHmacKeySecretRef") or {}
    if eab:
        external.add(("Secret", eab["secretName"]))
    for cm in values_get(values, "plugins.configMaps", []) or []:
        external.add(("ConfigMap", cm["name"]))
    for env in (values_get(values, "server.env", []) or []) + (values_get(values, "agent.env", []) or []):
        ref = ((env.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
        if ref:
            external.add(("Secret", ref))
    for p in ("backup.pvc.claimName", "agent.persistence.existingClaim"):
        if values_get(values, p):
            external.add(("PersistentVolumeClaim", values_get(values, p)))
    for t in values_get(values, "ingress.tls", []) or []:
        external.add(("Secret", t["secretName"]))
    refs = set()
    for d in workloads(docs):
        spec = pod_spec(d)
        for v in spec.get("volumes", []) or []:
            if "secret" in v:
                refs.add(("Secret", v["secret"]["secretName"]))
            if "configMap" in v:
                refs.add(("ConfigMap", v["configMap"]["name"]))
            if "persistentVolumeClaim" in v:
                refs.add(("PersistentVolumeClaim", v["persistentVolumeClaim"]["claimName"]))
        for _, c in containers(spec):
            for e in c.get("env", []) or []:
                ref = ((e.get("valueFrom") or {}).get("secretKeyRef") or {}).get("name")
                if ref:
                    refs.add(("Secret", ref))
    for sm in by_kind(docs, "ServiceMonitor"):
        for ep in sm["spec"]["endpoints"]:
            refs.add(("Secret", ep["authorization"]["credentials"]["name"]))
    for ing in by_kind(docs, "Ingress"):
        for t in ing["spec"].get("tls", []) or []:
            refs.add(("Secret", t["secretName"]))
    dangling = sorted(r for r in refs if r not in rendered and r not in external)
    report(not dangling, f"{name}: every referenced Secret/ConfigMap/claim is rendered or given in values",
           str(dangling))


def check_services(docs, name):
    pods = [pod_meta(d).get("labels", {}) for d in workloads(docs)]
    for svc in by_kind(docs, "Service"):
        sel = svc["spec"]["selector"]
        report(any(all(p.get(k) == v for k, v in sel.items()) for p in pods),
               f"{name}: Service {svc['metadata']['name']} selects pods of the chart", str(sel))


def check_instances(docs, srv, spec, name):
    full = server_deployment(docs)["metadata"]["name"]
    cms = {d["metadata"]["name"]: d for d in by_kind(docs, "ConfigMap")}
    data = cms.get(full, {}).get("data", {})
    try:
        inst = json.loads(data.get("instances.json", ""))
        ok = set(inst) == {"issuers", "dns_solvers", "notifiers"}
    except ValueError as e:
        inst, ok = {}, False
    report(ok, f"{name}: instances.json is JSON with issuers, dns_solvers, notifiers", data.get("instances.json"))
    try:
        grants = tomllib.loads(data.get("plugin-grants.toml", ""))
        gok = all(isinstance(g, dict) and set(g) <= {"outbound_hosts", "allow_private_networks"}
                  for g in grants.values())
    except tomllib.TOMLDecodeError as e:
        grants, gok = {}, False
    report(gok, f"{name}: plugin-grants.toml is TOML the server accepts", data.get("plugin-grants.toml"))
    env = env_of(srv)
    has_instances = any(inst.get(k) for k in ("issuers", "dns_solvers", "notifiers"))
    report(("CERTCTL_INSTANCES_FILE" in env) == has_instances and
           (not has_instances or env_value(srv, "CERTCTL_INSTANCES_FILE") == "/etc/certctl/config/instances.json"),
           f"{name}: CERTCTL_INSTANCES_FILE set exactly when instances are declared", str(env.get("CERTCTL_INSTANCES_FILE")))
    report(("CERTCTL_PLUGIN_GRANTS" in env) == bool(grants), f"{name}: CERTCTL_PLUGIN_GRANTS set exactly when grants exist",
           str(grants))
    # Every file: reference points into a mounted Secret of the same name.
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounted = {}
    for m in srv.get("volumeMounts", []):
        v = vols.get(m["name"], {})
        if "secret" in v:
            mounted[m["mountPath"]] = v["secret"]["secretName"]
    bad = []
    for kind in ("issuers", "dns_solvers", "notifiers"):
        for i in inst.get(kind, []):
            for key, val in (i.get("config") or {}).items():
                if isinstance(val, str) and val.startswith("file:"):
                    path = val[5:]
                    d, _ = os.path.split(path)
                    if mounted.get(d) != os.path.basename(d):
                        bad.append(f"{i['name']}.{key}={val}")
    report(not bad, f"{name}: every file: secret reference is a mounted Secret", str(bad))
    mount = [m for m in srv.get("volumeMounts", []) if m["mountPath"] == "/etc/certctl/config"]
    report(bool(mount) and "configMap" in vols.get(mount[0]["name"], {}),
           f"{name}: the config ConfigMap is mounted as a directory", str(mount))


# ----------------------------------------------------------------------------------------
# Fixture-specific assertions.

def hook_of(docs, kind, suffix):
    objs = [d for d in named(docs, kind, suffix) if "helm.sh/hook" in (d["metadata"].get("annotations") or {})]
    return objs[0] if objs else None


def migrate_expectations(docs, name, hook, via_hook, secret_expected=True):
    job = hook_of(docs, "Job", "-migrate")
    if not report(job is not None, f"{name}: migration hook Job rendered", "missing"):
        return
    ann = job["metadata"]["annotations"]
    report(ann["helm.sh/hook"] == hook, f"{name}: migration Job hook is {hook}", ann["helm.sh/hook"])
    c = pod_spec(job)["containers"][0]
    report(c["command"] == ["certctl-server", "--migrate-only"], f"{name}: the Job runs certctl-server --migrate-only",
           str(c["command"]))
    names = [e["name"] for e in c.get("env", [])]
    report(names in (["CERTCTL_DATABASE_URL"], ["PGPASSWORD", "CERTCTL_DATABASE_URL"]),
           f"{name}: the Job gets only the database URL", str(names))
    report(not c.get("volumeMounts"), f"{name}: the Job mounts nothing (no TLS files, no tokens)", str(c.get("volumeMounts")))
    sec = hook_of(docs, "Secret", "-migrate")
    if secret_expected:
        report(sec is not None and sec["metadata"]["annotations"]["helm.sh/hook"] == hook and
               int(sec["metadata"]["annotations"]["helm.sh/hook-weight"]) < int(ann["helm.sh/hook-weight"]),
               f"{name}: the Job's URL Secret is a hook created before it", str(sec and sec["metadata"]))
    _, srv = find_container(docs, "server")
    report(env_value(srv, "CERTCTL_MIGRATIONS_VIA_HOOK") == via_hook,
           f"{name}: server CERTCTL_MIGRATIONS_VIA_HOOK={via_hook}", str(env_value(srv, "CERTCTL_MIGRATIONS_VIA_HOOK")))


def pdb_expect(docs, name, present):
    pdbs = by_kind(docs, "PodDisruptionBudget")
    report(bool(pdbs) == present, f"{name}: PodDisruptionBudget {'present' if present else 'absent'}",
           f"{len(pdbs)} rendered")


def fixture(docs, values, name, upgrade):
    server = server_deployment(docs)
    replicas = server["spec"]["replicas"]
    pdb_expect(docs, name, replicas > 1 and values_get(values, "podDisruptionBudget.enabled", True))
    ds = by_kind(docs, "DaemonSet")
    agent_ds = [d for d in ds if d["metadata"]["name"].endswith("-agent")]
    _, agent = find_container(docs, "agent")
    if agent is not None:
        kind = values_get(values, "agent.kind", "DaemonSet")
        name_env = env_of(agent).get("CERTCTL_AGENT_NAME")
        if kind == "DaemonSet":
            report(len(agent_ds) == 1 and name_env and name_env["valueFrom"]["fieldRef"]["fieldPath"] == "spec.nodeName",
                   f"{name}: DaemonSet agents named after their node (downward API)", json.dumps(name_env))
            vols = {v["name"]: v for v in pod_spec(agent_ds[0])["volumes"]}
            report("hostPath" in vols["keys"], f"{name}: DaemonSet keeps keys on the node (hostPath)", str(vols["keys"]))
        else:
            report(name_env is None, f"{name}: Deployment agent keeps the pod hostname as its name", json.dumps(name_env))
        report("secretKeyRef" in env_of(agent)["CERTCTL_AGENT_BOOTSTRAP_TOKEN"]["valueFrom"],
               f"{name}: agents get the bootstrap token from the Secret", "")
        report(env_value(agent, "CERTCTL_SERVER_URL", ).startswith("https://"), f"{name}: agents use https", "")
        ca = env_value(agent, "CERTCTL_SERVER_CA_BUNDLE_PATH")
        report(ca == "/etc/certctl/server-ca/ca.crt", f"{name}: agents trust the server CA bundle", str(ca))
        for mnt in agent.get("volumeMounts", []):
            if mnt["name"].startswith("discovery-"):
                report(mnt.get("readOnly") is True, f"{name}: discovery dir {mnt['mountPath']} mounted read-only", "")
    pg = named(docs, "StatefulSet", "-postgresql")
    if values_get(values, "postgresql.enabled", True):
        if report(len(pg) == 1, f"{name}: bundled PostgreSQL StatefulSet", "missing"):
            s = pg[0]["spec"]
            c = pod_spec(pg[0])["containers"][0]
            report(s["updateStrategy"]["type"] == "OnDelete" and s["podManagementPolicy"] == "OrderedReady",
                   f"{name}: PostgreSQL OnDelete + OrderedReady", str(s["updateStrategy"]))
            report(c["livenessProbe"]["exec"]["command"][0] == "pg_isready" and
                   c["readinessProbe"]["exec"]["command"][0] == "pg_isready", f"{name}: pg_isready probes", "")
            size = s["volumeClaimTemplates"][0]["spec"]["resources"]["requests"]["storage"]
            report(size == str(values_get(values, "postgresql.storage.size", "8Gi")), f"{name}: data volume {size}", size)
        _, wait = find_container(docs, "wait-for-postgresql")
        report(wait is not None, f"{name}: server waits for the bundled PostgreSQL", "")
    else:
        report(not pg, f"{name}: no PostgreSQL with an external database", str(len(pg)))
        report(not by_kind(docs, "CronJob"), f"{name}: no backup CronJob with an external database", "")

    viahook = values_get(values, "migrations.viaHook", True)
    bundled = values_get(values, "postgresql.enabled", True)
    if viahook:
        if bundled:
            migrate_expectations(docs, name, "pre-upgrade", "true" if upgrade else "false",
                                 not values_get(values, "postgresql.auth.existingSecret"))
        else:
            migrate_expectations(docs, name, "pre-install,pre-upgrade", "true",
                                 not values_get(values, "externalDatabase.existingSecret"))
    else:
        report(not [d for d in docs if "helm.sh/hook" in (d["metadata"].get("annotations") or {})],
               f"{name}: no hooks when migrations.viaHook is false", "")
        _, srv = find_container(docs, "server")
        report(env_value(srv, "CERTCTL_MIGRATIONS_VIA_HOOK") == "false", f"{name}: the server migrates itself", "")

    cron = by_kind(docs, "CronJob")
    if values_get(values, "backup.enabled"):
        if report(len(cron) == 1, f"{name}: backup CronJob rendered", str(len(cron))):
            spec = pod_spec(cron[0])
            cm = named(docs, "ConfigMap", "-backup")[0]
            with open(os.path.join(ROOT, "charts/certctl/files/backup.sh")) as f:
                report(cm["data"]["backup.sh"] == f.read(), f"{name}: the CronJob runs files/backup.sh unchanged", "")
            report(cron[0]["spec"]["concurrencyPolicy"] == "Forbid", f"{name}: one backup at a time", "")
            dump = [c for _, c in containers(spec) if c["name"] == "dump"][0]
            report(dump["command"] == ["sh", "/scripts/backup.sh", "dump"] and env_value(dump, "BACKUP_DIR") == "/backup",
                   f"{name}: dump step of backup.sh into /backup", str(dump["command"]))
            if values_get(values, "backup.sink") == "s3":
                up = [c for _, c in containers(spec) if c["name"] == "upload"]
                report(len(up) == 1 and env_value(up[0], "BACKUP_S3_BUCKET") == values_get(values, "backup.s3.bucket")
                       and up[0]["command"][-1] == "upload", f"{name}: S3 upload step with the bucket", str(up))
                vol = {v["name"]: v for v in spec["volumes"]}["backup"]
                report("emptyDir" in vol, f"{name}: S3 sink dumps to a scratch emptyDir", str(vol))
            else:
                vol = {v["name"]: v for v in spec["volumes"]}["backup"]
                claim = values_get(values, "backup.pvc.claimName") or server["metadata"]["name"] + "-backup"
                report(vol.get("persistentVolumeClaim", {}).get("claimName") == claim,
                       f"{name}: PVC sink writes to claim {claim}", str(vol))
                report(env_value(dump, "BACKUP_RETENTION") == str(values_get(values, "backup.retention", 14)),
                       f"{name}: retention {values_get(values, 'backup.retention', 14)}", "")
    else:
        report(not cron, f"{name}: no backup CronJob unless backup.enabled", "")

    sm = by_kind(docs, "ServiceMonitor")
    rules = by_kind(docs, "PrometheusRule")
    if values_get(values, "monitoring.enabled"):
        if report(len(sm) == 1, f"{name}: ServiceMonitor rendered", ""):
            ep = sm[0]["spec"]["endpoints"][0]
            report(ep["path"] == "/api/v1/metrics/prometheus" and ep["scheme"] == "https" and
                   ep["authorization"]["type"] == "Bearer" and
                   ep["authorization"]["credentials"]["key"] == "metrics-api-key",
                   f"{name}: ServiceMonitor scrapes over HTTPS with the metrics key as bearer token", json.dumps(ep))
        if report(len(rules) == 1, f"{name}: PrometheusRule rendered", ""):
            alerts = [r["alert"] for g in rules[0]["spec"]["groups"] for r in g["rules"]]
            want = ["CertctlCertificateExpiringSoon", "CertctlAgentOffline", "CertctlJobFailureRateHigh",
                    "CertctlIssuanceFailures", "CertctlPluginFailing"]
            report(sorted(alerts) == sorted(want), f"{name}: the five alerts", str(alerts))
            job_rule = [r for g in rules[0]["spec"]["groups"] for r in g["rules"]
                        if r.get("alert") == "CertctlJobFailureRateHigh"][0]
            report("clamp_min" not in job_rule["expr"], f"{name}: job failure alert is a ratio, not clamp_min", "")
    else:
        report(not sm and not rules, f"{name}: no Prometheus Operator objects unless monitoring.enabled", "")

    nps = by_kind(docs, "NetworkPolicy")
    if values_get(values, "networkPolicy.enabled"):
        srv_np = [n for n in nps if n["metadata"]["name"] == server["metadata"]["name"]]
        if report(len(srv_np) == 1, f"{name}: server NetworkPolicy", ""):
            rules_in = srv_np[0]["spec"]["ingress"]
            ns_sel = [r for r in rules_in if any("namespaceSelector" in f for f in r.get("from", []))]
            extra = [r for r in values_get(values, "networkPolicy.extraServerIngress", []) or []
                     if any("namespaceSelector" in f for f in r.get("from", []))]
            want = int(bool(values_get(values, "ingress.enabled"))) + \
                int(bool(values_get(values, "monitoring.enabled"))) + len(extra)
            report(len(ns_sel) == want, f"{name}: server ingress from {want} namespace selector(s)", str(ns_sel))
            agents_in = [r for r in rules_in if any(
                (f.get("podSelector") or {}).get("matchLabels", {}).get("app.kubernetes.io/component") == "agent"
                for f in r.get("from", []))]
            report(bool(agents_in), f"{name}: agents may reach the server", "")
            egress = srv_np[0]["spec"]["egress"]
            report(any(p.get("port") == 53 for r in egress for p in r.get("ports", [])),
                   f"{name}: server egress allows DNS", "")
        if bundled:
            pg_np = named(docs, "NetworkPolicy", "-postgresql")
            report(len(pg_np) == 1, f"{name}: PostgreSQL NetworkPolicy", "")
    else:
        report(not nps, f"{name}: no NetworkPolicy unless networkPolicy.enabled", "")

    ing = [i for i in by_kind(docs, "Ingress") if not i["metadata"]["name"].endswith("-acme-http01")]
    report(bool(ing) == bool(values_get(values, "ingress.enabled")), f"{name}: Ingress only when enabled", "")
    http01 = values_get(values, "server.acmeHttp01Port", 0)
    _, srv = find_container(docs, "server")
    ports = {p["name"]: p["containerPort"] for p in srv.get("ports", [])}
    svc = [s for s in by_kind(docs, "Service") if s["metadata"]["name"] == server["metadata"]["name"]][0]
    svc_ports = {p["name"] for p in svc["spec"]["ports"]}
    challenge = named(docs, "Ingress", "-acme-http01")
    if http01:
        report(ports.get("acme-http01") == http01 and "acme-http01" in svc_ports and
               env_value(srv, "CERTCTL_ACME_HTTP01_ADDRESS", ).endswith(f":{http01}"),
               f"{name}: http-01 listener on {http01}, in the Service", str(ports))
        if values_get(values, "ingress.enabled"):
            report(len(challenge) == 1 and not challenge[0]["spec"].get("tls") and
                   challenge[0]["spec"]["rules"][0]["http"]["paths"][0]["path"] == "/.well-known/acme-challenge/",
                   f"{name}: plain-HTTP Ingress for /.well-known/acme-challenge/", str(challenge))
    else:
        report("acme-http01" not in ports and "acme-http01" not in svc_ports and not challenge and
               "CERTCTL_ACME_HTTP01_ADDRESS" not in env_of(srv), f"{name}: no http-01 listener unless asked", "")
    for i in ing:
        backend = i["spec"]["rules"][0]["http"]["paths"][0]["backend"]["service"]
        report(backend["name"] == server["metadata"]["name"] and backend["port"]["name"] == "https",
               f"{name}: Ingress routes to the server's https port", str(backend))

    extra = FIXTURES.get(name)
    if extra:
        extra(docs, values, name, upgrade)


def fx_plugins(docs, values, name, upgrade):
    _, srv = find_container(docs, "server")
    dirs = env_value(srv, "CERTCTL_PLUGIN_DIRS")
    want = "/usr/lib/certctl/plugins," + ",".join(f"/etc/certctl/plugins/{c['name']}" for c in values["plugins"]["configMaps"])
    report(dirs == want, f"{name}: CERTCTL_PLUGIN_DIRS = built-in dir + plugin mounts", str(dirs))
    cm = [d for d in by_kind(docs, "ConfigMap") if d["metadata"]["name"] == server_deployment(docs)["metadata"]["name"]][0]
    inst = json.loads(cm["data"]["instances.json"])
    acme = [i for i in inst["issuers"] if i["plugin"] == "acme"]
    report(len(acme) == 1 and acme[0]["config"].get("dns_solver") == values["server"]["issuer"]["acme"]["dnsSolver"]
           and acme[0]["config"].get("challenge") == "dns-01", f"{name}: ACME issuer uses dns_solver via dns-01",
           json.dumps(acme))
    solver = acme[0]["config"]["dns_solver"] if acme else None
    report(solver in [s["name"] for s in inst["dns_solvers"]], f"{name}: the ACME dns_solver is a declared instance", "")
    cf = [s for s in inst["dns_solvers"] if s["name"] == "cf"][0]
    report(cf["config"]["api_token"] == "file:/etc/certctl/secrets/cloudflare-api/token",
           f"{name}: secretRefs become file: references", cf["config"]["api_token"])
    grants = tomllib.loads(cm["data"]["plugin-grants.toml"])
    report(grants.get("acme") == {"outbound_hosts": ["https://acme-v02.api.letsencrypt.org"]},
           f"{name}: the ACME directory host is granted to the acme plugin", str(grants.get("acme")))
    report(grants.get("infoblox", {}).get("allow_private_networks") is True, f"{name}: operator grants rendered", str(grants))


def fx_rules(docs, values, name, upgrade):
    rule = by_kind(docs, "PrometheusRule")[0]
    ann = {r["alert"]: r["annotations"]["description"] for g in rule["spec"]["groups"] for r in g["rules"]}
    report("threshold: 20%" in ann["CertctlJobFailureRateHigh"], f"{name}: job alert text quotes 20%",
           ann["CertctlJobFailureRateHigh"])
    report("more than 2" in ann["CertctlIssuanceFailures"], f"{name}: issuance alert text quotes 2",
           ann["CertctlIssuanceFailures"])
    report("more than 1," in ann["CertctlAgentOffline"], f"{name}: agent alert text quotes 1", ann["CertctlAgentOffline"])


def fx_ha(docs, values, name, upgrade):
    pdb = by_kind(docs, "PodDisruptionBudget")[0]
    report(pdb["spec"].get("minAvailable") == 2, f"{name}: PDB minAvailable 2", str(pdb["spec"]))
    report(server_deployment(docs)["spec"]["replicas"] == 3, f"{name}: 3 server replicas", "")
    ing = by_kind(docs, "Ingress")[0]
    report(ing["spec"].get("tls") and ing["spec"]["ingressClassName"] == "nginx", f"{name}: Ingress with TLS", "")


def fx_s3(docs, values, name, upgrade):
    _, srv = find_container(docs, "server")
    url = env_value(srv, "CERTCTL_DATABASE_URL") or ""
    report("$(PGPASSWORD)" in url and list(env_of(srv)).index("PGPASSWORD") < list(env_of(srv)).index("CERTCTL_DATABASE_URL"),
           f"{name}: URL composed from the existing Secret's password (defined before use)", url)


def fx_external(docs, values, name, upgrade):
    db = [d for d in by_kind(docs, "Secret") if d["metadata"]["name"].endswith("-db")]
    report(len(db) == 1 and base64.b64decode(db[0]["data"]["database-url"]).decode() == values["externalDatabase"]["url"],
           f"{name}: the external URL is stored in the chart's Secret", "")
    _, wait = find_container(docs, "wait-for-postgresql")
    report(wait is None, f"{name}: no wait for a bundled PostgreSQL", "")


def fx_agent_deployment(docs, values, name, upgrade):
    dep = [d for d in by_kind(docs, "Deployment") if d["metadata"]["name"].endswith("-agent")]
    if report(len(dep) == 1, f"{name}: agent Deployment", ""):
        report(dep[0]["spec"]["replicas"] == 1 and dep[0]["spec"]["strategy"]["type"] == "Recreate",
               f"{name}: one agent, Recreate (the claim is ReadWriteOnce)", "")
        vols = {v["name"]: v for v in pod_spec(dep[0])["volumes"]}
        report("persistentVolumeClaim" in vols["keys"], f"{name}: keys on a PVC", str(vols["keys"]))
    report(not by_kind(docs, "DaemonSet"), f"{name}: no DaemonSet", "")


def fx_all_on(docs, values, name, upgrade):
    cert = by_kind(docs, "Certificate")[0]
    report(cert["spec"]["issuerRef"] == {"name": "corp-ca", "kind": "ClusterIssuer", "group": "cert-manager.io"},
           f"{name}: Certificate issuerRef from values", str(cert["spec"]["issuerRef"]))
    report("certctl.example.com" in cert["spec"]["dnsNames"], f"{name}: extra DNS names in the Certificate", "")


FIXTURES = {"plugins": fx_plugins, "prometheus-rules": fx_rules, "ha": fx_ha, "backup-s3": fx_s3,
            "external-db": fx_external, "agent-deployment": fx_agent_deployment, "all-on": fx_all_on}


# ----------------------------------------------------------------------------------------

def cmd_render(path, values_path, name, upgrade):
    with open(path) as f:
        text = f.read()
    docs = load_docs(path)
    with open(values_path) as f:
        values = yaml.safe_load(f) or {}
    generic(docs, text, values, name)
    if server_deployment(docs) is not None:
        fixture(docs, values, name, upgrade)


def cmd_builtins(path, out):
    docs = load_docs(path)
    keep = [d for d in docs if d.get("apiVersion") in BUILTIN_GROUPS]
    for d in docs:
        if d.get("apiVersion") not in BUILTIN_GROUPS:
            print(f"{d.get('kind')}/{d['metadata']['name']} ({d.get('apiVersion')})")
    with open(out, "w") as f:
        yaml.safe_dump_all(keep, f, sort_keys=False)


def cmd_rules(path, out):
    rules = [d for d in load_docs(path) if d.get("kind") == "PrometheusRule"]
    if len(rules) != 1:
        sys.exit(f"expected one PrometheusRule, found {len(rules)}")
    with open(out, "w") as f:
        yaml.safe_dump(rules[0]["spec"], f, sort_keys=False)


# Kubernetes objects passed through as they are: their inner keys follow the Kubernetes API
# reference and are documented by the comment on the key that holds them.
PASSTHROUGH = {"resources", "podSecurityContext", "securityContext", "serverEgress",
               "ingressControllerNamespaceSelector", "prometheusNamespaceSelector"}


def cmd_comments(path):
    """Every key line must have a comment line right above it (or a comment block ending there)."""
    lines = open(path).read().splitlines()
    missing = []
    stack = []  # (indent, key) of the enclosing keys
    for i, line in enumerate(lines):
        m = re.match(r"^(\s*)(- )?([A-Za-z0-9_.-]+):(\s|$)", line)
        if not m or m.group(2):
            continue
        indent = len(m.group(1))
        while stack and stack[-1][0] >= indent:
            stack.pop()
        inside_passthrough = any(k in PASSTHROUGH for _, k in stack)
        stack.append((indent, m.group(3)))
        if inside_passthrough:
            continue
        # List items' own keys (inside "- ..." blocks) belong to examples of lists; skip those
        # nested under a list item.
        j = i - 1
        while j >= 0 and lines[j].strip() == "":
            j -= 1
        prev = lines[j].strip() if j >= 0 else ""
        inside_list = False
        k = i - 1
        while k >= 0:
            s = lines[k]
            if s.strip() and len(s) - len(s.lstrip()) < indent:
                inside_list = s.lstrip().startswith("- ")
                break
            k -= 1
        if inside_list:
            continue
        if not prev.startswith("#"):
            missing.append(f"line {i + 1}: {line.strip()}")
    report(not missing, "values.yaml: a comment above every key", "; ".join(missing))


def cmd_schema(values_path, schema_path):
    """values.schema.json and values.yaml describe the same keys, and every object level of
    the schema refuses unknown keys."""
    values = yaml.safe_load(open(values_path))
    schema = json.load(open(schema_path))
    stale, open_levels = [], []

    def walk(node, val, path):
        if not isinstance(node, dict):
            return
        props = node.get("properties")
        if node.get("type") == "object" and props is not None:
            if node.get("additionalProperties") is not False:
                open_levels.append(path or "(root)")
            # Kubernetes objects and optional references: the schema lists more than the defaults set.
            optional = any(part in PASSTHROUGH | {"affinity", "eabHmacKeySecretRef", "requests", "limits",
                                                  "capabilities"} for part in path.split("."))
            for k, sub in props.items():
                if isinstance(val, dict) and k not in val and not optional:
                    stale.append(f"{path}.{k}".lstrip("."))
                walk(sub, val.get(k) if isinstance(val, dict) else None, f"{path}.{k}".lstrip("."))
        for key in ("items", "additionalProperties"):
            if isinstance(node.get(key), dict):
                walk(node[key], None, f"{path}[]")
        for alt in node.get("oneOf", []):
            walk(alt, val, path)

    walk(schema, values, "")
    report(not stale, "values.schema.json: every key it declares is in values.yaml", str(stale))
    report(not open_levels, "values.schema.json: additionalProperties false at every declared object level",
           str(open_levels))


# The values keys the chart keeps from the system it re-implements, plus the new ones.
KEPT_KEYS = [
    "server.auth.apiKey", "server.tls.existingSecret", "server.tls.certManager.enabled",
    "server.tls.certManager.issuerRef", "postgresql.enabled", "postgresql.auth.username",
    "postgresql.auth.password", "postgresql.auth.database", "postgresql.auth.existingSecret",
    "postgresql.storage.size", "postgresql.storage.storageClass", "externalDatabase.url",
    "externalDatabase.existingSecret", "agent.enabled", "agent.kind", "agent.discoveryDirs",
    "ingress.enabled", "ingress.className", "ingress.annotations", "ingress.hosts", "ingress.tls",
    "backup.enabled", "backup.schedule", "backup.sink", "backup.pvc.claimName", "backup.s3.bucket",
    "migrations.viaHook", "monitoring.enabled", "monitoring.serviceMonitor.enabled",
    "monitoring.prometheusRules.enabled", "monitoring.thresholds", "podDisruptionBudget.enabled",
    "networkPolicy.enabled", "rbac.create", "serviceAccount.create", "serviceAccount.name",
    "plugins.configMaps", "plugins.grants", "plugins.instances", "server.issuer.acme.dnsSolver",
]
TOP_KEYS = r"(?:server|postgresql|externalDatabase|agent|ingress|backup|monitoring|podDisruptionBudget|" \
           r"networkPolicy|rbac|serviceAccount|plugins|migrations|image)"


FILE_SUFFIXES = {"json", "sh", "crt", "key", "toml", "yaml", "md", "wasm", "dump", "read", "write"}


def lookup_key(values, path):
    """Does the dotted path exist in values.yaml? Below an empty map or a list the keys are the
    user's own (grants by plugin name, list items), so anything goes there."""
    cur = values
    for part in path.split("."):
        if part == "*":
            return True
        if isinstance(cur, list) or (isinstance(cur, dict) and not cur):
            return True
        if not isinstance(cur, dict) or part not in cur:
            return False
        cur = cur[part]
    return True


def cmd_dockeys(values_path, *docs):
    values = yaml.safe_load(open(values_path))
    missing_kept = [k for k in KEPT_KEYS if not lookup_key(values, k)]
    report(not missing_kept, "values.yaml: the kept and new keys exist", str(missing_kept))
    bad = []
    for doc in docs:
        text = open(doc).read()
        for m in re.finditer(r"`(" + TOP_KEYS + r"(?:\.[A-Za-z0-9_*]+)+)(?:[=:][^`]*)?`", text):
            if m.group(1).rsplit(".", 1)[1] in FILE_SUFFIXES:
                continue  # a file name (agent.json, backup.sh), not a key
            if not lookup_key(values, m.group(1)):
                bad.append(f"{os.path.relpath(doc, ROOT)}: {m.group(1)}")
    report(not bad, f"values keys named in {len(docs)} docs exist in values.yaml", "; ".join(sorted(set(bad))))


def cmd_docvalues(path, out):
    text = open(path).read()
    m = re.search(r"<!-- chart-check: values -->\s*```yaml\n(.*?)```", text, re.S)
    if not m:
        sys.exit(f"{path}: no ```yaml block after <!-- chart-check: values -->")
    with open(out, "w") as f:
        f.write(m.group(1))
    c = re.search(r"<!-- chart-check: command -->\s*```sh\n(.*?)```", text, re.S)
    if c:
        print(c.group(1).strip())


# ----------------------------------------------------------------------------------------
# Generated secrets kept across upgrades (renders against ci/fake_apiserver.py).

def secret_map(path):
    return {d["metadata"]["name"]: d for d in load_docs(path) if d.get("kind") == "Secret"}


def cmd_state(render, out, tweak):
    """The Secrets of a render as the fake API server's state. tweak: none, expiring (the server
    certificate's not-after annotation 30 days from now), renamed (its recorded names differ)."""
    import time
    state = {}
    for name, sec in secret_map(render).items():
        if "helm.sh/hook" in (sec["metadata"].get("annotations") or {}):
            continue  # hook resources are deleted after the hook
        sec = json.loads(json.dumps(sec))
        sec["metadata"]["namespace"] = "certctl"
        ann = sec["metadata"].setdefault("annotations", {})
        if name.endswith("-tls") and tweak == "expiring":
            ann["certctl.io/not-after-unix"] = str(int(time.time()) + 30 * 86400)
        if name.endswith("-tls") and tweak == "renamed":
            ann["certctl.io/dns-names"] = "old-name"
        state[name] = sec
    with open(out, "w") as f:
        json.dump(state, f)


SERVER_KEYS = ["admin-api-key", "metrics-api-key", "agent-bootstrap-token", "encryption-key", "api-keys-named"]


def decoded(secret, key):
    return base64.b64decode(secret["data"][key]).decode()


def cmd_compare(first, second, mode):
    a, b = secret_map(first), secret_map(second)
    full = "certctl"
    srv_a, srv_b = a[full], b[full]
    db_a, db_b = a[full + "-db"], b[full + "-db"]
    same_keys = all(decoded(srv_a, k) == decoded(srv_b, k) for k in SERVER_KEYS)
    same_db = decoded(db_a, "postgres-password") == decoded(db_b, "postgres-password") and \
        decoded(db_a, "database-url") == decoded(db_b, "database-url")
    same_ca = a[full + "-ca"]["data"] == b[full + "-ca"]["data"]
    same_tls = a[full + "-tls"]["data"] == b[full + "-tls"]["data"]
    checksum = [pod_meta(server_deployment(load_docs(p)))["annotations"]["checksum/secret"] for p in (first, second)]
    if mode == "fresh":
        report(not same_keys and not same_db and not same_ca, "two installs without a cluster state generate different keys",
               "identical: the stability checks below would prove nothing")
        return
    hook = b.get(full + "-migrate")
    report(same_keys, f"{mode}: API keys, bootstrap token and ENCRYPTION KEY read back, not regenerated", "changed")
    report(same_db, f"{mode}: PostgreSQL password and database URL read back", "changed")
    report(hook is not None and decoded(hook, "database-url") == decoded(db_b, "database-url"),
           f"{mode}: the migration hook gets the same database URL", "differs")
    report(same_ca, f"{mode}: the generated CA is kept", "a new CA would break every agent's trust")
    if mode == "upgrade":
        report(same_tls, "upgrade: the server certificate is kept while valid and its names unchanged", "re-issued")
        report(checksum[0] == checksum[1], "upgrade: checksum/secret unchanged (no needless restart)", str(checksum))
        return
    # renewed: a new server certificate from the same CA, with a later expiry.
    report(not same_tls, f"{mode}: the server certificate is re-issued", "kept")
    ann_a = a[full + "-tls"]["metadata"]["annotations"]
    ann_b = b[full + "-tls"]["metadata"]["annotations"]
    report(int(ann_b["certctl.io/not-after-unix"]) > int(ann_a["certctl.io/not-after-unix"]) - 86400 * 400,
           f"{mode}: the new certificate's expiry is recorded", str(ann_b))
    with tempfile.TemporaryDirectory() as tmp:
        ca, crt = os.path.join(tmp, "ca.crt"), os.path.join(tmp, "tls.crt")
        with open(ca, "wb") as f:
            f.write(base64.b64decode(a[full + "-ca"]["data"]["ca.crt"]))
        with open(crt, "wb") as f:
            f.write(base64.b64decode(b[full + "-tls"]["data"]["tls.crt"]))
        r = subprocess.run(["openssl", "verify", "-CAfile", ca, crt], capture_output=True, text=True)
        report(r.returncode == 0, f"{mode}: the new certificate chains to the kept CA", r.stderr.strip())
    report(checksum[0] != checksum[1], f"{mode}: checksum/secret changes, so the pods load the new certificate",
           str(checksum))


# ----------------------------------------------------------------------------------------
# Running the binaries with what the chart gives a container (scripts/chart-check.sh smoke).

def cmd_materialize(render, container, outdir):
    """Lays out the files a container of the render would see under OUTDIR (Secrets and
    ConfigMaps it mounts, in the kubelet's ..data layout; its empty and host directories) and
    prints its environment as
    NAME=VALUE lines, with paths moved under OUTDIR. The image's plugin directory becomes an
    empty one. Values from Secrets are taken from the render; a fieldRef gives "node-1"."""
    docs = load_docs(render)
    wl, c = find_container(docs, container)
    if c is None:
        sys.exit(f"no container {container}")
    spec = pod_spec(wl)
    objs = {(d["kind"], d["metadata"]["name"]): d for d in docs}
    vols = {v["name"]: v for v in spec.get("volumes", [])}
    mounts = []
    for m in c.get("volumeMounts", []):
        path = outdir + m["mountPath"]
        os.makedirs(path, exist_ok=True)
        mounts.append(m["mountPath"])
        v = vols[m["name"]]
        for kind, key, ref in (("Secret", "secret", "secretName"), ("ConfigMap", "configMap", "name")):
            if key not in v:
                continue
            obj = objs.get((kind, v[key][ref]))
            if obj is None:
                sys.exit(f"{kind} {v[key][ref]} is not rendered")
            data = {k: base64.b64decode(x) for k, x in (obj.get("data") or {}).items()} if kind == "Secret" else \
                {k: x.encode() for k, x in (obj.get("data") or {}).items()}
            items = v[key].get("items") or [{"key": k, "path": k} for k in data]
            # The kubelet's layout: the files in a timestamped directory, "..data" pointing at
            # it, and one symlink per file through "..data" (an update swaps "..data").
            stamp = "..2026_01_01_00_00_00.000000001"
            os.makedirs(os.path.join(path, stamp))
            for it in items:
                with open(os.path.join(path, stamp, it["path"]), "wb") as f:
                    f.write(data[it["key"]])
                os.symlink(os.path.join("..data", it["path"]), os.path.join(path, it["path"]))
            os.symlink(stamp, os.path.join(path, "..data"))
    os.makedirs(outdir + "/usr/lib/certctl/plugins", exist_ok=True)
    mounts.append("/usr/lib/certctl/plugins")

    def move(value):
        parts = []
        for part in value.split(","):
            if any(part == m or part.startswith(m.rstrip("/") + "/") for m in mounts):
                part = outdir + part
            parts.append(part)
        return ",".join(parts)

    env = {}
    for e in c.get("env", []) or []:
        if "value" in e:
            value = e["value"]
        else:
            src = e["valueFrom"]
            if "secretKeyRef" in src:
                ref = src["secretKeyRef"]
                obj = objs.get(("Secret", ref["name"]))
                if obj is None:
                    sys.exit(f"Secret {ref['name']} is not rendered")
                value = base64.b64decode(obj["data"][ref["key"]]).decode()
            elif "fieldRef" in src:
                value = "node-1"
            else:
                sys.exit(f"cannot resolve {e}")
        # Kubernetes expands $(VAR) from variables defined earlier in the list.
        value = re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)
        env[e["name"]] = move(value)
    for k, v in env.items():
        print(f"{k}={v}")


def main(argv):
    if len(argv) >= 5 and argv[1] == "render":
        cmd_render(argv[2], argv[3], argv[4], "--upgrade" in argv[5:])
    elif len(argv) == 4 and argv[1] == "builtins":
        cmd_builtins(argv[2], argv[3])
    elif len(argv) == 4 and argv[1] == "rules":
        cmd_rules(argv[2], argv[3])
    elif len(argv) >= 3 and argv[1] == "dockeys":
        cmd_dockeys(argv[2], *argv[3:])
    elif len(argv) == 4 and argv[1] == "schema":
        cmd_schema(argv[2], argv[3])
    elif len(argv) == 3 and argv[1] == "comments":
        cmd_comments(argv[2])
    elif len(argv) == 5 and argv[1] == "state":
        cmd_state(argv[2], argv[3], argv[4])
    elif len(argv) == 5 and argv[1] == "compare":
        cmd_compare(argv[2], argv[3], argv[4])
    elif len(argv) == 5 and argv[1] == "materialize":
        cmd_materialize(argv[2], argv[3], argv[4])
    elif len(argv) == 4 and argv[1] == "docvalues":
        cmd_docvalues(argv[2], argv[3])
    else:
        sys.exit(__doc__)
    sys.exit(1 if FAILED else 0)


if __name__ == "__main__":
    main(sys.argv)
