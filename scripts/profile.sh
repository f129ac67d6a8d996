#!/usr/bin/env bash
# Profiles a servent forwarding floods (the `flood` section of `cargo bench`).
#
#   scripts/profile.sh perf [FLOODS]        # sampled: where the time goes (default 10M)
#   scripts/profile.sh callgrind [FLOODS]   # counted: instructions per flood (default 200k)
#
# perf samples the cpu-clock of the flood servent for 1 s while it forwards (hardware
# counters are often missing in virtual machines; cpu-clock always works), then prints
# the top symbols, kernel included. callgrind runs every servent of the section under
# valgrind and prints the instructions each forwarded flood cost, and the top
# functions: repeatable to a few percent however busy the machine is, so it is the one
# to compare two versions with. Needs perf (Debian: linux-perf) or valgrind.
set -euo pipefail
cd "$(dirname "$0")/.."

tool=${1:-perf}
out=$(mktemp -d /tmp/tp3kv-profile.XXXXXX)
echo "profile: output in $out"
cargo bench --no-run >/dev/null 2>&1 || cargo bench --no-run

case "$tool" in
perf)
    floods=${2:-10000000}
    command -v perf >/dev/null || { echo "profile: perf not found (apt install linux-perf)" >&2; exit 1; }
    PERF_FLOODS=$floods PERF_FLOOD_ROUNDS=1 cargo bench -- flood >"$out/bench.txt" 2>&1 &
    bench=$!
    # The flood servent is the one started with the flood section's key file.
    pid=
    for _ in $(seq 1 1200); do
        pid=$(pgrep -f "servent .*flood-keys.kv" | head -1 || true)
        [ -n "$pid" ] && break
        sleep 0.05
    done
    [ -n "$pid" ] || { echo "profile: no flood servent appeared" >&2; kill "$bench"; exit 1; }
    sleep 0.5 # past its idle start, into the flood
    # Ends early, and says so, if the servent is done before the second is up.
    perf record -e cpu-clock -F 4000 -g -p "$pid" -o "$out/perf.data" -- sleep 1 \
        >"$out/perf-record.txt" 2>&1 || true
    wait "$bench"
    grep -E "^ *(baseline|servent|ratio) " "$out/bench.txt"
    perf report -i "$out/perf.data" --no-children --sort dso -g none 2>/dev/null | grep "%" | head -4
    perf report -i "$out/perf.data" --no-children --sort symbol -g none 2>/dev/null | grep "%" | head -25
    echo "profile: perf report -i $out/perf.data   # the whole of it"
    ;;
callgrind)
    floods=${2:-200000}
    command -v valgrind >/dev/null || { echo "profile: valgrind not found" >&2; exit 1; }
    PERF_FLOODS=$floods PERF_FLOOD_ROUNDS=1 PERF_WRAP="valgrind --tool=callgrind --callgrind-out-file=$out/callgrind.%p" \
        cargo bench -- flood >"$out/bench.txt" 2>&1
    grep -E "^ *(baseline|servent|ratio) " "$out/bench.txt"
    files=("$out"/callgrind.*) # the section starts one servent
    file=${files[0]}
    total=$(callgrind_annotate "$file" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1}')
    echo "profile: $total instructions in the flood servent, $((total / floods)) per flood forwarded (start-up included)"
    callgrind_annotate "$file" 2>/dev/null | sed -n '/file:function/,$p' | head -25
    echo "profile: callgrind_annotate $file   # the whole of it"
    ;;
*)
    echo "usage: scripts/profile.sh perf|callgrind [FLOODS]" >&2
    exit 2
    ;;
esac
