#!/usr/bin/env bash
# Two floe binaries side by side in one run: W1 (100 B on 1 connection,
# 1 KiB on 4), W2 and W3 (BENCHMARKS.md), alternating A and B each round,
# each binary serving and driving its own node on a fresh data directory.
# Prints the median of each figure for A and B and the ratio B/A. Usage:
#   bench/ab.sh A_BINARY B_BINARY [ROUNDS] [DIR]   (defaults: 3 rounds, a directory under /tmp)
set -euo pipefail
a=${1:?binary A (before)}
b=${2:?binary B (after)}
rounds=${3:-3}
dir=${4:-$(mktemp -d /tmp/floe-ab-XXXXXX)}

field() { sed -n "s/.*\"$1\":\([0-9.]*\).*/\1/p"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A results
record() { results["$1|$2"]+="$3 "; }

node_pid=""
trap '[ -n "$node_pid" ] && kill $node_pid 2>/dev/null; rm -rf "$dir"' EXIT

one() {  # label, binary, round
  local label=$1 floe=$2 r=$3 port=$((20000 + RANDOM % 20000)) j
  local server=127.0.0.1:$port data="$dir/$label-$r"
  "$floe" serve --data "$data" --listen "$server" >"$dir/serve-$label-$r.log" 2>&1 &
  node_pid=$!
  for _ in $(seq 100); do "$floe" stream list --server "$server" >/dev/null 2>&1 && break; sleep 0.05; done
  j=$("$floe" bench publish --server "$server" --stream w1a --messages 200000 --size 100 --inflight 1000 --json)
  record "W1 100 B x1 msgs/s" "$label" "$(echo "$j" | field msgs_per_s)"
  record "W1 100 B x1 p50 us" "$label" "$(echo "$j" | field p50_us)"
  j=$("$floe" bench publish --server "$server" --stream w1b --messages 200000 --size 1024 --inflight 1000 \
        --connections 4 --json)
  record "W1 1 KiB x4 MB/s" "$label" "$(echo "$j" | field mb_per_s)"
  j=$("$floe" bench consume --server "$server" --stream w1a --messages 200000 --size 100 --json)
  record "W3 100 B msgs/s" "$label" "$(echo "$j" | field msgs_per_s)"
  record "W3 cycle p50 us" "$label" "$(echo "$j" | field p50_us)"
  j=$("$floe" bench publish --server "$server" --stream w2 --messages 5000 --size 100 --inflight 1 --warmup 100 --json)
  record "W2 p50 us" "$label" "$(echo "$j" | field p50_us)"
  record "W2 p99 us" "$label" "$(echo "$j" | field p99_us)"
  kill $node_pid
  wait $node_pid 2>/dev/null || true
  node_pid=""
  rm -rf "$data"
}

for ((r = 1; r <= rounds; r++)); do
  echo "round $r of $rounds" >&2
  one A "$a" "$r"
  one B "$b" "$r"
done

printf '%-22s %12s %12s %8s   %s\n' "figure" "A median" "B median" "B/A" "runs (A | B)"
for key in "W1 100 B x1 msgs/s" "W1 100 B x1 p50 us" "W1 1 KiB x4 MB/s" "W2 p50 us" "W2 p99 us" \
           "W3 100 B msgs/s" "W3 cycle p50 us"; do
  ma=$(echo "${results["$key|A"]}" | tr ' ' '\n' | grep . | median)
  mb=$(echo "${results["$key|B"]}" | tr ' ' '\n' | grep . | median)
  printf '%-22s %12s %12s %8s   %s| %s\n' "$key" "$ma" "$mb" "$(awk -v a="$ma" -v b="$mb" 'BEGIN {printf "%.2f", (a > 0 ? b / a : 0)}')" \
    "${results["$key|A"]}" "${results["$key|B"]}"
done
