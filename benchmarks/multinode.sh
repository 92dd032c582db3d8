#!/usr/bin/env bash
# The multi-node and workers figures of benchmarks/README.md ("Several nodes and workers"):
# the same scenarios, the same corpus, against five deployments started by cluster.py in
# turn, each run beside its own floor.  About 15 minutes on the 2-core machine.
#   bash benchmarks/multinode.sh [MESSAGES]        (default 2000; results in .results/)
set -euo pipefail
cd "$(dirname "$0")/.."
COUNT=${1:-2000}
STAMP=$(date -u +%Y-%m-%d)
OUT=benchmarks/.results
mkdir -p "$OUT"
PY=.venv/bin/python
RUN="--scenarios 1,2,3,4,5,6,8,9 --warmup 10 --iterations 200 --seconds 10 --mix-seconds 8"
RUN="$RUN --clients 1,10,50 --streams 300 --hold-streams 600 --push-rounds 2 --quiet"

bench() {  # name, cluster.py options...
  local name=$1; shift
  $PY benchmarks/cluster.py "$@" -- sh -c \
    "$PY benchmarks/load.py --url {url} --generate $COUNT --json $OUT/$STAMP-$name-load.json >/dev/null \
     && $PY benchmarks/run.py --url {url} --nodes '{nodes}' --server-pid {pid} $RUN \
        --label $name --out $OUT/$STAMP-$name.json"
}

bench sqlite-1 --backend sqlite --nodes 1
bench postgresql-1 --backend postgresql --nodes 1
bench postgresql-3 --backend postgresql --nodes 3
bench sqlite-workers-2 --backend sqlite --nodes 1 --workers 2
bench postgresql-workers-2 --backend postgresql --nodes 1 --workers 2
$PY benchmarks/multinode_table.py "$OUT"/"$STAMP"-{sqlite-1,postgresql-1,postgresql-3,sqlite-workers-2,postgresql-workers-2}.json
