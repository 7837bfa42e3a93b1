#!/usr/bin/env bash
# Makes the certificate chains the unit tests download from the fake CA (openssl 3):
#   chain-a.pem  leaf + "Fake Intermediate" issued by "Fake Root A"   (the default chain)
#   chain-b.pem  leaf + "Fake Intermediate" issued by "Fake Root B"   (an alternate chain)
# Both intermediates have the same subject and key (a cross-signature). The keys are thrown
# away; the certificates protect nothing. Run it again at any time: the tests read only names.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

key() { openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$tmp/$1.key" 2>/dev/null; }
for k in root-a root-b intermediate leaf; do key "$k"; done

for r in a b; do
    R=$(echo "$r" | tr a-z A-Z)
    openssl req -x509 -new -key "$tmp/root-$r.key" -subj "/CN=Fake Root $R" -days 36500 -sha256 \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
        -out "$tmp/root-$r.pem"
done
openssl req -new -key "$tmp/intermediate.key" -subj "/CN=Fake Intermediate" -out "$tmp/intermediate.csr"
printf 'basicConstraints=critical,CA:TRUE,pathlen:0\nkeyUsage=critical,keyCertSign,cRLSign\n' >"$tmp/ca.ext"
for r in a b; do
    openssl x509 -req -in "$tmp/intermediate.csr" -CA "$tmp/root-$r.pem" -CAkey "$tmp/root-$r.key" \
        -days 36500 -sha256 -extfile "$tmp/ca.ext" -set_serial "0x1$r" -out "$tmp/intermediate-$r.pem" 2>/dev/null
done
openssl req -new -key "$tmp/leaf.key" -subj "/CN=example.com" -out "$tmp/leaf.csr"
printf 'subjectAltName=DNS:example.com,DNS:www.example.com\nextendedKeyUsage=serverAuth\n' >"$tmp/leaf.ext"
openssl x509 -req -in "$tmp/leaf.csr" -CA "$tmp/intermediate-a.pem" -CAkey "$tmp/intermediate.key" \
    -days 36500 -sha256 -extfile "$tmp/leaf.ext" -set_serial 0x2a -out "$tmp/leaf.pem" 2>/dev/null

cat "$tmp/leaf.pem" "$tmp/intermediate-a.pem" >chain-a.pem
cat "$tmp/leaf.pem" "$tmp/intermediate-b.pem" >chain-b.pem
