#!/usr/bin/env bash
# Runs the disk baseline (fio) and floe's benchmarks side by side, several
# times each, and prints the median of each figure. Usage:
#   bench/compare.sh [RUNS] [DIR]      (defaults: 3 runs, a directory under /tmp)
# Needs build/floe (scripts/build) and fio (scripts/bootstrap installs it).
set -euo pipefail
cd "$(dirname "$0")/.."
runs=${1:-3}
dir=${2:-$(mktemp -d /tmp/floe-compare-XXXXXX)}
floe=build/floe
port=$((20000 + RANDOM % 20000))
server=127.0.0.1:$port

# field NAME from a one-line JSON object
field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A results
record() { results[$1]+="$2 "; }

fio_run() {  # name, extra fio args
  local out
  out=$(fio --name=seq --filename="$dir/fio.dat" --rw=write --size=256m --ioengine=psync --fdatasync=1 \
            --output-format=json "${@:2}" 2>/dev/null)
  rm -f "$dir/fio.dat"
  record "fio $1 MB/s" "$(echo "$out" | tr -d '\n ' | sed -n 's/.*"write":{[^}]*"bw_bytes":\([0-9]*\).*/\1/p' | awk '{printf "%.0f", $1/1e6}')"
  record "fio $1 sync p50 us" "$(echo "$out" | tr -d '\n ' | sed -n 's/.*"sync":{.*"50.000000":\([0-9]*\).*/\1/p' | awk '{printf "%.0f", $1/1000}')"
}

$floe serve --data "$dir/node" --listen "$server" --mqtt-listen "" >"$dir/serve.log" 2>&1 &
node_pid=$!
trap 'kill $node_pid 2>/dev/null || true; rm -rf "$dir"' EXIT
sleep 1

for ((r = 1; r <= runs; r++)); do
  echo "run $r of $runs" >&2
  fio_run "buffered 1MiB" --bs=1m
  fio_run "O_DIRECT 1MiB" --bs=1m --direct=1
  fio_run "100B write+fdatasync" --bs=100 --size=1m
  for size in 100 1024; do
    j=$($floe bench log --dir "$dir/log" --messages 200000 --size $size --json 2>/dev/null)
    record "log $size B msgs/s" "$(echo "$j" | field msgs_per_s)"
    record "log $size B MB/s" "$(echo "$j" | field mb_per_s)"
    record "log $size B read msgs/s" "$(echo "$j" | field read_msgs_per_s)"
    for conns in 1 4; do
      j=$($floe bench publish --server $server --stream "w1-$size-$conns-$r" --messages 200000 --size $size \
            --inflight 1000 --connections $conns --json)
      record "W1 $size B x$conns msgs/s" "$(echo "$j" | field msgs_per_s)"
      record "W1 $size B x$conns MB/s" "$(echo "$j" | field mb_per_s)"
      record "W1 $size B x$conns p50 us" "$(echo "$j" | field p50_us)"
      record "W1 $size B x$conns p99 us" "$(echo "$j" | field p99_us)"
    done
    j=$($floe bench consume --server $server --stream "w1-$size-1-$r" --messages 200000 --size $size --json)
    record "W3 $size B msgs/s" "$(echo "$j" | field msgs_per_s)"
    record "W3 $size B cycle p50 us" "$(echo "$j" | field p50_us)"
  done
  j=$($floe bench log --dir "$dir/log" --messages 5000 --size 100 --inflight 1 --json 2>/dev/null)
  record "log 1-in-flight p50 us" "$(echo "$j" | field p50_us)"
  j=$($floe bench publish --server $server --stream "w2-$r" --messages 5000 --size 100 --inflight 1 --warmup 100 --json)
  record "W2 p50 us" "$(echo "$j" | field p50_us)"
  record "W2 p99 us" "$(echo "$j" | field p99_us)"
done

printf '%-28s %12s   %s\n' "figure" "median" "runs"
for k in $(printf '%s\n' "${!results[@]}" | sort | tr ' ' '|'); do
  key=${k//|/ }
  printf '%-28s %12s   %s\n' "$key" "$(echo "${results[$key]}" | tr ' ' '\n' | grep . | median)" "${results[$key]}"
done
