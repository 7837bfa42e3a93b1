#!/usr/bin/env bash
# Builds every plugin crate under plugins/ (shipped) and plugins/testing/ (test-only) for
# wasm32-wasip2 with the `plugin` profile, and lays out what a certctl host loads:
#
#   ${CARGO_TARGET_DIR:-target}/plugins/NAME.wasm + NAME.toml           shipped plugins
#   ${CARGO_TARGET_DIR:-target}/plugins-testing/NAME.wasm + NAME.toml   test-only components
#   ${CARGO_TARGET_DIR:-target}/plugins/default-grants.toml              plugins/default-grants.toml
#
# NAME.toml is the crate's manifest.toml with `sha256 = "<hex of NAME.wasm>"` added.
# Usage: scripts/build-plugins.sh [CRATE...]   (default: every plugin crate)
#
# One cargo invocation per crate, on purpose: certctl-sdk has one feature per plugin kind, and
# Cargo unifies features across the packages of one invocation, which would give a notifier the
# DNS solver's exports too (and then it does not link).
set -euo pipefail
cd "$(dirname "$0")/.."
root=$PWD

target_dir=${CARGO_TARGET_DIR:-target}
case "$target_dir" in /*) ;; *) target_dir="$root/$target_dir" ;; esac
export CARGO_TARGET_DIR="$target_dir"

rustup target add wasm32-wasip2 >/dev/null 2>&1 || rustup target add wasm32-wasip2

die() {
    echo "build-plugins: $*" >&2
    exit 1
}

# The first `key = "value"` of a TOML file.
toml_string() {
    sed -n "s/^$2[[:space:]]*=[[:space:]]*\"\(.*\)\"[[:space:]]*\(#.*\)\{0,1\}$/\1/p" "$1" | head -n 1
}

# Crate directories: plugins/*/ and plugins/testing/*/ with a Cargo.toml.
crates=()
for manifest in plugins/*/Cargo.toml plugins/testing/*/Cargo.toml; do
    [ -f "$manifest" ] && crates+=("$(dirname "$manifest")")
done
[ ${#crates[@]} -gt 0 ] || die "no plugin crates under plugins/"

wanted=("$@")
built=0
for dir in "${crates[@]}"; do
    crate=$(toml_string "$dir/Cargo.toml" name)
    [ -n "$crate" ] || die "$dir/Cargo.toml: no package name"
    if [ ${#wanted[@]} -gt 0 ] && [[ ! " ${wanted[*]} " =~ " $crate " ]]; then
        continue
    fi
    plugin_manifest="$dir/manifest.toml"
    [ -f "$plugin_manifest" ] || die "$dir has no manifest.toml"
    name=$(toml_string "$plugin_manifest" name)
    [ -n "$name" ] || die "$plugin_manifest: no name"
    grep -q '^sha256[[:space:]]*=' "$plugin_manifest" && die "$plugin_manifest: sha256 is added by this script; remove it"

    case "$dir" in
        plugins/testing/*) out="$target_dir/plugins-testing" ;;
        *) out="$target_dir/plugins" ;;
    esac
    mkdir -p "$out"

    echo "==> $crate" >&2
    cargo build -p "$crate" --target wasm32-wasip2 --profile plugin || die "cargo build of $crate failed"
    artifact="$target_dir/wasm32-wasip2/plugin/${crate//-/_}.wasm"
    [ -f "$artifact" ] || die "$crate built, but $artifact is missing (is it a cdylib?)"

    digest=$(sha256sum "$artifact" | cut -d' ' -f1)
    # Top-level keys must come before the first [table], so sha256 goes right above it.
    awk -v line="sha256 = \"$digest\"" '
        !done && /^\[/ { print line; print ""; done = 1 }
        { print }
        END { if (!done) print line }
    ' "$plugin_manifest" >"$out/$name.toml.tmp"
    cp "$artifact" "$out/$name.wasm.tmp"
    mv "$out/$name.wasm.tmp" "$out/$name.wasm"
    mv "$out/$name.toml.tmp" "$out/$name.toml"
    built=$((built + 1))
    printf '%-40s %8d bytes  sha256 %s\n' "${out#"$root"/}/$name.wasm" "$(wc -c <"$out/$name.wasm")" "$digest"
done

# Default grants of the shipped plugins travel with them.
mkdir -p "$target_dir/plugins"
cp plugins/default-grants.toml "$target_dir/plugins/default-grants.toml"

if [ ${#wanted[@]} -gt 0 ] && [ "$built" -ne ${#wanted[@]} ]; then
    die "asked for ${wanted[*]}, built $built; plugin crates are: $(for d in "${crates[@]}"; do toml_string "$d/Cargo.toml" name; done | tr '\n' ' ')"
fi
echo "build-plugins: $built component(s) built" >&2
