#!/usr/bin/env bash
# The SuperLink container's first step: make its certificates once, then become COMMAND.
#
#   bash scripts/with-certs.sh PKI_DIR CA_DIR [HOSTNAME...] -- COMMAND [ARG...]
#
# Makes a development CA and a server certificate in PKI_DIR (scripts/make-certs.sh: keys
# mode 600, the directory 700) unless PKI_DIR holds them already, so a restarted SuperLink
# keeps the identity its SuperNodes trust. Publishes the CA certificate as CA_DIR/ca.crt
# (mode 644: what SuperNodes and ServerApps mount, read-only, to verify the SuperLink),
# then execs COMMAND, which so receives the container's signals itself.
#
# compose.yaml runs this instead of a one-shot "certs" service: a container that exits,
# even with 0, ends `docker-compose up --exit-code-from` (Compose v1) before the run starts.
set -euo pipefail

if [[ $# -lt 4 ]]; then
    echo "usage: $0 PKI_DIR CA_DIR [HOSTNAME...] -- COMMAND [ARG...]" >&2
    exit 2
fi
pki=$1
ca_dir=$2
shift 2
hosts=()
while [[ $# -gt 0 && $1 != -- ]]; do
    hosts+=("$1")
    shift
done
if [[ $# -lt 2 ]]; then
    echo "$0: no COMMAND after --" >&2
    exit 2
fi
shift

if [[ -s $pki/ca.crt && -s $pki/server.pem && -s $pki/server.key ]]; then
    echo "keeping the certificates in $pki"
else
    bash "$(dirname "$0")/make-certs.sh" "$pki" "${hosts[@]}"
fi
chmod 700 "$pki"
# Write, then rename: a reader never sees half a certificate.
install -m 644 "$pki/ca.crt" "$ca_dir/.ca.crt.tmp"
mv -f "$ca_dir/.ca.crt.tmp" "$ca_dir/ca.crt"
exec "$@"
