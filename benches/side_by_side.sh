#!/usr/bin/env bash
# Strata and the peer engines, one after the other in one session, on the same Parquet files;
# then the comparison tables. Needs a release build and the peer harness:
#   cargo build --release --bin strata
#   python3 -m venv /tmp/venv && /tmp/venv/bin/pip install duckdb==2.0.0 datafusion==55.0.0 pyarrow
#   PYTHON=/tmp/venv/bin/python benches/side_by_side.sh
set -euo pipefail
cd "$(dirname "$0")/.."
STRATA=${STRATA:-target/release/strata}
PYTHON=${PYTHON:-python3}
PEERS=${PEERS:-../shared/bench/peers.py}
export WHBENCH_RESULTS=${WHBENCH_RESULTS:-$(mktemp -d)}
peer() { "$PYTHON" "$PEERS" "$@" | tail -2; }

echo "== SSB SF 10"
"$STRATA" bench run --suite ssb --sf 10 --memory-limit 2GiB | tail -2
peer run --engine duckdb-parquet --suite ssb --sf 10 --timeout 300
peer run --engine datafusion --suite ssb --sf 10 --timeout 300
peer load-native --suite ssb --sf 10
peer run --engine duckdb-native --suite ssb --sf 10 --timeout 300
echo "== SSB SF 1"
"$STRATA" bench run --suite ssb --sf 1 | tail -2
peer run --engine duckdb-parquet --suite ssb --sf 1 --timeout 120
peer run --engine datafusion --suite ssb --sf 1 --timeout 120
echo "== TPC-H SF 1"
"$STRATA" bench run --suite tpch --sf 1 | tail -2
peer run --engine duckdb-parquet --suite tpch --sf 1 --timeout 120
peer run --engine datafusion --suite tpch --sf 1 --timeout 120
echo "== 4-stream throughput, SSB SF 10"
"$STRATA" bench throughput --suite ssb --sf 10 --streams 4 --memory-limit 2GiB | tail -2
peer throughput --engine duckdb-parquet --suite ssb --sf 10 --streams 4 --deadline 600
peer throughput --engine datafusion --suite ssb --sf 10 --streams 4 --deadline 600

cp "$WHBENCH_RESULTS"/*.json benches/results/
python3 benches/compare.py
