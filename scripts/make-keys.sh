#!/usr/bin/env bash
# Make credentials for an authenticated deployment (see SECURITY.md), for local use and tests.
#
#   bash scripts/make-keys.sh DIR [NODES]
#
# Writes DIR/node-1 .. DIR/node-NODES (SuperNode private keys: --auth-supernode-private-key)
# with their .pub lines, DIR/keys.csv (the SuperLink's --auth-list-public-keys), and
# DIR/operator.token with its hash in DIR/operators.txt (--operator-token-file on clients,
# --auth-operator-tokens on the SuperLink). Existing files in DIR are kept.
set -euo pipefail

if [[ $# -lt 1 ]]; then
    echo "usage: $0 DIR [NODES]" >&2
    exit 2
fi
dir=$1
nodes=${2:-2}
python=${PYTHON:-$(dirname "$0")/../.venv/bin/python}
[[ -x $python ]] || python=python3
mkdir -p "$dir"

for i in $(seq 1 "$nodes"); do
    [[ -e $dir/node-$i ]] || "$python" -m stamen.auth node-key "$dir/node-$i"
done
cat "$dir"/node-*.pub > "$dir/keys.csv"
if [[ ! -e $dir/operator.token ]]; then
    rm -f "$dir/operators.txt"
    "$python" -m stamen.auth operator-token operator --tokens "$dir/operators.txt" \
        --out "$dir/operator.token"
fi
echo "$dir: keys.csv lists $nodes node key(s); operator.token, operators.txt"
