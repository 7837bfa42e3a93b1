# Sourced by scripts/test.sh: installs and starts what the test suite needs.
# Everything listens on loopback only; state lives in a temp dir removed on exit.

need_pkgs=()
pg_bin=""
for d in /usr/lib/postgresql/*/bin; do
    [ -x "$d/initdb" ] && pg_bin="$d"
done
[ -n "$pg_bin" ] || need_pkgs+=(postgresql)
command -v promtool >/dev/null 2>&1 || need_pkgs+=(prometheus)
command -v openssl >/dev/null 2>&1 || need_pkgs+=(openssl)
# The SMTP sink of the e-mail tests (host/tests/fixtures/smtp-sink.py) runs on Debian's python3.
/usr/bin/python3 -c 'import aiosmtpd' >/dev/null 2>&1 || need_pkgs+=(python3-aiosmtpd)
# A real PowerDNS for the dns-01 broker and the powerdns plugin.
command -v pdns_server >/dev/null 2>&1 || need_pkgs+=(pdns-server)
[ -f /usr/share/pdns-backend-sqlite3/schema/schema.sqlite3.sql ] || need_pkgs+=(pdns-backend-sqlite3)
# BIND 9 for the rfc2136 solver (TSIG-signed dynamic updates).
command -v named >/dev/null 2>&1 || need_pkgs+=(bind9)
# Knot DNS, the second RFC 2136 server the rfc2136 solver is tested against.
command -v knotd >/dev/null 2>&1 || need_pkgs+=(knot)
# A real ACME server for the ACME issuer plugin, and lego, the ACME client it is timed beside.
command -v pebble >/dev/null 2>&1 || need_pkgs+=(pebble)
command -v lego >/dev/null 2>&1 || need_pkgs+=(lego)
# nginx, the agent's deployment target (run by the tests on loopback with their own config).
command -v nginx >/dev/null 2>&1 || need_pkgs+=(nginx)
# Headless Chromium and chromedriver for the dashboard tests (W3C WebDriver on loopback).
command -v chromium >/dev/null 2>&1 || need_pkgs+=(chromium)
command -v chromedriver >/dev/null 2>&1 || need_pkgs+=(chromium-driver)
if [ ${#need_pkgs[@]} -gt 0 ]; then
    echo "==> installing ${need_pkgs[*]} (Debian packages)"
    if [ "$(id -u)" -ne 0 ]; then
        echo "error: ${need_pkgs[*]} missing and not root; install them with apt-get" >&2
        exit 1
    fi
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${need_pkgs[@]}" >/dev/null
    for d in /usr/lib/postgresql/*/bin; do
        [ -x "$d/initdb" ] && pg_bin="$d"
    done
fi

# moto's Route 53 server for the route53 solver (PyPI moto[server]): the python3 on PATH if it
# has it, else a venv of its own kept between runs.
export CERTCTL_TEST_MOTO_PYTHON
if python3 -c 'import moto.server, flask_cors' >/dev/null 2>&1; then
    CERTCTL_TEST_MOTO_PYTHON=$(command -v python3)
else
    moto_venv="$HOME/.cache/certctl/moto-venv"
    if ! "$moto_venv/bin/python" -c 'import moto.server, flask_cors' >/dev/null 2>&1; then
        echo "==> installing moto[server] (PyPI) into $moto_venv"
        /usr/bin/python3 -m venv "$moto_venv" 2>/dev/null || {
            apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
            /usr/bin/python3 -m venv "$moto_venv"
        }
        "$moto_venv/bin/pip" install -q 'moto[server]>=5,<6'
    fi
    CERTCTL_TEST_MOTO_PYTHON="$moto_venv/bin/python"
fi

export CERTCTL_TEST_STATE
CERTCTL_TEST_STATE=$(mktemp -d /tmp/certctl-test.XXXXXX)
chmod 755 "$CERTCTL_TEST_STATE"
pg_dir="$CERTCTL_TEST_STATE/pg"
mkdir -p "$pg_dir"
as_pg=()
if [ "$(id -u)" -eq 0 ]; then
    chown postgres: "$pg_dir"
    as_pg=(runuser -u postgres --)
fi
# A free port: ask the kernel for one.
pg_port=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()')

stop_test_env() {
    "${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -m immediate stop >/dev/null 2>&1 || true
    rm -rf "$CERTCTL_TEST_STATE"
}
trap stop_test_env EXIT

echo "==> starting PostgreSQL on 127.0.0.1:$pg_port"
"${as_pg[@]}" "$pg_bin/initdb" -D "$pg_dir/data" --auth=trust -U postgres >/dev/null
"${as_pg[@]}" "$pg_bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/log" -w start \
    -o "-p $pg_port -c listen_addresses=127.0.0.1 -k $pg_dir -c max_connections=300 -c fsync=off" >/dev/null

export CERTCTL_TEST_POSTGRES_URL="postgres://postgres@127.0.0.1:$pg_port/postgres"
