#!/usr/bin/env bash
# A topology of real hosts, each in its own network namespace (needs root and `ip`):
#
#   scripts/netns-topology.sh [--hosts N] [--line|--ring]
#
# Creates a bridge namespace tp3-<pid>-br holding a bridge, and N host namespaces
# tp3-<pid>-hK (K = 1..N), each with lo up and a veth into the bridge addressed
# 10.77.0.K/24. The addresses exist only inside this run's namespaces, so parallel
# runs (different pids) never collide. One release servent runs per host on port
# 5000 with a generated key-value file holding `hK value-of-hK` and `all
# value-of-all-from-hK`. Neighbours form a line (hK names hK+1) or, with --ring, a
# ring (hN also names h1). Once every link is up, a client in h1 on loopback
# (127.0.0.1:5000) asks `? hN`, `? all` and `T`; the transcript is printed and
# checked: every answer names its servent by 10.77.0.K:5000 (never 127.0.0.1 or
# 0.0.0.0), and exactly the hosts within the query's reach (4 hops) answer.
# Everything created (servents, namespaces, temp dir) is removed on exit, failure,
# Ctrl-C or TERM. Ends with PASS or FAIL.
#
# Environment: TIMEOUT (client --timeout, default 1 s), RUST_LOG (default info),
# START_TIMEOUT (seconds to wait for servents and links, default 10).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
TIMEOUT=${TIMEOUT:-1}
START_TIMEOUT=${START_TIMEOUT:-10}
export RUST_LOG=${RUST_LOG:-info}
PORT=5000
HOSTS=3
SHAPE=line

usage() {
    echo "usage: $0 [--hosts N] [--line|--ring] (see --help)" >&2
    exit 2
}

help() {
    sed -n '2,/^[^#]/{/^#/!q; s/^# \{0,1\}//; p}' "$0"
    echo
    echo "The binaries are cargo's release ones, built first (cargo build --release) in"
    echo "cargo's target dir (CARGO_TARGET_DIR is respected)."
    echo "Exit status: 0 on PASS, 1 on FAIL, 2 on a usage error."
    exit 0
}

while (($#)); do
    case $1 in
    --hosts)
        [[ ${2:-} =~ ^[0-9]+$ ]] || usage
        HOSTS=$2
        shift 2
        ;;
    --line) SHAPE=line; shift ;;
    --ring) SHAPE=ring; shift ;;
    -h | --help) help ;;
    *) usage ;;
    esac
done
((HOSTS >= 1 && HOSTS <= 200)) || { echo "--hosts must be 1..200" >&2; exit 2; }
[[ $SHAPE == ring && HOSTS -lt 3 ]] && { echo "--ring needs at least 3 hosts" >&2; exit 2; }

# shellcheck source=scripts/target-dir.sh
source "$ROOT/scripts/target-dir.sh"
TARGET=$(target_dir)
SERVENT=$TARGET/release/servent
CLIENT=$TARGET/release/client

PREFIX=tp3-$$
BRNS=$PREFIX-br
NSES=()  # every namespace created, deleted by cleanup
WORK=$(mktemp -d "${TMPDIR:-/tmp}/tp3kv-netns.XXXXXX")

# shellcheck source=scripts/cleanup.sh
source "$ROOT/scripts/cleanup.sh"
cleanup_more() {
    local ns
    for ns in "${NSES[@]}"; do ip netns del "$ns" 2>/dev/null || true; done
}

host_ns() { echo "$PREFIX-h$1"; }
host_ip() { echo "10.77.0.$1"; }

[[ $(id -u) == 0 ]] || die "network namespaces need root"
command -v ip >/dev/null || die "the ip command (iproute2) is missing"
if command -v cargo >/dev/null; then
    echo "building the release binaries (cargo build --release, into $TARGET)"
    (cd "$ROOT" && cargo build --release) || die "cargo build failed"
fi
[[ -x $SERVENT && -x $CLIENT ]] || die "no servent and client in $TARGET/release (build them with cargo build --release)"

echo "== $HOSTS hosts in a $SHAPE, namespaces $PREFIX-* (client timeout ${TIMEOUT}s) =="

# The bridge: one namespace holding br0; each host's veth peer is enslaved to it.
ip netns add "$BRNS" || die "cannot create namespace $BRNS"
NSES+=("$BRNS")
ip -n "$BRNS" link add br0 type bridge || die "cannot create the bridge"
ip -n "$BRNS" link set br0 up
ip -n "$BRNS" link set lo up
for ((k = 1; k <= HOSTS; k++)); do
    ns=$(host_ns "$k")
    ip netns add "$ns" || die "cannot create namespace $ns"
    NSES+=("$ns")
    ip -n "$BRNS" link add "veth$k" type veth peer name eth0 netns "$ns" ||
        die "cannot create the veth of h$k"
    ip -n "$BRNS" link set "veth$k" master br0 up
    ip -n "$ns" link set lo up
    ip -n "$ns" addr add "$(host_ip "$k")/24" dev eth0
    ip -n "$ns" link set eth0 up
done

# Neighbours each host names, and its degree (links it must see come up).
declare -A NAMES DEGREE
for ((k = 1; k <= HOSTS; k++)); do
    NAMES[$k]=""
    DEGREE[$k]=0
done
link() { # link A B: A names B
    NAMES[$1]+=" $(host_ip "$2"):$PORT"
    DEGREE[$1]=$((DEGREE[$1] + 1))
    DEGREE[$2]=$((DEGREE[$2] + 1))
}
for ((k = 1; k < HOSTS; k++)); do link "$k" $((k + 1)); done
[[ $SHAPE == ring ]] && link "$HOSTS" 1

for ((k = 1; k <= HOSTS; k++)); do
    kv=$WORK/h$k.kv
    printf '# generated for h%d\nh%d value-of-h%d\nall value-of-all-from-h%d\n' \
        "$k" "$k" "$k" "$k" >"$kv"
    # shellcheck disable=SC2086 # NAMES[k] is a space-separated list of addresses
    echo "h$k: servent $(host_ip "$k"):$PORT, neighbours:${NAMES[$k]:- none}"
    # shellcheck disable=SC2086
    ip netns exec "$(host_ns "$k")" "$SERVENT" "$PORT" "$kv" ${NAMES[$k]} \
        >"$WORK/h$k.out" 2>"$WORK/h$k.log" &
    PIDS+=("$!")
done

# Every servent listening, then every link up (dialled or accepted).
for ((k = 1; k <= HOSTS; k++)); do
    for ((i = 0; ; i++)); do
        grep -q "^listening on 0.0.0.0:$PORT\$" "$WORK/h$k.out" && break
        kill -0 "${PIDS[k - 1]}" 2>/dev/null ||
            die "h$k exited before listening: $(tail -n 3 "$WORK/h$k.log")"
        ((i < START_TIMEOUT * 20)) || die "h$k printed no 'listening on' line"
        sleep 0.05
    done
done
for ((k = 1; k <= HOSTS; k++)); do
    for ((i = 0; ; i++)); do
        n=$(grep -cE 'connected to neighbour|is a neighbour servent' "$WORK/h$k.log" || true)
        ((n >= DEGREE[$k])) && break
        ((i < START_TIMEOUT * 20)) || die "h$k has $n of its ${DEGREE[$k]} links"
        sleep 0.05
    done
done
echo "all servents listening, all links up"

# Hosts a query from h1 reaches: at most 4 hops (TTL 3 at the first retransmission).
reach() {
    local k=$1 d=$(($1 - 1))
    if [[ $SHAPE == ring ]] && ((HOSTS - k + 1 < d)); then d=$((HOSTS - k + 1)); fi
    ((d <= 4))
}

printf '? h%d\n? all\nT\n' "$HOSTS" >"$WORK/client.in"
echo "--- client in h1 on 127.0.0.1:$PORT: ? h$HOSTS, ? all, T ---"
# In the background, so Ctrl-C interrupts the wait at once (cleanup kills it).
ip netns exec "$(host_ns 1)" "$CLIENT" --lang en --timeout "$TIMEOUT" "127.0.0.1:$PORT" \
    <"$WORK/client.in" >"$WORK/client.out" 2>"$WORK/client.err" &
PIDS+=("$!")
wait "$!" || die "client failed: $(cat "$WORK/client.err")"
cat "$WORK/client.out"
echo "--- client stderr ---"
cat "$WORK/client.err"
echo "---"

FAILS=()
check() { # check DESCRIPTION COMMAND...
    local what=$1
    shift
    if "$@"; then echo "ok:   $what"; else echo "FAIL: $what"; FAILS+=("$what"); fi
}
has_line() { grep -qxF -- "$1" "$WORK/client.out"; }
lacks_line() { ! grep -qxF -- "$1" "$WORK/client.out"; }
lines_matching() { grep -cE -- "$1" "$WORK/client.out" || true; }

no_local() { ! grep -qE '(127\.0\.0\.1|0\.0\.0\.0)' "$WORK/client.out"; }
check "no answer names 127.0.0.1 or 0.0.0.0" no_local
if reach "$HOSTS"; then
    check "? h$HOSTS answered by h$HOSTS as $(host_ip "$HOSTS"):$PORT" \
        has_line "value-of-h$HOSTS $(host_ip "$HOSTS"):$PORT"
else
    check "? h$HOSTS (beyond reach) not answered" \
        lacks_line "value-of-h$HOSTS $(host_ip "$HOSTS"):$PORT"
fi
expected_all=0 expected_topo=0
for ((k = 1; k <= HOSTS; k++)); do
    if reach "$k"; then
        expected_all=$((expected_all + 1))
        check "? all answered by h$k as $(host_ip "$k"):$PORT" \
            has_line "value-of-all-from-h$k $(host_ip "$k"):$PORT"
    else
        check "? all not answered by h$k (beyond reach)" \
            lacks_line "value-of-all-from-h$k $(host_ip "$k"):$PORT"
    fi
done
expected_topo=$expected_all
n=$(lines_matching '^value-of-all-from-h[0-9]+ ')
check "? all: $expected_all answers (got $n)" test "$n" -eq "$expected_all"
# Topology answers: one or more 10.77.0.K:5000 words, then the answering servent.
topo_re="^10\.77\.0\.1:$PORT( 10\.77\.0\.[0-9]+:$PORT)* 10\.77\.0\.[0-9]+:$PORT\$"
n=$(lines_matching "$topo_re")
check "T: $expected_topo answers, each a path of 10.77.0.K:$PORT from h1 (got $n)" \
    test "$n" -eq "$expected_topo"
check "T: h1 answers with its own address" has_line "10.77.0.1:$PORT 10.77.0.1:$PORT"
for ((k = 2; k <= HOSTS; k++)); do
    reach "$k" || continue
    check "T: h$k answers, naming itself last" \
        test "$(lines_matching " 10\.77\.0\.$k:$PORT 10\.77\.0\.$k:$PORT\$")" -ge 1
done

if ((${#FAILS[@]})); then
    KEEP_LOGS=1
    echo "FAIL: ${#FAILS[@]} check(s) failed: ${FAILS[*]}"
    exit 1
fi
echo "PASS"
