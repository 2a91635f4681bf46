#!/usr/bin/env bash
# Measures how the volume block size affects an ext4 image of a real Python environment:
# bytes stored for the first snapshot, bytes stored and read after one file is edited
# (with changed ranges), metadata written, and time. Usage:
#   benches/block-size.sh PYTHON_ENV_DIR [AMBER_BINARY]
set -euo pipefail
env_dir=$(realpath "$1")
amber=$(realpath "${2:-target/release/amber}")
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
export AMBER_PASSWORD=bench

truncate -s 1G "$work/a.img"
mkfs.ext4 -q -F -b 4096 -d "$env_dir" "$work/a.img"
cp --sparse=always "$work/a.img" "$work/b.img"
printf 'home = /opt/python\nversion = 3.11.99\n' > "$work/cfg"
debugfs -w -R "rm /pyvenv.cfg" "$work/b.img" >/dev/null 2>&1
debugfs -w -R "write $work/cfg /pyvenv.cfg" "$work/b.img" >/dev/null 2>&1
# Changed ranges at 4 KiB granularity, as a block-volume change API reports them.
python3 - "$work/a.img" "$work/b.img" > "$work/ranges" <<'PY'
import sys
a, b = open(sys.argv[1], 'rb'), open(sys.argv[2], 'rb')
off = 0
while True:
    x, y = a.read(4096), b.read(4096)
    if not x:
        break
    if x != y:
        print(off, 4096)
    off += 4096
PY
changed=$(awk '{s+=$2} END {print s}' "$work/ranges")
used=$(du -B1 "$work/a.img" | cut -f1)
echo "image: 1 GiB, $used bytes allocated; edit changes $changed bytes in $(wc -l < "$work/ranges") ranges"
printf '%-8s %14s %12s %14s %12s %12s %10s\n' block first_stored first_s second_read second_stored meta_new list_nodes
for kib in 64 256 1024 4096; do
  repo="$work/repo-$kib"
  "$amber" --repo "$repo" init --kdf-memory-mib 8 --kdf-iterations 1 --block-size-kib "$kib" >/dev/null
  t0=$(date +%s.%N)
  first=$("$amber" --repo "$repo" --json snapshot --block "$work/a.img")
  t1=$(date +%s.%N)
  id=$(echo "$first" | python3 -c 'import json,sys; print(json.load(sys.stdin)["id"])')
  meta_before=$(du -sb "$repo/meta" | cut -f1)
  second=$("$amber" --repo "$repo" --json snapshot --block "$work/b.img" --changed-ranges "$work/ranges" --parent "$id")
  meta_after=$(du -sb "$repo/meta" | cut -f1)
  python3 - "$kib" "$first" "$second" "$t0" "$t1" "$meta_before" "$meta_after" <<'PY'
import json, sys
kib, first, second = sys.argv[1], json.loads(sys.argv[2]), json.loads(sys.argv[3])
t = float(sys.argv[5]) - float(sys.argv[4])
meta = int(sys.argv[7]) - int(sys.argv[6])
print(f"{kib+'K':<8} {first['bytes_new']:>14} {t:>12.2f} {second['bytes_read']:>14} {second['bytes_new']:>12} {meta:>12} {second['blobs_new']:>10}")
PY
done
