#!/usr/bin/env bash
# MQTT QoS 1 publish, floe against mosquitto, side by side in one run (M1 of
# BENCHMARKS.md, online parts). Per round, each on its own topic:
#   * QoS 1 publish of MESSAGES messages of 100 bytes, 1,000 in flight, one
#     connection: floe's MQTT listener, then mosquitto (the order alternates)
#   * the same with a QoS 1 persistent-session subscriber running (end-to-end
#     rate: first PUBLISH to last message received, each exactly once)
#   * the same publish from mqtt_lean (floe's codec, one thread: far cheaper
#     per message than libmosquitto, so the broker bounds the rate)
#   * `floe bench publish` of the same messages (the floe protocol)
# and prints the medians and the ratios floe MQTT / mosquitto and floe MQTT /
# floe protocol (each ratio taken within a round, then the median).
# Usage:
#   bench/mqtt.sh            ROUNDS=3 MESSAGES=200000 MQTT_VERSION=5 (or 311) DIR=/tmp/...
# Needs build/floe and build/bench/mqtt_bench (ninja -C build floe mqtt_bench);
# installs Debian's mosquitto broker if missing and runs its own instance on a
# free loopback port (the packaged service is stopped: it would hold 1883).
set -euo pipefail
cd "$(dirname "$0")/.."
rounds=${ROUNDS:-3}
messages=${MESSAGES:-200000}
version=${MQTT_VERSION:-5}
floe=build/floe
bench=build/bench/mqtt_bench
lean=build/bench/mqtt_lean

[[ $rounds =~ ^[0-9]+$ ]] && ((rounds >= 1 && rounds <= 100)) || { echo "mqtt.sh: ROUNDS=$rounds: give 1 to 100" >&2; exit 2; }
[[ $messages =~ ^[0-9]+$ ]] && ((messages >= 1000 && messages <= 10000000)) ||
  { echo "mqtt.sh: MESSAGES=$messages: give 1000 to 10000000" >&2; exit 2; }
[[ $version == 5 || $version == 311 ]] || { echo "mqtt.sh: MQTT_VERSION=$version: give 5 or 311" >&2; exit 2; }
for b in "$floe" "$bench" "$lean"; do
  [ -x "$b" ] || { echo "mqtt.sh: $b is missing: ninja -C build floe mqtt_bench mqtt_lean" >&2; exit 2; }
done

if ! command -v mosquitto >/dev/null 2>&1 && [ ! -x /usr/sbin/mosquitto ]; then
  sudo=""
  [ "$(id -u)" -ne 0 ] && sudo="sudo"
  echo "mqtt.sh: installing Debian's mosquitto broker" >&2
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends mosquitto >/dev/null
  # The package starts a broker on 1883 where an init system runs; ours runs alone.
  $sudo service mosquitto stop >/dev/null 2>&1 || true
  $sudo systemctl disable --now mosquitto >/dev/null 2>&1 || true
fi
mosquitto=$(command -v mosquitto || echo /usr/sbin/mosquitto)

dir=${DIR:-$(mktemp -d /tmp/floe-mqtt-bench-XXXXXX)}
mkdir -p "$dir"
pids=()
cleanup() {
  for p in "${pids[@]}"; do kill "$p" 2>/dev/null || true; done
  for p in "${pids[@]}"; do wait "$p" 2>/dev/null || true; done
  rm -rf "$dir"
}
trap cleanup EXIT

free_port() {
  python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'
}
field() { sed -n "s/.*\"$1\":\([0-9.a-z]*\).*/\1/p"; }
median() { sort -n | awk '{a[NR]=$1} END {print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
declare -A results
record() { results["$1"]+="$2 "; }

floe_port=$(free_port)
floe_mqtt_port=$(free_port)
mosq_port=$(free_port)

cat >"$dir/mosquitto.conf" <<EOF
# written by bench/mqtt.sh: persistence on, 1,000 in flight, a queue large
# enough for every message of a run
listener $mosq_port 127.0.0.1
allow_anonymous true
persistence true
persistence_location $dir/mosquitto/
max_inflight_messages 1000
max_queued_messages 0
log_dest stderr
EOF
mkdir -p "$dir/mosquitto"
"$mosquitto" -c "$dir/mosquitto.conf" >"$dir/mosquitto.log" 2>&1 &
pids+=($!)
"$floe" serve --data "$dir/floe" --listen "127.0.0.1:$floe_port" --mqtt-listen "127.0.0.1:$floe_mqtt_port" \
  >"$dir/floe.log" 2>&1 &
pids+=($!)

ready() {  # port: one QoS 1 message (it also makes floe create its MQTT stream, outside the timing)
  for _ in $(seq 100); do
    "$bench" --publish --port "$1" --messages 1 --topic bench/warmup --timeout 5 --json >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "mqtt.sh: no MQTT broker answered on port $1; logs:" >&2
  tail -5 "$dir/floe.log" "$dir/mosquitto.log" >&2
  exit 1
}
ready "$floe_mqtt_port"
ready "$mosq_port"

run() {  # what to say on failure, command...: prints its JSON, or stops the script
  local what=$1 out
  shift
  if ! out=$("$@"); then
    echo "mqtt.sh: $what failed: $out" >&2
    exit 1
  fi
  echo "$out"
}

mqtt_pub() {  # label, port, round
  local j
  j=$(run "$1 publish" "$bench" --publish --port "$2" -V "$version" --qos 1 --messages "$messages" --size 100 \
        --inflight 1000 --topic "bench/r$3/publish" --json)
  record "$1 QoS 1 msgs/s" "$(echo "$j" | field msgs_per_s)"
  record "$1 QoS 1 p50 us" "$(echo "$j" | field p50_us)"
  record "$1 QoS 1 p99 us" "$(echo "$j" | field p99_us)"
}

lean_pub() {  # label, port, round: the same publish from mqtt_lean (floe's codec, one thread)
  local j
  j=$(run "$1 lean publish" "$lean" --port "$2" -V "$version" --messages "$messages" --size 100 --inflight 1000 \
        --topic "bench/r$3/lean" --json)
  record "$1 lean QoS 1 msgs/s" "$(echo "$j" | field msgs_per_s)"
  record "$1 lean QoS 1 p50 us" "$(echo "$j" | field p50_us)"
}

mqtt_pubsub() {  # label, port, round
  local j
  j=$(run "$1 publish with a subscriber" "$bench" --publish --subscribe --port "$2" -V "$version" --qos 1 \
        --messages "$messages" --size 100 --inflight 1000 --topic "bench/r$3/e2e" --client-id "bench-sub-r$3" --json)
  record "$1 +sub QoS 1 msgs/s" "$(echo "$j" | field msgs_per_s)"
  record "$1 +sub end-to-end msgs/s" "$(echo "$j" | field e2e_msgs_per_s)"
  record "$1 +sub p50 us" "$(echo "$j" | field p50_us)"
}

ratio() { awk -v a="$1" -v b="$2" 'BEGIN {printf "%.2f", (b > 0 ? a / b : 0)}'; }
last() { echo "${results["$1"]}" | awk '{print $NF}'; }

for ((r = 1; r <= rounds; r++)); do
  echo "round $r of $rounds" >&2
  if ((r % 2)); then order=(floe mosquitto); else order=(mosquitto floe); fi
  for who in "${order[@]}"; do
    if [ "$who" = floe ]; then mqtt_pub "floe MQTT" "$floe_mqtt_port" "$r"; else mqtt_pub mosquitto "$mosq_port" "$r"; fi
  done
  for who in "${order[@]}"; do
    if [ "$who" = floe ]; then lean_pub "floe MQTT" "$floe_mqtt_port" "$r"; else lean_pub mosquitto "$mosq_port" "$r"; fi
  done
  for who in "${order[@]}"; do
    if [ "$who" = floe ]; then mqtt_pubsub "floe MQTT" "$floe_mqtt_port" "$r"; else mqtt_pubsub mosquitto "$mosq_port" "$r"; fi
  done
  j=$(run "floe bench publish" "$floe" bench publish --server "127.0.0.1:$floe_port" --stream "w1-r$r" \
        --messages "$messages" --size 100 --inflight 1000 --json)
  record "floe protocol msgs/s" "$(echo "$j" | field msgs_per_s)"
  record "floe protocol p50 us" "$(echo "$j" | field p50_us)"
  record "ratio floe MQTT / mosquitto" "$(ratio "$(last "floe MQTT QoS 1 msgs/s")" "$(last "mosquitto QoS 1 msgs/s")")"
  record "ratio floe MQTT / floe protocol" "$(ratio "$(last "floe MQTT QoS 1 msgs/s")" "$(last "floe protocol msgs/s")")"
  record "ratio lean floe MQTT / floe protocol" \
    "$(ratio "$(last "floe MQTT lean QoS 1 msgs/s")" "$(last "floe protocol msgs/s")")"
  record "ratio lean floe MQTT / mosquitto" \
    "$(ratio "$(last "floe MQTT lean QoS 1 msgs/s")" "$(last "mosquitto lean QoS 1 msgs/s")")"
  record "ratio e2e floe / mosquitto" \
    "$(ratio "$(last "floe MQTT +sub end-to-end msgs/s")" "$(last "mosquitto +sub end-to-end msgs/s")")"
done

echo "MQTT $( [ "$version" = 5 ] && echo 5.0 || echo 3.1.1 ), QoS 1, $messages messages of 100 B, 1,000 in flight," \
  "1 connection; $rounds round(s); $(nproc) cores ($(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -1))," \
  "$(uname -sr), data on $(df -T "$dir" | awk 'NR==2 {print $2 " " $1}')"
echo "floe $(git rev-parse --short HEAD 2>/dev/null || echo '?'); $("$mosquitto" -h 2>&1 | head -1)"
printf '%-34s %12s   %s\n' "figure" "median" "rounds"
for key in "floe MQTT QoS 1 msgs/s" "mosquitto QoS 1 msgs/s" "floe protocol msgs/s" \
           "floe MQTT QoS 1 p50 us" "mosquitto QoS 1 p50 us" "floe protocol p50 us" \
           "floe MQTT QoS 1 p99 us" "mosquitto QoS 1 p99 us" \
           "floe MQTT +sub QoS 1 msgs/s" "mosquitto +sub QoS 1 msgs/s" \
           "floe MQTT +sub end-to-end msgs/s" "mosquitto +sub end-to-end msgs/s" \
           "floe MQTT +sub p50 us" "mosquitto +sub p50 us" \
           "floe MQTT lean QoS 1 msgs/s" "mosquitto lean QoS 1 msgs/s" \
           "floe MQTT lean QoS 1 p50 us" "mosquitto lean QoS 1 p50 us" \
           "ratio floe MQTT / mosquitto" "ratio floe MQTT / floe protocol" "ratio e2e floe / mosquitto" \
           "ratio lean floe MQTT / floe protocol" "ratio lean floe MQTT / mosquitto"; do
  printf '%-34s %12s   %s\n' "$key" "$(echo "${results[$key]}" | tr ' ' '\n' | grep . | median)" "${results[$key]}"
done
echo "targets: floe MQTT / mosquitto >= 1.00; floe MQTT / floe protocol >= 0.50 (the lean client: the broker bounds it)"
echo "note: mosquitto's PUBACK means the message is in memory (persistence writes its database every" \
  "autosave_interval, 1800 s by default, and at exit); floe's PUBACK follows the fdatasync that covers the message."

