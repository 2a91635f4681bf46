#!/usr/bin/env bash
# Measures Amber's wall-clock throughput against the tools it is built from, on this
# machine and in this run: b3sum (hashing) and zstd -3 over a tar (compression) as
# baselines, then `amber snapshot` into a fresh repository, a second `amber snapshot
# --force` (everything already stored: the dedup path) and `amber restore`; then the same
# tree through `amber serve` on loopback (`amber push` into a fresh vault, again unchanged,
# and `amber restore --server`).
#
#   benches/compare.sh [TREE]     (default: the generated 111 MB tree the criterion benches use)
#
# Each figure is the median of RUNS runs (default 3). Everything reads the tree from a warm
# page cache. Temporary files (about 2.5 times the tree per run) go below TMPDIR (default
# /tmp) and are removed on exit.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-3}

log() { echo "compare: $*" >&2; }

install_missing_tools() {
  local need=()
  command -v b3sum >/dev/null || need+=(b3sum)
  command -v zstd >/dev/null || need+=(zstd)
  [ ${#need[@]} -eq 0 ] && return
  log "installing ${need[*]}"
  local sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq "${need[@]}" >/dev/null
}

# The cargo target directory, wherever CARGO_TARGET_DIR or .cargo/config put it.
target_dir() {
  cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

# Seconds taken by one run of "$@" (stdout discarded, stderr kept in $work/last.err).
time_once() {
  local t0 t1
  t0=$(date +%s.%N)
  if ! "$@" >/dev/null 2>"$work/last.err"; then
    log "failed: $*"
    cat "$work/last.err" >&2
    return 1
  fi
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# What each measurement runs.
run_b3sum() { find "$tree" -type f -print0 | xargs -0 -r b3sum >/dev/null; }
run_b3sum_t1() { find "$tree" -type f -print0 | xargs -0 -r b3sum --num-threads 1 >/dev/null; }
run_zstd_t1() { tar cf - -C "$tree" . | zstd -3 -T1 -q -c >/dev/null; }
run_zstd_t0() { tar cf - -C "$tree" . | zstd -3 -T0 -q -c >/dev/null; }
run_snapshot() { "$amber" snapshot "$tree" --force; }
run_restore() { "$amber" restore latest "$1"; }
run_tar() { "$amber" snapshot --tar "$work/layer.tar"; }
run_tar_rebuild() { "$amber" restore latest --tar -; }
run_block() { "$amber" snapshot --block "$work/volume.img"; }
run_block_restore() { "$amber" restore latest --block "$1"; }
run_push() { "$amber" push "$tree"; }
run_pull() { "$amber" restore latest "$1"; }
# Starts `amber serve` on a fresh data directory; sets AMBER_SERVER and AMBER_TOKEN.
start_server() {
  local out=$1.out
  AMBER_REPO=$1 "$amber" serve --listen 127.0.0.1:0 >"$out" 2>"$1.log" &
  server_pid=$!
  for _ in $(seq 100); do
    grep -q '^listening on ' "$out" 2>/dev/null && break
    sleep 0.1
  done
  AMBER_SERVER=$(sed -n 's/^listening on //p' "$out")
  AMBER_TOKEN=$(sed -n 's/^admin token: //p' "$out")
  export AMBER_SERVER AMBER_TOKEN
}
stop_server() {
  kill "$server_pid" 2>/dev/null || true
  wait "$server_pid" 2>/dev/null || true
  unset AMBER_SERVER AMBER_TOKEN
}
fresh_repo() {
  export AMBER_REPO=$1
  "$amber" init --kdf-memory-mib 8 --kdf-iterations 1 >/dev/null
}

install_missing_tools
work=$(mktemp -d "${TMPDIR:-/tmp}/amber-compare.XXXXXX")
server_pid=
cleanup() {
  if [ -n "$server_pid" ]; then kill "$server_pid" 2>/dev/null || true; fi
  rm -rf "$work"
}
trap cleanup EXIT

log "building amber (release)"
cargo build --release -p amber-server
bin=$(target_dir)/release
amber=$bin/amber

if [ $# -ge 1 ]; then
  [ -d "$1" ] || { log "$1 is not a directory"; exit 2; }
  tree=$(realpath "$1")
else
  cargo build --release -p amber-benches --bin amber-bench-tree
  tree=$work/tree
  log "generating the test tree: $("$bin/amber-bench-tree" "$tree")"
fi
files=$(find "$tree" -type f | wc -l)
bytes=$(find "$tree" -type f -printf '%s\n' | awk '{ s += $1 } END { printf "%d\n", s }')
[ "$bytes" -gt 0 ] || { log "$tree holds no file content to measure"; exit 2; }

export AMBER_PASSWORD=compare-passphrase
unset AMBER_PASSWORD_FILE AMBER_CACHE

# The same content as a layer (a tar) and as a volume (an ext4 image made from the tree).
tar cf "$work/layer.tar" -C "$tree" .
truncate -s $((bytes * 2 + (64 << 20))) "$work/volume.img"
mkfs.ext4 -q -F -b 4096 -d "$tree" "$work/volume.img"

# Warm the page cache so the first tool measured does not pay for the disk.
tar cf - -C "$tree" . >/dev/null

names=("b3sum" "b3sum --num-threads 1" "tar | zstd -3 -T1" "tar | zstd -3 -T0"
  "amber snapshot (fresh repo)" "amber snapshot (dedup)" "amber restore"
  "amber snapshot --tar (fresh)" "amber restore --tar" "amber snapshot --block (fresh)" "amber restore --block"
  "amber push (fresh vault)" "amber push (unchanged)" "amber restore --server")
declare -a times=()
for ((run = 1; run <= RUNS; run++)); do
  log "run $run of $RUNS"
  times[0]+=" $(time_once run_b3sum)"
  times[1]+=" $(time_once run_b3sum_t1)"
  times[2]+=" $(time_once run_zstd_t1)"
  times[3]+=" $(time_once run_zstd_t0)"
  # A new repository and restore target each run, all deleted only at exit: on ext4,
  # creating thousands of files just after deleting thousands costs the kernel more.
  export AMBER_REPO=$work/repo.$run
  "$amber" init --kdf-memory-mib 8 --kdf-iterations 1 >/dev/null
  times[4]+=" $(time_once run_snapshot)"
  times[5]+=" $(time_once run_snapshot)"
  times[6]+=" $(time_once run_restore "$work/restored.$run")"
  # The restored copy must be the tree itself, or the figures mean nothing.
  diff -r "$tree" "$work/restored.$run" >/dev/null || { log "restored tree differs from $tree"; exit 1; }
  fresh_repo "$work/layer-repo.$run"
  times[7]+=" $(time_once run_tar)"
  times[8]+=" $(time_once run_tar_rebuild)"
  fresh_repo "$work/volume-repo.$run"
  times[9]+=" $(time_once run_block)"
  times[10]+=" $(time_once run_block_restore "$work/volume.$run.img")"
  cmp -s "$work/volume.img" "$work/volume.$run.img" || { log "restored volume differs"; exit 1; }
  # The same tree through `amber serve` on loopback: gRPC, lock-step batches, one stream.
  start_server "$work/server.$run"
  times[11]+=" $(time_once run_push)"
  times[12]+=" $(time_once run_push)"
  times[13]+=" $(time_once run_pull "$work/pulled.$run")"
  stop_server
  diff -r "$tree" "$work/pulled.$run" >/dev/null || { log "tree restored from the server differs"; exit 1; }
done

mbps() { awk -v b="$bytes" -v s="$1" 'BEGIN { printf "%.1f", b / s / 1e6 }'; }
declare -a med rate
for i in "${!names[@]}"; do
  # shellcheck disable=SC2086 # the run times are a space-separated list
  med[i]=$(median ${times[$i]})
  rate[i]=$(mbps "${med[i]}")
done

echo
echo "tree: $tree ($files files, $(awk -v b="$bytes" 'BEGIN { printf "%.1f", b / 1e6 }') MB)"
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "median of $RUNS runs; MB = 10^6 bytes of file content; ratios are MB/s over the baseline's MB/s"
echo "layer rows: the tree as one tar ($(stat -c %s "$work/layer.tar") bytes); volume rows: the tree in an ext4 image of $(stat -c %s "$work/volume.img") bytes"
echo
printf '%-28s %9s %9s %9s %10s %10s   %s\n' "measurement" "median s" "MB/s" "/ b3sum" "/ zstd-T1" "/ zstd-T0" "runs (s)"
for i in "${!names[@]}"; do
  printf '%-28s %9s %9s %9s %10s %10s  %s\n' "${names[i]}" "${med[i]}" "${rate[i]}" \
    "$(awk -v a="${rate[i]}" -v b="${rate[0]}" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v a="${rate[i]}" -v b="${rate[2]}" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v a="${rate[i]}" -v b="${rate[3]}" 'BEGIN { printf "%.2f", a / b }')" \
    "${times[$i]}"
done
