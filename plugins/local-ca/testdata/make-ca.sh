#!/usr/bin/env bash
# Makes the imported-CA fixtures of the unit tests with openssl (3.x): an RSA-2048 root, an
# ECDSA P-256 intermediate signed by it (subject in PrintableString, so that copying the issuer
# name byte for byte is tested), and two certificates that are not usable as a CA. The tests
# read the dates from the certificates, so the fixtures can be remade at any time. They protect
# nothing.
set -euo pipefail
cd "$(dirname "$0")"
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT

openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 -out root-ca.key
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out intermediate-ca.key

cat >"$tmp/root.cnf" <<'CNF'
[req]
distinguished_name = dn
string_mask = utf8only
prompt = no
[dn]
CN = Example Test Root CA
[root]
basicConstraints = critical, CA:TRUE
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
CNF
openssl req -x509 -new -key root-ca.key -config "$tmp/root.cnf" -extensions root -sha256 -days 7300 \
    -set_serial 0x01 -out root-ca.pem

cat >"$tmp/intermediate.cnf" <<'CNF'
[req]
distinguished_name = dn
string_mask = default
prompt = no
[dn]
C = DE
O = Example Test
CN = Example Test Issuing CA 1
[intermediate]
basicConstraints = critical, CA:TRUE, pathlen:0
keyUsage = critical, keyCertSign, cRLSign
subjectKeyIdentifier = hash
authorityKeyIdentifier = keyid
[not_a_ca]
basicConstraints = critical, CA:FALSE
keyUsage = critical, digitalSignature
[no_keycertsign]
basicConstraints = critical, CA:TRUE
keyUsage = critical, digitalSignature, cRLSign
CNF
openssl req -new -key intermediate-ca.key -config "$tmp/intermediate.cnf" -out "$tmp/intermediate.csr"
openssl x509 -req -in "$tmp/intermediate.csr" -CA root-ca.pem -CAkey root-ca.key -set_serial 0x02 \
    -days 3650 -sha256 -extfile "$tmp/intermediate.cnf" -extensions intermediate -out intermediate-ca.pem
openssl req -x509 -new -key intermediate-ca.key -config "$tmp/intermediate.cnf" -extensions not_a_ca \
    -days 3650 -set_serial 0x03 -out not-a-ca.pem
openssl req -x509 -new -key intermediate-ca.key -config "$tmp/intermediate.cnf" -extensions no_keycertsign \
    -days 3650 -set_serial 0x04 -out no-keycertsign.pem
