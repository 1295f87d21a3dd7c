#!/usr/bin/env bash
# Make a throwaway CA and a SuperLink certificate signed by it, for local TLS and tests.
#
#   bash scripts/make-certs.sh DIR [HOSTNAME...]
#
# Writes DIR/ca.crt (give it to clients: --root-certificates DIR/ca.crt), DIR/ca.key,
# DIR/server.pem and DIR/server.key (the SuperLink: --certificates DIR/ca.crt
# DIR/server.pem DIR/server.key). The server certificate is valid for localhost,
# 127.0.0.1, ::1, "superlink" (the compose service) and any HOSTNAME given.
# Modes: the keys 600 (never readable by others, not even while being written: umask
# 077), the certificates 644. Not for production: the CA key sits next to the
# certificates, unencrypted.
set -euo pipefail
umask 077
trap 'echo "$0: openssl failed (rerun without 2>/dev/null to see why)" >&2' ERR

if [[ $# -lt 1 ]]; then
    echo "usage: $0 DIR [HOSTNAME...]" >&2
    exit 2
fi
dir=$1
shift
mkdir -p "$dir"

san="DNS:localhost,IP:127.0.0.1,IP:::1,DNS:superlink"
for name in "$@"; do
    if [[ $name =~ ^[0-9.]+$ || $name == *:* ]]; then
        san="$san,IP:$name"
    else
        san="$san,DNS:$name"
    fi
done

openssl req -x509 -newkey rsa:2048 -nodes -days 365 -sha256 \
    -keyout "$dir/ca.key" -out "$dir/ca.crt" \
    -subj "/CN=Stamen test CA" \
    -addext "basicConstraints=critical,CA:TRUE" \
    -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null

openssl req -newkey rsa:2048 -nodes -sha256 \
    -keyout "$dir/server.key" -out "$dir/server.csr" \
    -subj "/CN=localhost" 2>/dev/null

openssl x509 -req -in "$dir/server.csr" -CA "$dir/ca.crt" -CAkey "$dir/ca.key" \
    -CAcreateserial -out "$dir/server.pem" -days 365 -sha256 \
    -extfile <(printf '%s\n' \
        "subjectAltName=$san" \
        "basicConstraints=CA:FALSE" \
        "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth") 2>/dev/null

rm -f "$dir/server.csr" "$dir/ca.srl"
chmod 600 "$dir/ca.key" "$dir/server.key"
chmod 644 "$dir/ca.crt" "$dir/server.pem"
echo "wrote $dir/ca.crt, $dir/server.pem, $dir/server.key (SAN: $san)"
