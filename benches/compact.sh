#!/usr/bin/env bash
# Measures `amber compact` on vaults of N snapshots where half were forgotten: the space it
# gives back and the time it takes, and how that time grows with N.
#
#   benches/compact.sh [N ...]      (default: 50 100 200)
#
# For each N, a fresh local vault gets N snapshots of one tree: a fixed base of 2,000 small
# files (about 24 MB) plus, per snapshot, one new 512 KiB file that stays in every later
# snapshot and one 512 KiB file that replaces the previous snapshot's. Even-numbered
# snapshots are tagged `keep`; `amber forget --keep-tag keep` then forgets the odd half.
# The transient file of a forgotten snapshot is used by no one; its lasting file still is,
# so the pack that snapshot wrote is half unused and is repacked, and packs of nothing but
# unused blobs are deleted. A first `amber compact --grace 0s` before the forget makes the
# index's reference counts (it walks every snapshot); after the forget one runs timed (it
# walks only the forgotten snapshots); a third, also timed, must find nothing to do; `amber verify --read-data` must be clean; and the newest snapshot
# must restore to the tree.
#
# Baseline measured in the same run, on the same vault, just before compaction: a
# structural `amber verify` (it too reads every snapshot and every metadata node). The
# figures are wall-clock seconds of single runs (RUNS=k for the median of k vaults per N),
# and the compaction's peak resident set.
set -euo pipefail
cd "$(dirname "$0")/.."

RUNS=${RUNS:-1}
SIZES=("$@")
[ ${#SIZES[@]} -gt 0 ] || SIZES=(50 100 200)

log() { echo "compact-bench: $*" >&2; }

target_dir() {
  cargo metadata --format-version 1 --no-deps | sed -n 's/.*"target_directory":"\([^"]*\)".*/\1/p'
}

# Seconds taken by one run of "$@"; its stdout goes to $work/last.out.
time_once() {
  local t0 t1
  t0=$(date +%s.%N)
  if ! "$@" >"$work/last.out" 2>"$work/last.err"; then
    log "failed: $*"
    cat "$work/last.err" >&2
    return 1
  fi
  t1=$(date +%s.%N)
  awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.3f\n", b - a }'
}

# Runs "$@" with stdout to $work/last.out; prints its wall time in seconds and writes its
# peak resident set (KiB) to $work/last.rss. Measured around the child alone, so Python's
# own start is not counted.
measure() {
  python3 -c 'import resource, subprocess, sys, time
t0 = time.monotonic()
with open(sys.argv[1] + ".out", "wb") as out, open(sys.argv[1] + ".err", "wb") as err:
    r = subprocess.run(sys.argv[2:], stdout=out, stderr=err)
print("%.3f" % (time.monotonic() - t0))
open(sys.argv[1] + ".rss", "w").write(str(resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss))
sys.exit(r.returncode)' "$work/last" "$@" || { log "failed: $*"; cat "$work/last.err" >&2; return 1; }
}

median() { printf '%s\n' "$@" | sort -g | awk '{ v[NR] = $1 } END { print v[int((NR + 1) / 2)] }'; }

# A field of the JSON report in $work/last.out, by dotted path (`deleted.packs`).
field() { python3 -c 'import json, sys
v = json.load(open(sys.argv[1]))
for k in sys.argv[2].split("."): v = v[k]
print(v)' "$work/last.out" "$1"; }

work=$(mktemp -d "${TMPDIR:-/tmp}/amber-compact.XXXXXX")
trap 'rm -rf "$work"' EXIT

log "building amber (release)"
cargo build --release -p amber-server
amber=$(target_dir)/release/amber
export AMBER_PASSWORD=compact-bench-passphrase
unset AMBER_PASSWORD_FILE AMBER_CACHE AMBER_SERVER AMBER_TOKEN

# The base: 2,000 files of 4–20 KiB in 20 directories, the same bytes every run.
make_base() {
  local tree=$1 d f
  for d in $(seq -w 0 19); do
    mkdir -p "$tree/base/d$d"
    for f in $(seq -w 0 99); do
      head -c $((4096 + (10#$d * 100 + 10#$f) % 16 * 1024)) /dev/zero | tr '\0' "x" >"$tree/base/d$d/f$f.txt"
      echo "$d/$f" >>"$tree/base/d$d/f$f.txt"
    done
  done
  mkdir -p "$tree/lasting" "$tree/transient"
}

# Builds a vault of $1 snapshots in $2 (tree in $2.tree); prints nothing.
build_vault() {
  local n=$1 repo=$2 tree=$2.tree i tag
  make_base "$tree"
  export AMBER_REPO=$repo
  "$amber" init --kdf-memory-mib 8 --kdf-iterations 1 >/dev/null
  for ((i = 1; i <= n; i++)); do
    head -c 524288 /dev/urandom >"$tree/lasting/l$i.bin"
    rm -f "$tree"/transient/*
    head -c 524288 /dev/urandom >"$tree/transient/t$i.bin"
    tag=()
    ((i % 2 == 0)) && tag=(--tag keep)
    "$amber" snapshot "$tree" "${tag[@]}" >/dev/null
  done
}

store_bytes() { du -sb "$1" | cut -f1; }

declare -A t_compact t_verify t_first t_again rss before after freed repacked deleted snaps walked walked_first
for n in "${SIZES[@]}"; do
  tc=() tv=() tf=() ta=() rs=()
  for ((run = 1; run <= RUNS; run++)); do
    repo=$work/vault-$n-$run
    log "N=$n run $run: $n snapshots"
    build_vault "$n" "$repo"
    # The first compaction of a vault walks every snapshot to make the index's reference
    # counts; nothing is unused yet.
    tf+=("$(time_once "$amber" --json compact --grace 0s)")
    walked_first[$n]=$(field snapshots_walked)
    "$amber" forget --keep-tag keep >/dev/null
    tv+=("$(time_once "$amber" verify)")
    before[$n]=$(store_bytes "$repo")
    tc+=("$(measure "$amber" --json compact --grace 0s)")
    rs+=("$(cat "$work/last.rss")")
    freed[$n]=$(field deleted.bytes)
    deleted[$n]=$(field deleted.packs)
    repacked[$n]=$(field repacked.packs)
    snaps[$n]=$(field snapshots)
    walked[$n]=$(field snapshots_walked)
    after[$n]=$(store_bytes "$repo")
    ta+=("$(time_once "$amber" --json compact --grace 0s)")
    [ "$(field deleted.packs)" = 0 ] && [ "$(field repacked.packs)" = 0 ] ||
      { log "a second compaction still found work: $(cat "$work/last.out")"; exit 1; }
    "$amber" verify --read-data >/dev/null || { log "verify --read-data is not clean after compaction"; exit 1; }
    "$amber" restore latest "$repo.restored" >/dev/null
    diff -r "$repo.tree" "$repo.restored" >/dev/null || { log "the newest snapshot does not restore to the tree"; exit 1; }
    rm -rf "$repo.restored" "$repo.tree"
  done
  # shellcheck disable=SC2086 # lists of run times
  t_compact[$n]=$(median ${tc[*]})
  # shellcheck disable=SC2086
  t_verify[$n]=$(median ${tv[*]})
  # shellcheck disable=SC2086
  rss[$n]=$(median ${rs[*]})
  # shellcheck disable=SC2086
  t_first[$n]=$(median ${tf[*]})
  # shellcheck disable=SC2086
  t_again[$n]=$(median ${ta[*]})
done

first=${SIZES[0]}
mb() { awk -v b="$1" 'BEGIN { printf "%.1f", b / 1e6 }'; }
echo
echo "machine: $(nproc) cores, $(sed -n 's/^model name[[:space:]]*: //p' /proc/cpuinfo | head -1)"
echo "N snapshots, odd half forgotten; compaction with --grace 0s; baseline: structural amber verify of the same vault just before"
echo "MB = 10^6 bytes; before, after and freed: du -sb of the whole vault directory; deleted: pack bytes compaction deleted (repacking writes some back); median of $RUNS run(s)"
echo
printf '%6s %6s %10s %10s %10s %10s %8s %9s %10s %10s %9s %10s %9s\n' N kept "before MB" "after MB" "freed MB" "deleted MB" deleted repacked "compact s" "verify s" "/ verify" "/ N=$first" "peak MiB"
for n in "${SIZES[@]}"; do
  printf '%6s %6s %10s %10s %10s %10s %8s %9s %10s %10s %9s %10s %9s\n' "$n" "${snaps[$n]}" \
    "$(mb "${before[$n]}")" "$(mb "${after[$n]}")" "$(mb $((before[$n] - after[$n])))" "$(mb "${freed[$n]}")" \
    "${deleted[$n]}" "${repacked[$n]}" "${t_compact[$n]}" "${t_verify[$n]}" \
    "$(awk -v a="${t_compact[$n]}" -v b="${t_verify[$n]}" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v a="${t_compact[$n]}" -v b="${t_compact[$first]}" 'BEGIN { printf "%.2f", a / b }')" \
    "$(awk -v k="${rss[$n]}" 'BEGIN { printf "%.1f", k / 1024 }')"
done
echo
echo "reference counts: the first compaction of each vault (before the forget) walks every snapshot;"
echo "the timed one above walks only the forgotten; a third run right after finds nothing changed"
printf '%6s %14s %12s %14s %12s %14s %12s
' N "first walked" "first s" "compact walked" "compact s" "again s" "again / N=$first"
for n in "${SIZES[@]}"; do
  printf '%6s %14s %12s %14s %12s %14s %12s
' "$n" "${walked_first[$n]}" "${t_first[$n]}" "${walked[$n]}" \
    "${t_compact[$n]}" "${t_again[$n]}" \
    "$(awk -v a="${t_again[$n]}" -v b="${t_again[$first]}" 'BEGIN { printf "%.2f", a / b }')"
done
