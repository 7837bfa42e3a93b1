#!/usr/bin/env bash
# Checks of the Helm chart (charts/certctl), without a Kubernetes cluster:
#   1. helm lint and helm template over every values file in charts/certctl/ci/*-values.yaml
#      (and the quick start of docs/operators/install.md); every rendered manifest validated
#      with kubernetes-validate -k 1.33.0 --strict (built-in kinds) or the chart's own schemas
#      (Certificate, ServiceMonitor, PrometheusRule: no schema is bundled for CRDs); then what a
#      user would check by hand (charts/certctl/ci/check_render.py): security contexts, env
#      names, hooks, checksums, PDB only with replicas > 1, references between objects, ...
#   2. every charts/certctl/ci/invalid/*.yaml fails to render with the message recorded on its
#      "# expect:" line;
#   3. promtool check rules / test rules on the rendered PrometheusRule
#      (charts/certctl/ci/alerts-test.yaml);
#   4. the backup round trip against a real PostgreSQL (CERTCTL_TEST_POSTGRES_URL): schema by
#      `certctl-server --migrate-only` ($CERTCTL_SERVER_BIN) with only the database URL, rows,
#      charts/certctl/files/backup.sh exactly as the CronJob runs it, pg_restore into a new
#      database, row counts and contents compared table by table;
#   5. also: generated keys and certificates survive upgrades (helm's lookup, answered by
#      charts/certctl/ci/fake_apiserver.py on loopback), the values keys the docs name exist,
#      NOTES warnings, and — with PostgreSQL — certctl-server and certctl-agent (next to
#      $CERTCTL_SERVER_BIN) run with exactly the environment and files the chart gives their
#      containers (plus a declared instance of local-ca when $CERTCTL_TEST_PLUGIN_DIR has it).
# Ends with "chart checks: N passed, M failed"; exits 1 on any failure.
# Usage: scripts/chart-check.sh     (tools are installed by scripts/chart-env.sh when missing)
set -uo pipefail
cd "$(dirname "$0")/.."
start=$(date +%s)

# shellcheck source=scripts/chart-env.sh
source scripts/chart-env.sh || { echo "chart checks: 0 passed, 1 failed (tools missing)"; exit 1; }

chart=charts/certctl
ci=$chart/ci
py="$HOME/.cache/certctl/chart-venv/bin/python"
release=certctl
namespace=certctl
work=$(mktemp -d)
passed=0
failed=0
pg_dbs=()

cleanup() {
    for db in "${pg_dbs[@]}"; do
        psql -q "$pg_admin_url" -c "DROP DATABASE IF EXISTS \"$db\" WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rm -rf "$work"
}
trap cleanup EXIT

ok() {
    passed=$((passed + 1))
    echo "  ok    $*"
}
bad() {
    failed=$((failed + 1))
    echo "  FAIL  $*"
}
# Runs a command; ok/FAIL with its output shown on failure.
check() {
    local what=$1
    shift
    local out
    if out=$("$@" 2>&1); then
        ok "$what"
    else
        bad "$what"
        printf '%s\n' "$out" | tail -n 20 | sed 's/^/        /'
    fi
}
# Counts the PASS/FAIL lines of check_render.py; shows the failures. $3 = its exit status (a
# crash after some PASS lines is a failure too).
count_py() {
    local what=$1 out=$2 rc=${3:-0}
    local p f
    p=$(grep -c '^PASS ' "$out" || true)
    f=$(grep -c '^FAIL ' "$out" || true)
    passed=$((passed + p))
    failed=$((failed + f))
    if [ "$f" -eq 0 ] && [ "$rc" -ne 0 ]; then
        f=1
        failed=$((failed + 1))
    fi
    if [ "$f" -eq 0 ] && [ "$p" -gt 0 ]; then
        echo "  ok    $what ($p assertions)"
    else
        echo "  FAIL  $what ($p passed, $f failed)"
        grep -v '^PASS ' "$out" | sed 's/^/        /'
        [ "$p" -gt 0 ] || failed=$((failed + 1))
    fi
}

echo "==> chart metadata"
cargo_version=$(sed -n '/^\[workspace.package\]/,/^\[/s/^version = "\(.*\)"/\1/p' Cargo.toml | head -n 1)
app_version=$(sed -n 's/^appVersion: "\{0,1\}\([^"]*\)"\{0,1\}$/\1/p' $chart/Chart.yaml)
if [ -n "$cargo_version" ] && [ "$app_version" = "$cargo_version" ]; then
    ok "Chart.yaml appVersion $app_version = workspace version in Cargo.toml"
else
    bad "Chart.yaml appVersion '$app_version' differs from the workspace version '$cargo_version'"
fi
"$py" $ci/check_render.py comments $chart/values.yaml >"$work/comments.out" 2>&1
count_py "values.yaml comments" "$work/comments.out" $?
"$py" $ci/check_render.py schema $chart/values.yaml $chart/values.schema.json >"$work/schema.out" 2>&1
count_py "values.schema.json" "$work/schema.out" $?
"$py" $ci/check_render.py dockeys $chart/values.yaml $chart/README.md docs/operators/install.md \
    docs/operators/upgrade-rollback.md docs/operators/backup-restore.md docs/operators/disaster-recovery.md \
    docs/operators/monitoring.md docs/operators/sizing.md docs/operators/migrating-dns-scripts.md >"$work/dockeys.out" 2>&1
count_py "values keys in the docs" "$work/dockeys.out" $?
check "helm lint --strict (defaults)" helm lint --strict $chart
check "helm package (ci/ and the fixtures stay out of the package)" \
    sh -c "helm package $chart -d '$work/pkg' >/dev/null && ! tar -tzf '$work'/pkg/certctl-*.tgz | grep -q /ci/"

# Renders one values file and checks it. $1 = name, $2 = values file, $3.. = extra helm args.
render_and_check() {
    local name=$1 values=$2
    shift 2
    local label=$name
    case " $* " in *" --is-upgrade "*) label="$name (upgrade)" ;; esac
    local out="$work/$name.yaml"
    [ $# -gt 0 ] && out="$work/$name-upgrade.yaml"
    if ! helm template "$release" $chart -n "$namespace" -f "$values" "$@" >"$out" 2>"$out.err"; then
        bad "$label: helm template"
        sed 's/^/        /' "$out.err"
        return
    fi
    local crds
    crds=$("$py" $ci/check_render.py builtins "$out" "$out.builtin") || { bad "$label: split"; return; }
    check "$label: kubernetes-validate -k 1.33.0 --strict ($(grep -c '^kind:' "$out.builtin") objects)" \
        kubernetes-validate -k 1.33.0 --strict --quiet "$out.builtin"
    if [ -n "$crds" ]; then
        echo "        custom resources, no bundled schema, checked against ci/check_render.py's own: ${crds//$'\n'/ }"
    fi
    local extra=()
    case " $* " in *" --is-upgrade "*) extra=(--upgrade) ;; esac
    "$py" $ci/check_render.py render "$out" "$values" "$name" "${extra[@]}" >"$out.checks" 2>&1
    count_py "$label: rendered objects" "$out.checks" $?
}

echo "==> lint and render every values file of $ci"
fixtures=("$ci"/*-values.yaml)
if [ ${#fixtures[@]} -ge 8 ]; then
    ok "${#fixtures[@]} values files (at least 8)"
else
    bad "only ${#fixtures[@]} values files"
fi
for values in "${fixtures[@]}"; do
    name=$(basename "$values" -values.yaml)
    check "$name: helm lint --strict" helm lint --strict $chart -f "$values"
    render_and_check "$name" "$values"
done
# The install-time/upgrade-time difference of the migration design.
for name in defaults migrations-hook external-db; do
    render_and_check "$name" "$ci/$name-values.yaml" --is-upgrade
done

echo "==> generated secrets survive upgrades (lookup, against ci/fake_apiserver.py on loopback)"
lookup_checks() {
    local port state="$work/cluster-state.json" kubeconfig="$work/kubeconfig" fake_pid
    port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    echo '{}' >"$state"
    cat >"$kubeconfig" <<EOF
apiVersion: v1
kind: Config
clusters: [{name: fake, cluster: {server: "http://127.0.0.1:$port"}}]
contexts: [{name: fake, context: {cluster: fake, user: fake, namespace: $namespace}}]
current-context: fake
users: [{name: fake, user: {}}]
EOF
    "$py" $ci/fake_apiserver.py "$port" "$state" &
    fake_pid=$!
    for _ in $(seq 50); do
        curl -sf "http://127.0.0.1:$port/version" >/dev/null 2>&1 && break
        sleep 0.1
    done
    live() { # render against the fake cluster: $1 = output, $2.. = helm args
        local out=$1
        shift
        KUBECONFIG="$kubeconfig" helm template "$release" $chart -n "$namespace" --dry-run=server \
            --disable-openapi-validation "$@" >"$out" 2>"$out.err"
    }
    if live "$work/l-install.yaml" && live "$work/l-fresh.yaml"; then
        local rc=0 mode
        "$py" $ci/check_render.py compare "$work/l-install.yaml" "$work/l-fresh.yaml" fresh >"$work/l.out" 2>&1 || rc=1
        # The previous render's Secrets as the cluster state; then an upgrade render.
        for mode in none:upgrade expiring:renewal-near-expiry renamed:renewal-new-names; do
            "$py" $ci/check_render.py state "$work/l-install.yaml" "$state" "${mode%%:*}" || rc=1
            if live "$work/l-${mode%%:*}.yaml" --is-upgrade; then
                "$py" $ci/check_render.py compare "$work/l-install.yaml" "$work/l-${mode%%:*}.yaml" "${mode#*:}" \
                    >>"$work/l.out" 2>&1 || rc=1
            else
                echo "FAIL ${mode#*:}: helm template --dry-run=server" >>"$work/l.out"
                sed 's/^/    /' "$work/l-${mode%%:*}.yaml.err" >>"$work/l.out"
            fi
        done
        count_py "lookup: install, upgrade, certificate renewal" "$work/l.out" "$rc"
    else
        bad "helm template --dry-run=server against the fake API server"
        sed 's/^/        /' "$work/l-install.yaml.err" "$work/l-fresh.yaml.err" 2>/dev/null | tail -n 10
    fi
    kill "$fake_pid" 2>/dev/null
    wait "$fake_pid" 2>/dev/null
}
lookup_checks

echo "==> values shown in the docs render"
if "$py" $ci/check_render.py docvalues docs/operators/install.md "$work/install-values.yaml" >"$work/install-cmd"; then
    check "install.md: its command names the chart and its values file" \
        grep -q "helm upgrade --install certctl charts/certctl .*-f certctl-values.yaml" "$work/install-cmd"
    render_and_check install-doc "$work/install-values.yaml"
else
    bad "install.md: no values block to render"
fi
if "$py" $ci/check_render.py docvalues docs/operators/migrating-dns-scripts.md "$work/dns-doc-values.yaml" >/dev/null; then
    render_and_check migrating-dns-scripts-doc "$work/dns-doc-values.yaml"
else
    bad "migrating-dns-scripts.md: no values block to render"
fi

echo "==> NOTES.txt warnings"
# Greps the NOTES of an install dry run. $1 = what, $2 = expected text, $3.. = helm args.
notes_warn() {
    local what=$1 expect=$2
    shift 2
    local out
    out=$(helm install --dry-run=client "$release" $chart -n "$namespace" "$@" 2>&1)
    if grep -qF -- "$expect" <<<"$out"; then
        ok "NOTES: $what"
    else
        bad "NOTES: $what (no '$expect')"
        printf '%s\n' "$out" | sed -n '/^NOTES:/,$p' | tail -n 15 | sed 's/^/        /'
    fi
}
notes_warn "back up the generated encryption key" "BACK IT UP"
notes_warn "an Ingress without TLS" "The Ingress has no tls section" --set ingress.enabled=true
notes_warn "insecure skip verify" "INSECURE_SKIP_VERIFY is on" \
    --set 'agent.env[0].name=CERTCTL_SERVER_TLS_INSECURE_SKIP_VERIFY' --set-string 'agent.env[0].value=true'
notes_warn "one replica with an external database" "One server replica with an external database" \
    --set postgresql.enabled=false --set externalDatabase.url=postgres://u:p@db.example/certctl
notes_warn "no backups of the bundled PostgreSQL" "backup.enabled is false"
notes_warn "generated certificate's expiry" "It expires"

echo "==> invalid values are refused with a clear message"
for values in "$ci"/invalid/*.yaml; do
    name=$(basename "$values" .yaml)
    expect=$(sed -n 's/^# expect: //p' "$values" | head -n 1)
    args=$(sed -n 's/^# args: //p' "$values" | head -n 1)
    if [ -z "$expect" ]; then
        bad "invalid/$name: no '# expect:' line"
        continue
    fi
    # shellcheck disable=SC2086
    if out=$(helm template "$release" $chart -n "$namespace" -f "$values" $args 2>&1); then
        bad "invalid/$name: rendered, expected a failure with: $expect"
    elif grep -qF -- "$expect" <<<"$out"; then
        ok "invalid/$name: $expect"
    else
        bad "invalid/$name: failed, but without: $expect"
        printf '%s\n' "$out" | tail -n 5 | sed 's/^/        /'
    fi
done

echo "==> alert rules (promtool)"
rules_dir="$work/rules"
mkdir -p "$rules_dir"
if helm template "$release" $chart -n "$namespace" -f $ci/prometheus-rules-values.yaml >"$rules_dir/render.yaml" &&
    "$py" $ci/check_render.py rules "$rules_dir/render.yaml" "$rules_dir/rules.yaml"; then
    cp $ci/alerts-test.yaml "$rules_dir/"
    check "promtool check rules" promtool check rules "$rules_dir/rules.yaml"
    check "promtool test rules ci/alerts-test.yaml (each alert fires and stays quiet)" \
        sh -c "cd '$rules_dir' && promtool test rules alerts-test.yaml"
    check "the job failure alert is a ratio (no clamp_min)" sh -c "! grep -q clamp_min '$rules_dir/rules.yaml'"
else
    bad "extracting the PrometheusRule"
fi

echo "==> backup round trip against PostgreSQL"
pg_admin_url=${CERTCTL_TEST_POSTGRES_URL:-}
backup_round_trip() {
    local server_bin=${CERTCTL_SERVER_BIN:-}
    if [ -z "$server_bin" ] || [ ! -x "$server_bin" ]; then
        bad "CERTCTL_SERVER_BIN='$server_bin' is not an executable certctl-server (the schema comes from its --migrate-only)"
        return
    fi
    if ! command -v pg_dump >/dev/null || ! command -v pg_restore >/dev/null; then
        bad "pg_dump/pg_restore missing (Debian postgresql-client)"
        return
    fi
    local base=${pg_admin_url%%\?*}
    base=${base%/*}
    local src="certctl_chk_src_$$" dst="certctl_chk_dst_$$"
    local src_url="$base/$src" dst_url="$base/$dst"
    pg_dbs+=("$src" "$dst")
    check "create database $src" psql -q -v ON_ERROR_STOP=1 "$pg_admin_url" -c "CREATE DATABASE \"$src\""
    # Exactly as the hook Job runs it: nothing in the environment but the database URL.
    check "certctl-server --migrate-only with only CERTCTL_DATABASE_URL (env -i)" \
        env -i CERTCTL_DATABASE_URL="$src_url" "$server_bin" --migrate-only
    check "--migrate-only again is a no-op" env -i CERTCTL_DATABASE_URL="$src_url" "$server_bin" --migrate-only
    check "insert rows into every table" psql -q -v ON_ERROR_STOP=1 "$src_url" -f - <<'SQL'
INSERT INTO plugin_instances (id, kind, name, plugin, config, secrets, created_at, updated_at) VALUES
  ('0190a000-0000-7000-8000-000000000001', 'issuer', 'internal', 'local-ca', '{"ca_common_name":"Test CA"}', NULL, 1700000000, 1700000000),
  ('0190a000-0000-7000-8000-000000000002', 'notifier', 'ops', 'webhook', '{"url":"https://hooks.example.com"}', '\x0102'::bytea, 1700000000, 1700000100),
  ('0190a000-0000-7000-8000-000000000003', 'dns-solver', 'cf', 'cloudflare', '{"api_token":"file:/etc/certctl/secrets/cf/token"}', NULL, 1700000000, 1700000000);
INSERT INTO agents (id, name, hostname, created_at, last_heartbeat, ips) VALUES
  ('0190a000-0000-7000-8000-0000000000a1', 'node-1', 'node-1', 1700000000, 1700000500, '["10.0.0.1"]'),
  ('0190a000-0000-7000-8000-0000000000a2', 'node-2', 'node-2', 1700000000, NULL, NULL);
INSERT INTO certificates (id, name, common_name, sans, key_type, key_generation, issuer_id, state, renewal, labels,
                          not_after, created_at, updated_at, agent_id, renew_at) VALUES
  ('0190a000-0000-7000-8000-0000000000c1', 'web', 'www.example.com', '["www.example.com"]', 'ecdsa-p256', 'server',
   '0190a000-0000-7000-8000-000000000001', 'issued', '{"auto":true}', '{"team":"web"}', 1800000000, 1700000000, 1700000000, NULL, 1790000000),
  ('0190a000-0000-7000-8000-0000000000c2', 'api', 'api.example.com', '["api.example.com"]', 'ecdsa-p256', 'agent',
   '0190a000-0000-7000-8000-000000000001', 'awaiting_csr', '{"auto":true}', '{}', NULL, 1700000000, 1700000000,
   '0190a000-0000-7000-8000-0000000000a1', NULL),
  ('0190a000-0000-7000-8000-0000000000c3', 'mail', 'mail.example.com', '[]', 'rsa-2048', 'server', NULL, 'declared', '{}', '{}',
   NULL, 1700000000, 1700000000, NULL, NULL);
INSERT INTO certificate_versions (id, certificate_id, serial, fingerprint_sha256, not_before, not_after, chain_pem, created_at, issuer_id) VALUES
  ('0190a000-0000-7000-8000-0000000000d1', '0190a000-0000-7000-8000-0000000000c1', '01AB', repeat('ab', 32), 1700000000, 1800000000,
   '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n', 1700000000, '0190a000-0000-7000-8000-000000000001');
INSERT INTO jobs (id, kind, state, certificate_id, payload, attempts, max_attempts, run_after, created_at, updated_at) VALUES
  ('0190a000-0000-7000-8000-0000000000e1', 'issuance', 'completed', '0190a000-0000-7000-8000-0000000000c1', '{}', 1, 5, 1700000000, 1700000000, 1700000001),
  ('0190a000-0000-7000-8000-0000000000e2', 'issuance', 'awaiting_csr', '0190a000-0000-7000-8000-0000000000c2', '{}', 0, 5, 1700000000, 1700000000, 1700000000),
  ('0190a000-0000-7000-8000-0000000000e3', 'notification', 'failed', NULL, '{"event":"test"}', 5, 5, 1700000000, 1700000000, 1700000050);
INSERT INTO api_keys (id, name, key_hash, role, created_at) VALUES
  ('0190a000-0000-7000-8000-0000000000f1', 'admin', repeat('0', 64), 'admin', 1700000000),
  ('0190a000-0000-7000-8000-0000000000f2', 'metrics', repeat('1', 64), 'metrics', 1700000000);
INSERT INTO audit_events (at, actor, action, target_type, target_id, detail) VALUES
  (1700000000, 'system', 'api_key.bootstrap', 'api_key', '', '{}'),
  (1700000001, 'admin', 'issuer.create', 'issuer', '0190a000-0000-7000-8000-000000000001', '{}'),
  (1700000002, 'admin', 'certificate.declare', 'certificate', '0190a000-0000-7000-8000-0000000000c1', '{"name":"web"}');
INSERT INTO keys (id, owner, algorithm, public_key, private_key, created_at) VALUES
  ('0190a000-0000-7000-8000-0000000000b1', 'certificate:0190a000-0000-7000-8000-0000000000c1', 'ecdsa-p256', '\x04aa'::bytea, '\xdeadbeef'::bytea, 1700000000);
INSERT INTO plugin_kv (instance_id, key, value, updated_at) VALUES
  ('0190a000-0000-7000-8000-000000000001', 'serial', '\x0001'::bytea, 1700000000);
INSERT INTO notification_routes (id, name, notifier_id, events, min_severity, created_at, updated_at) VALUES
  ('0190a000-0000-7000-8000-000000000091', 'all', '0190a000-0000-7000-8000-000000000002', '["*"]', 'info', 1700000000, 1700000000);
INSERT INTO crls (issuer_id, number, this_update, next_update, der) VALUES
  ('0190a000-0000-7000-8000-000000000001', 1, 1700000000, 1700086400, '\x3082'::bytea);
INSERT INTO challenges (instance_id, kind, identifier, zone, fqdn, value, solver_id, state, created_at, updated_at) VALUES
  ('0190a000-0000-7000-8000-000000000001', 'dns-01', 'www.example.com', 'example.com', '_acme-challenge.www.example.com',
   'abc', '0190a000-0000-7000-8000-000000000003', 'cleaned', 1700000000, 1700000010);
INSERT INTO discoveries (id, agent_id, path, index_in_file, fingerprint_sha256, serial, subject, issuer, sans, not_before,
                         not_after, is_ca, state, first_seen, last_seen) VALUES
  ('0190a000-0000-7000-8000-000000000071', '0190a000-0000-7000-8000-0000000000a1', '/host/etc/nginx/tls/www.pem', 0,
   repeat('cd', 32), '02', 'CN=www.example.com', 'CN=Old CA', '["www.example.com"]', 1600000000, 1700000000, 0, 'new', 1700000000, 1700000000);
SQL

    local dir="$work/backups"
    mkdir -p "$dir"
    # The exact file the CronJob runs, with the same kind of environment (libpq variables).
    # TMPDIR points nowhere: the temp file must live in BACKUP_DIR itself (rename, not a copy
    # across filesystems).
    local host port
    host=$("$py" -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).hostname or "127.0.0.1")' "$pg_admin_url")
    port=$("$py" -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).port or 5432)' "$pg_admin_url")
    local user
    user=$("$py" -c 'import sys,urllib.parse as u; print(u.urlsplit(sys.argv[1]).username or "postgres")' "$pg_admin_url")
    run_backup() {
        env -i PATH="$PATH" TMPDIR=/nonexistent PGHOST="$host" PGPORT="$port" PGUSER="$user" PGDATABASE="$1" \
            BACKUP_DIR="$dir" BACKUP_RETENTION=2 sh $chart/files/backup.sh dump
    }
    local before first second third
    before=$(date -u +%s)
    first=$(run_backup "$src" 2>"$work/backup.err") || { bad "backup.sh dump"; sed 's/^/        /' "$work/backup.err"; return; }
    ok "backup.sh dump (pvc sink) -> ${first#"$dir"/}"
    local fname=${first##*/}
    if [[ $fname =~ ^certctl-([0-9]{8})T([0-9]{2})([0-9]{2})([0-9]{2})Z\.dump$ ]]; then
        local stamp
        stamp=$(date -u -d "${BASH_REMATCH[1]} ${BASH_REMATCH[2]}:${BASH_REMATCH[3]}:${BASH_REMATCH[4]}" +%s)
        if [ $((stamp - before)) -ge -1 ] && [ $((stamp - before)) -le 60 ]; then
            ok "name certctl-YYYYMMDDTHHMMSSZ.dump in UTC ($fname)"
        else
            bad "name $fname is not the current UTC time"
        fi
    else
        bad "name $fname is not certctl-YYYYMMDDTHHMMSSZ.dump"
    fi
    check "only the dump is left in BACKUP_DIR (no temp file)" \
        sh -c "[ \"\$(ls -A '$dir')\" = '$fname' ]"
    check "pg_restore --list reads the dump" pg_restore --list "$first"
    # A failing dump leaves nothing behind.
    if run_backup "certctl_chk_missing_$$" >/dev/null 2>"$work/backup-fail.err"; then
        bad "backup.sh of a missing database succeeded"
    else
        check "a failed dump leaves no file, final or temporary" sh -c "[ \"\$(ls -A '$dir')\" = '$fname' ]"
    fi
    # Retention 2: a third dump removes the first.
    sleep 1
    second=$(run_backup "$src" 2>>"$work/backup.err") || bad "second backup.sh dump"
    sleep 1
    third=$(run_backup "$src" 2>>"$work/backup.err") || bad "third backup.sh dump"
    check "BACKUP_RETENTION=2 keeps the two newest dumps" \
        sh -c "[ \"\$(ls -A '$dir' | tr '\n' ' ')\" = '${second##*/} ${third##*/} ' ]"

    # The S3 sink's upload step and its retention, with a stand-in for the aws CLI that keeps
    # the "bucket" in a directory and records its arguments (no S3 here; the real CLI is the
    # backup.s3.image's).
    local fakebin="$work/fakebin" s3root="$work/s3"
    mkdir -p "$fakebin" "$s3root/certctl-backups/prod"
    cat >"$fakebin/aws" <<'AWS'
#!/bin/sh
echo "$*" >>"$FAKE_S3_ROOT/calls"
[ "$1" = --endpoint-url ] && shift 2
[ "$1" = s3 ] || exit 2
shift
cmd=$1
shift
[ "$1" = --only-show-errors ] && shift
case $cmd in
    cp) dst=${2#s3://}; mkdir -p "$FAKE_S3_ROOT/$(dirname "$dst")" && cp "$1" "$FAKE_S3_ROOT/$dst" ;;
    ls) p=${1#s3://}; for f in "$FAKE_S3_ROOT/${p%/*}"/*; do [ -f "$f" ] && echo "2026-01-01 00:00:00 $(wc -c <"$f") ${f##*/}"; done ;;
    rm) rm "$FAKE_S3_ROOT/${1#s3://}" ;;
    *) exit 2 ;;
esac
AWS
    chmod +x "$fakebin/aws"
    local old
    for old in certctl-20200101T000000Z.dump certctl-20200102T000000Z.dump other-file.txt; do
        echo old >"$s3root/certctl-backups/prod/$old"
    done
    if env -i PATH="$fakebin:$PATH" FAKE_S3_ROOT="$s3root" BACKUP_DIR="$dir" BACKUP_RETENTION=2 \
        BACKUP_S3_BUCKET=certctl-backups BACKUP_S3_PREFIX=prod/ BACKUP_S3_ENDPOINT=https://minio.example:9000 \
        sh $chart/files/backup.sh upload >"$work/upload.out" 2>&1; then
        check "backup.sh upload: the dumps uploaded, the two newest kept, other objects left alone" \
            sh -c "[ \"\$(ls '$s3root/certctl-backups/prod' | tr '\n' ' ')\" = '${second##*/} ${third##*/} other-file.txt ' ]"
        check "backup.sh upload: every aws call goes to BACKUP_S3_ENDPOINT" \
            sh -c "! grep -v '^--endpoint-url https://minio.example:9000 s3 ' '$s3root/calls'"
    else
        bad "backup.sh upload"
        sed 's/^/        /' "$work/upload.out"
    fi

    check "create database $dst" psql -q -v ON_ERROR_STOP=1 "$pg_admin_url" -c "CREATE DATABASE \"$dst\""
    check "pg_restore --no-owner --no-acl --exit-on-error into $dst" \
        pg_restore --no-owner --no-acl --exit-on-error --dbname="$dst_url" "$third"
    # Row count and content digest of every table, in both databases.
    local digest_sql="
SELECT format('SELECT %L || '' '' || count(*) || '' '' || coalesce(md5(string_agg(t::text, ''|'' ORDER BY t::text)), ''-'') FROM %I.%I t;',
              table_name, table_schema, table_name)
FROM information_schema.tables WHERE table_schema = 'public' AND table_type = 'BASE TABLE' ORDER BY table_name"
    table_digests() {
        psql -At -v ON_ERROR_STOP=1 "$1" -c "$digest_sql" | psql -At -v ON_ERROR_STOP=1 "$1"
    }
    local a b
    a=$(table_digests "$src_url") || { bad "reading $src"; return; }
    b=$(table_digests "$dst_url") || { bad "reading $dst"; return; }
    local tables empty
    tables=$(printf '%s\n' "$a" | grep -c .)
    empty=$(printf '%s\n' "$a" | awk '$2 == 0 { print $1 }' | tr '\n' ' ')
    if [ "$a" = "$b" ] && [ "$tables" -ge 10 ]; then
        ok "restored database equals the original: $tables tables, same row counts and contents"
    else
        bad "restored database differs"
        diff <(printf '%s\n' "$a") <(printf '%s\n' "$b") | sed 's/^/        /'
    fi
    [ -z "$empty" ] || echo "        (tables without rows in this test: $empty)"
    # The dump carries the migration bookkeeping: migrating the restored database changes nothing.
    check "--migrate-only on the restored database" env -i CERTCTL_DATABASE_URL="$dst_url" "$server_bin" --migrate-only
    b=$(table_digests "$dst_url") || { bad "reading $dst"; return; }
    if [ "$a" = "$b" ]; then
        ok "the restored schema is current (migrating it changed nothing)"
    else
        bad "migrating the restored database changed it"
    fi
}
# The real binaries with exactly the environment and files the chart gives their containers
# (rendered with --is-upgrade: the hook design, CERTCTL_MIGRATIONS_VIA_HOOK=true).
binaries_smoke() {
    local server_bin=${CERTCTL_SERVER_BIN:-}
    [ -x "$server_bin" ] || { bad "CERTCTL_SERVER_BIN is not set to certctl-server"; return; }
    local agent_bin
    agent_bin="$(dirname "$server_bin")/certctl-agent"
    local port http01 smoke="$work/smoke" db="certctl_chk_smoke_$$"
    port=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    http01=$("$py" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
    local base=${pg_admin_url%%\?*}
    base=${base%/*}
    local url="$base/$db"
    pg_dbs+=("$db")
    mkdir -p "$smoke"
    # A declared instance of a built-in plugin, when the built plugins are at hand.
    local plugin_dir=${CERTCTL_TEST_PLUGIN_DIR:-} instances=()
    if [ -n "$plugin_dir" ] && [ -f "$plugin_dir/local-ca.wasm" ]; then
        instances=(--set-json 'plugins.instances.issuers=[{"name":"internal","plugin":"local-ca","config":{"ca_common_name":"chart smoke CA"}}]')
    fi
    helm template "$release" $chart -n "$namespace" -f $ci/defaults-values.yaml --set server.port="$port" \
        --set server.acmeHttp01Port="$http01" "${instances[@]}" --is-upgrade >"$smoke/render.yaml" ||
        { bad "smoke: render"; return; }
    psql -q "$pg_admin_url" -c "CREATE DATABASE \"$db\"" || { bad "smoke: create database"; return; }
    # The chart's environment; only the database URL (a Service name there) and the image's
    # plugin directory (an empty stand-in: loading plugins is the Rust suite's business) differ.
    local server_env=() migrate_env=() agent_env=() line
    while IFS= read -r line; do
        case $line in CERTCTL_DATABASE_URL=*) line="CERTCTL_DATABASE_URL=$url" ;; esac
        server_env+=("$line")
    done < <("$py" $ci/check_render.py materialize "$smoke/render.yaml" server "$smoke/server")
    # The image's built-in plugin directory: empty, or just local-ca for the instances check
    # (loading plugins is otherwise the Rust suite's business).
    server_env+=("CERTCTL_PLUGIN_DIRS=$smoke/server/usr/lib/certctl/plugins")
    if [ ${#instances[@]} -gt 0 ]; then
        cp "$plugin_dir"/local-ca.wasm "$plugin_dir"/local-ca.toml "$smoke/server/usr/lib/certctl/plugins/"
    fi
    while IFS= read -r line; do
        case $line in CERTCTL_DATABASE_URL=*) line="CERTCTL_DATABASE_URL=$url" ;; esac
        migrate_env+=("$line")
    done < <("$py" $ci/check_render.py materialize "$smoke/render.yaml" migrate "$smoke/migrate")
    while IFS= read -r line; do
        # The certificate also names localhost (for port-forwards); the Service name does not
        # resolve here.
        case $line in CERTCTL_SERVER_URL=*) line="CERTCTL_SERVER_URL=https://localhost:$port" ;; esac
        agent_env+=("$line")
    done < <("$py" $ci/check_render.py materialize "$smoke/render.yaml" agent "$smoke/agent")

    # Before the hook ran, a server with CERTCTL_MIGRATIONS_VIA_HOOK=true refuses to start.
    if timeout 30 env -i "${server_env[@]}" "$server_bin" >"$smoke/early.log" 2>&1; then
        bad "smoke: the server started on an empty schema despite CERTCTL_MIGRATIONS_VIA_HOOK=true"
    else
        check "smoke: the server refuses a schema that is behind (points at --migrate-only)" \
            grep -q -- "--migrate-only" "$smoke/early.log"
    fi
    check "smoke: the hook Job's container migrates (--migrate-only, its env only)" \
        env -i "${migrate_env[@]}" "$server_bin" --migrate-only
    env -i "${server_env[@]}" "$server_bin" >"$smoke/server.log" 2>&1 &
    local server_pid=$!
    local ca="$smoke/server/etc/certctl/tls/ca.crt"
    "$py" -c 'import sys,yaml,base64
for d in yaml.safe_load_all(open(sys.argv[1])):
    if d and d["kind"] == "Secret" and d["metadata"]["name"] == "certctl-tls":
        open(sys.argv[2], "wb").write(base64.b64decode(d["data"]["ca.crt"]))' "$smoke/render.yaml" "$ca"
    local svc="$release.$namespace.svc"
    local curl_=(curl -s --cacert "$ca" --resolve "$svc:$port:127.0.0.1" --max-time 5)
    local health=""
    for _ in $(seq 120); do
        health=$("${curl_[@]}" "https://$svc:$port/health" 2>/dev/null) && break
        kill -0 "$server_pid" 2>/dev/null || break
        sleep 0.25
    done
    if [ "$health" = '{"status":"healthy"}' ]; then
        ok "smoke: /health over HTTPS with the generated certificate, verified by name ($svc) against the chart's CA"
    else
        bad "smoke: the server did not become healthy"
        tail -n 15 "$smoke/server.log" | sed 's/^/        /'
        kill "$server_pid" 2>/dev/null
        return
    fi
    local env_line admin="" metrics=""
    for env_line in "${server_env[@]}"; do
        case $env_line in CERTCTL_API_KEYS_NAMED=*)
            # CERTCTL_API_KEYS_NAMED=admin:KEY:admin,metrics:KEY:metrics
            admin=${env_line#CERTCTL_API_KEYS_NAMED=admin:}
            admin=${admin%%:*}
            metrics=${env_line##*,metrics:}
            metrics=${metrics%:metrics} ;;
        esac
    done
    check "smoke: /ready is 200" "${curl_[@]}" -f "https://$svc:$port/ready"
    check "smoke: the admin key lists certificates" "${curl_[@]}" -f -H "Authorization: Bearer $admin" \
        "https://$svc:$port/api/v1/certificates"
    check "smoke: the ServiceMonitor's request (metrics key as bearer) gets the metrics" \
        sh -c "$(printf '%q ' "${curl_[@]}") -f -H 'Authorization: Bearer $metrics' https://$svc:$port/api/v1/metrics/prometheus | grep -q '^certctl_agent_total'"
    check "smoke: metrics without a key are refused (401)" \
        sh -c "[ \"\$($(printf '%q ' "${curl_[@]}") -o /dev/null -w '%{http_code}' https://$svc:$port/api/v1/metrics/prometheus)\" = 401 ]"
    if [ ${#instances[@]} -gt 0 ]; then
        local issuers=""
        issuers=$("${curl_[@]}" -H "Authorization: Bearer $admin" "https://$svc:$port/api/v1/issuers" 2>/dev/null)
        if grep -q '"name":"internal"' <<<"$issuers"; then
            ok "smoke: plugins.instances applied at start-up (issuer internal, local-ca)"
        else
            bad "smoke: the declared issuer is missing: $issuers"
        fi
        # A ConfigMap update, as the kubelet does it: a new directory, then "..data" swapped.
        local cfg="$smoke/server/etc/certctl/config" next
        next="$cfg/..2026_01_01_00_00_01.000000002"
        mkdir "$next"
        cp "$cfg"/..data/* "$next/"
        "$py" -c 'import json,sys
p = sys.argv[1]; d = json.load(open(p))
d["issuers"].append({"name": "internal-2", "plugin": "local-ca", "config": {}})
json.dump(d, open(p, "w"))' "$next/instances.json"
        ln -s "$(basename "$next")" "$cfg/..data.new" && mv -T "$cfg/..data.new" "$cfg/..data"
        for _ in $(seq 60); do
            issuers=$("${curl_[@]}" -H "Authorization: Bearer $admin" "https://$svc:$port/api/v1/issuers" 2>/dev/null)
            grep -q '"name":"internal-2"' <<<"$issuers" && break
            sleep 0.25
        done
        if grep -q '"name":"internal-2"' <<<"$issuers"; then
            ok "smoke: a ConfigMap update of instances.json (..data swap) applies without a restart"
        else
            bad "smoke: the updated instances file was not applied within 15 s"
        fi
    else
        echo "        (instances not checked against the server: CERTCTL_TEST_PLUGIN_DIR has no local-ca.wasm)"
    fi
    check "smoke: the http-01 listener of server.acmeHttp01Port answers plain HTTP (404 for an unknown token)" \
        sh -c "[ \"\$(curl -s -o /dev/null -w '%{http_code}' http://127.0.0.1:$http01/.well-known/acme-challenge/unknown-token)\" = 404 ]"
    if [ -x "$agent_bin" ]; then
        env -i "${agent_env[@]}" "$agent_bin" >"$smoke/agent.log" 2>&1 &
        local agent_pid=$! agents=""
        for _ in $(seq 80); do
            agents=$("${curl_[@]}" -H "Authorization: Bearer $admin" "https://$svc:$port/api/v1/agents" 2>/dev/null)
            grep -q '"node-1"' <<<"$agents" && break
            sleep 0.25
        done
        if grep -q '"node-1"' <<<"$agents"; then
            ok "smoke: the DaemonSet agent's env registers it as node-1 with the bootstrap token and the chart's CA"
        else
            bad "smoke: the agent did not register"
            tail -n 10 "$smoke/agent.log" | sed 's/^/        /'
        fi
        kill "$agent_pid" 2>/dev/null
        wait "$agent_pid" 2>/dev/null
    else
        bad "smoke: no certctl-agent next to $server_bin"
    fi
    kill "$server_pid" 2>/dev/null
    wait "$server_pid" 2>/dev/null
    if grep -q "unknown CERTCTL_" "$smoke/server.log" "$smoke/early.log"; then
        bad "smoke: the server warned about unknown CERTCTL_* variables"
        grep "unknown CERTCTL_" "$smoke/server.log" | head -n 3 | sed 's/^/        /'
    else
        ok "smoke: no unknown CERTCTL_* variable warnings"
    fi
}

if [ -z "$pg_admin_url" ]; then
    echo "  ##################################################################################"
    echo "  SKIPPED: CERTCTL_TEST_POSTGRES_URL is not set — the backup round trip and the run of"
    echo "  the binaries with the chart's environment did NOT happen."
    echo "  (scripts/test.sh sets it; or export postgres://postgres@127.0.0.1:PORT/postgres)"
    echo "  ##################################################################################"
else
    backup_round_trip
    echo "==> the binaries with the chart's environment (PostgreSQL, CERTCTL_SERVER_BIN)"
    binaries_smoke
fi

echo "==> done in $(($(date +%s) - start)) s"
echo "chart checks: $passed passed, $failed failed"
[ "$failed" -eq 0 ]
