#!/usr/bin/env python3
"""A stand-in for the Kubernetes API, just enough for `helm template --dry-run=server`, so the
chart's `lookup` calls (generated keys and certificates kept across upgrades) can be tested
without a cluster. Serves discovery for the kinds the chart renders, answers GETs of Secrets
from a JSON state file ({name: Secret}, re-read on every request), and 404 for everything else.
Listens on 127.0.0.1 only.

    fake_apiserver.py PORT STATE_JSON
"""

import json
import sys
import http.server

GROUPS = {
    "v1": [("secrets", "Secret"), ("configmaps", "ConfigMap"), ("services", "Service"),
           ("serviceaccounts", "ServiceAccount"), ("persistentvolumeclaims", "PersistentVolumeClaim")],
    "apps/v1": [("deployments", "Deployment"), ("daemonsets", "DaemonSet"), ("statefulsets", "StatefulSet")],
    "batch/v1": [("jobs", "Job"), ("cronjobs", "CronJob")],
    "policy/v1": [("poddisruptionbudgets", "PodDisruptionBudget")],
    "networking.k8s.io/v1": [("networkpolicies", "NetworkPolicy"), ("ingresses", "Ingress")],
    "rbac.authorization.k8s.io/v1": [("roles", "Role"), ("rolebindings", "RoleBinding")],
    "monitoring.coreos.com/v1": [("servicemonitors", "ServiceMonitor"), ("prometheusrules", "PrometheusRule")],
    "cert-manager.io/v1": [("certificates", "Certificate")],
}
NOT_FOUND = {"kind": "Status", "apiVersion": "v1", "status": "Failure", "reason": "NotFound", "code": 404,
             "message": "not found"}


class Handler(http.server.BaseHTTPRequestHandler):
    state_file = ""

    def log_message(self, *args):
        pass

    def send(self, code, obj):
        body = json.dumps(obj).encode()
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def do_GET(self):
        path = self.path.split("?")[0]
        if path == "/version":
            return self.send(200, {"major": "1", "minor": "33", "gitVersion": "v1.33.0"})
        if path == "/api":
            return self.send(200, {"kind": "APIVersions", "versions": ["v1"], "serverAddressByClientCIDRs": []})
        if path == "/apis":
            groups = []
            for gv in GROUPS:
                if "/" in gv:
                    group, version = gv.split("/")
                    ref = {"groupVersion": gv, "version": version}
                    groups.append({"name": group, "versions": [ref], "preferredVersion": ref})
            return self.send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": groups})
        for gv, resources in GROUPS.items():
            if path == ("/api/v1" if gv == "v1" else "/apis/" + gv):
                return self.send(200, {"kind": "APIResourceList", "groupVersion": gv, "resources": [
                    {"name": n, "singularName": k.lower(), "namespaced": True, "kind": k, "verbs": ["get", "list"]}
                    for n, k in resources]})
        parts = path.strip("/").split("/")
        if len(parts) == 6 and parts[:3] == ["api", "v1", "namespaces"] and parts[4] == "secrets":
            with open(self.state_file) as f:
                secret = json.load(f).get(parts[5])
            if secret:
                return self.send(200, secret)
        return self.send(404, NOT_FOUND)


def main():
    Handler.state_file = sys.argv[2]
    http.server.HTTPServer(("127.0.0.1", int(sys.argv[1])), Handler).serve_forever()


if __name__ == "__main__":
    main()
