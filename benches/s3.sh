#!/usr/bin/env bash
# Snapshot and restore throughput to an S3 store (moto on loopback) against the local
# directory store, in the same run, on the same tree; and the tier plan figures of the
# vault. Usage: benches/s3.sh [TREE] (default: the Python fixture venv of the tests).
# Needs scripts/setup (moto's venv) and a built amber (AMBER_BIN, default target/release/amber).
set -euo pipefail
cd "$(dirname "$0")/.."
AMBER=${AMBER_BIN:-target/release/amber}
TREE=${1:-target/debug/amber-fixtures/venv}
MOTO_PY=${AMBER_MOTO_PYTHON:-target/amber-fixtures/moto-5.2.5/bin/python}
WORK=$(mktemp -d)
trap 'kill "$MOTO_PID" 2>/dev/null || true; rm -rf "$WORK"' EXIT

mkfifo "$WORK/moto.in"
"$MOTO_PY" tests/s3/moto_serve.py < "$WORK/moto.in" > "$WORK/moto.port" 2>/dev/null &
MOTO_PID=$!
exec 9> "$WORK/moto.in"
for _ in $(seq 50); do [ -s "$WORK/moto.port" ] && break; sleep 0.1; done
PORT=$(head -1 "$WORK/moto.port")
export AWS_ENDPOINT_URL=http://127.0.0.1:$PORT AWS_ACCESS_KEY_ID=bench AWS_SECRET_ACCESS_KEY=bench
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true AMBER_PASSWORD=bench
curl -sf -X PUT "$AWS_ENDPOINT_URL/bench" > /dev/null

bytes=$(du -sb "$TREE" | cut -f1)
seconds() { local s e; s=$(date +%s.%N); "$@" > /dev/null; e=$(date +%s.%N); echo "$e - $s" | bc; }
run() { # name repo
  local name=$1 repo=$2
  "$AMBER" --repo "$repo" --cache-dir "$WORK/cache-$name" init --kdf-memory-mib 8 --kdf-iterations 1 > /dev/null
  local snap rest
  snap=$(seconds "$AMBER" --repo "$repo" --cache-dir "$WORK/cache-$name" snapshot "$TREE")
  rm -rf "$WORK/cache-$name"   # restore with a cold state directory: everything from the store
  rest=$(seconds "$AMBER" --repo "$repo" --cache-dir "$WORK/cache-$name" restore latest "$WORK/out-$name")
  echo "$name $snap $rest"
}
local_line=$(run local "$WORK/local-repo")
s3_line=$(run s3 "s3://bench/vault")
echo "tree: $TREE, $bytes bytes"
for line in "$local_line" "$s3_line"; do
  set -- $line
  printf '%-6s snapshot %6.2f s (%6.1f MB/s)   restore %6.2f s (%6.1f MB/s)\n' "$1" "$2" \
    "$(echo "$bytes / $2 / 1000000" | bc -l)" "$3" "$(echo "$bytes / $3 / 1000000" | bc -l)"
done
set -- $local_line; ls=$2; lr=$3
set -- $s3_line
printf 'S3 / local time: snapshot %.2fx, restore %.2fx\n' "$(echo "$2 / $ls" | bc -l)" "$(echo "$3 / $lr" | bc -l)"
now=$(date +%s)
for days in 40 400; do
  echo "tier plan at +${days} days:"
  AMBER_TEST_NOW=$((now + days * 86400)) "$AMBER" --repo s3://bench/vault --cache-dir "$WORK/cache-s3" tier plan | tail -3
done
