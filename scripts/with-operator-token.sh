#!/usr/bin/env bash
# The SuperLink container's second step: make an operator token once, then become COMMAND.
#
#   bash scripts/with-operator-token.sh HASH_FILE TOKEN_FILE -- COMMAND [ARG...]
#
# Unless both files exist already, writes a fresh operator token to TOKEN_FILE (mode 600)
# and its SHA-256 to HASH_FILE (the SuperLink's --auth-operator-tokens), so that Control
# and ServerAppIo require it (SECURITY.md). The token is made on the first start and kept
# on its volume: no secret is in the image or the repository. compose.yaml shares the
# token's volume with the ServerApp alone (--operator-token-file); the hash stays beside
# the SuperLink's private keys. Then execs COMMAND, which so receives the signals itself.
set -euo pipefail

if [[ $# -lt 4 || $3 != -- ]]; then
    echo "usage: $0 HASH_FILE TOKEN_FILE -- COMMAND [ARG...]" >&2
    exit 2
fi
hashes=$1
token=$2
shift 3

if [[ -s $hashes && -s $token ]]; then
    echo "keeping the operator token in $token"
else
    rm -f "$hashes"
    python -m stamen.auth operator-token operator --tokens "$hashes" --out "$token"
fi
chmod 600 "$token"
exec "$@"
