#!/usr/bin/env bash
# Makes a throwaway CA and one certificate signed by it, valid for 127.0.0.1 and localhost as
# both server and client, for trying TLS (`cluster.tls_*`) on one box and for the tests:
#   bash scripts/dev-certs.sh DIR    -> DIR/ca.pem, DIR/node.pem, DIR/node.key
# A real cluster needs a certificate per host naming that host (its IP or DNS name).
set -euo pipefail
dir=${1:?usage: dev-certs.sh DIR}
mkdir -p "$dir"
cd "$dir"
ec="-newkey ec -pkeyopt ec_paramgen_curve:prime256v1 -nodes"
# shellcheck disable=SC2086
openssl req -x509 $ec -keyout ca.key -out ca.pem -days 30 -subj /CN=starling-dev-ca 2>/dev/null
# shellcheck disable=SC2086
openssl req $ec -keyout node.key -out node.csr -subj /CN=starling-node 2>/dev/null
printf '%s\n' 'subjectAltName=IP:127.0.0.1,DNS:localhost' 'basicConstraints=CA:FALSE' \
  'keyUsage=digitalSignature' 'extendedKeyUsage=serverAuth,clientAuth' > node.ext
openssl x509 -req -in node.csr -CA ca.pem -CAkey ca.key -CAcreateserial -out node.pem -days 30 \
  -extfile node.ext 2>/dev/null
rm -f node.csr node.ext ca.srl
