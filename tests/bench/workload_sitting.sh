#!/bin/sh
# One sitting of the "cases" workload (issue 18): the peers' harness (Yjs, one document per
# record and one document for all) and then patto's workload-bench at the same N/U/C, which
# prints patto's row, the peers' rows and the patto/peer ratios. Synthetic data only.
#
#   tests/bench/workload_sitting.sh PEERS_DIR [N [U [C]]]
#
# PEERS_DIR is the peers' harness (package.json, bench.mjs); it is copied to a temporary
# directory and `npm ci` run there (Node.js 20 and the npm registry needed). Run from the
# source root after `cmake --build build --target workload-bench`. WORKLOAD_BENCH names another
# workload-bench binary; PEERS_OUT, a directory to keep the peers' results in (to pass them to
# another workload-bench of the same sitting with --peer).
set -eu
peers=${1:?usage: $0 PEERS_DIR [N [U [C]]]}
n=${2:-10000}
u=${3:-50000}
c=${4:-$((u / 10))}
bin=${WORKLOAD_BENCH:-build/tests/bench/workload-bench}
tmp=$(mktemp -d /tmp/workload-peers.XXXXXX)
cp -r "$peers"/. "$tmp"/
chmod -R u+w "$tmp"
(cd "$tmp" && npm ci --no-audit --no-fund >/dev/null)
echo "load before: $(cat /proc/loadavg)"
for p in yjs-doc-per-record yjs-one-doc; do
    (cd "$tmp" && N=$n U=$u C=$c node --expose-gc bench.mjs $p >"$tmp/$p.json" 2>"$tmp/$p.err")
    echo "$p: $(cat "$tmp/$p.json")"
done
echo "load after the peers: $(cat /proc/loadavg)"
"$bin" --records "$n" --updates "$u" --concurrent "$c" \
    --peer "$tmp/yjs-doc-per-record.json" --peer "$tmp/yjs-one-doc.json"
echo "load after patto: $(cat /proc/loadavg)"
if [ -n "${PEERS_OUT:-}" ]; then
    mkdir -p "$PEERS_OUT"
    cp "$tmp"/*.json "$PEERS_OUT"/
fi
rm -rf "$tmp"
