#!/usr/bin/env bash
# Topology 2, the line (topologia 2 do relatório: a linha s1–s2–s3–s4–s5–s6):
#
#   client - s1 - s2 - s3 - s4 - s5 - s6          each servent names the next one
#
# The TTL limit, as the seed has it: s1 sends its flood with TTL 3, s2 forwards
# with 2, s3 with 1, s4 with 0; s5 receives TTL 0, answers if it can, and forwards
# nothing; s6 never hears of any query. The servents start in a mixed order: the
# odd ones first, on any free port (0), each naming its even successor, which does
# not exist yet (ports reserved in advance; they keep redialling); then the even
# ones, each naming its odd successor, already running.
#
# The client, one run per command so each answer belongs to one question, asks:
#   ? ntp     only s5 has it: one answer, from s5; s5's trace shows it got TTL 0,
#             answered, and did not forward
#   ? gopher  only s6 has it: no answer, and s6's trace shows no KEYFLOOD ever arrived
#   T         exactly 5 answers, s1..s5, each with its path from s1; not s6
#   ? http    s1, s3, s5 and s6 have it: answers from s1, s3, s5, none from s6
# Data: data/line/*.kv (see data/README.md). Ends with PASS or FAIL: <reason>,
# and the floods drawn from the servents' traces (flood-view), servents named s1..s6.
# TIMEOUT=4 ./topologia2.sh waits as long as the assignment's client (default 1 s).

source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh" "$@"
DATA=data/line

echo "== Topology 2: line s1-s2-s3-s4-s5-s6 (client timeout ${TIMEOUT}s) =="
build
reserve_port P2
reserve_port P4
reserve_port P6

start_servent s1 0 $DATA/s1.kv "127.0.0.1:$P2"
start_servent s3 0 $DATA/s3.kv "127.0.0.1:$P4"
start_servent s5 0 $DATA/s5.kv "127.0.0.1:$P6"
start_servent s2 "$P2" $DATA/s2.kv "$(addr s3)"
start_servent s4 "$P4" $DATA/s4.kv "$(addr s5)"
start_servent s6 "$P6" $DATA/s6.kv
for s in s1 s6; do wait_links $s 1; done
for s in s2 s3 s4 s5; do wait_links $s 2; done
links=$(for s in s1 s2 s3 s4 s5 s6; do printf "%s=%s " $s "$(addr $s)"; done)
echo "all links up: ${links% }"
echo

ask ntp s1 "? ntp"
ask gopher s1 "? gopher"
ask topology s1 "T"
ask http s1 "? http"

echo
echo "checks:"
expect_answers ntp "? ntp: exactly one answer, from s5" "$(answer $DATA/s5.kv ntp s5)"

# s5's story for that query, found by its id (client ip:port#seq) in s1's trace.
id=$(query_id s1 ntp)
check "s1 traced the ntp query (id ${id:-?})" test -n "$id"
Q="\"query\":\"$id\""
n=$(wait_traced 1 s5 '"event":"dropped"' "$Q" '"reason":"ttl"')
check "s5 did not forward it: dropped, TTL spent (got $n)" same "$n" 1
n=$(traced s5 '"event":"received"' "$Q" '"type":"KEYFLOOD","ttl":0,')
check "s5 received the ntp query once, with TTL 0 (got $n)" same "$n" 1
n=$(traced s5 '"event":"answered"' "$Q")
check "s5 answered it (got $n)" same "$n" 1
n=$(traced s5 '"event":"sent"' "$Q" '"type":"KEYFLOOD"')
check "s5 sent no copy of it on (got $n)" same "$n" 0

expect_answers gopher "? gopher: no answer (only s6 has it)"
check "? gopher: the client says 'no answer received'" \
    grep -q "no answer received" "$WORK/gopher.err"

# T: each servent on the path answers with the path from s1 to itself.
path=""
want=()
for s in s1 s2 s3 s4 s5; do
    path="${path:+$path }$(addr $s)"
    want+=("$path $(addr $s)")
done
expect_answers topology "T: exactly 5 answers, s1..s5, each with its path from s1" "${want[@]}"

expect_answers http "? http: answers from s1, s3, s5; none from s6" \
    "$(answer $DATA/s1.kv http s1)" \
    "$(answer $DATA/s3.kv http s3)" \
    "$(answer $DATA/s5.kv http s5)"

# s6 heard nothing at all: every query of this run died at s5.
n=$(( $(traced s6 '"event":"received"' '"type":"KEYFLOOD"') + $(traced s6 '"event":"received"' '"type":"TOPOFLOOD"') ))
check "s6 never received a KEYFLOOD or TOPOFLOOD (got $n)" same "$n" 0
n=$(traced s5 '"event":"received"' '"type":"KEYFLOOD","ttl":0,')
check "s5 received all 3 key queries with TTL 0 (got $n)" same "$n" 3

n=$(flood_view | grep -c "s5 ($(addr s5))  TTL 0 .*\[TTL spent, not forwarded\]$" || true)
check "flood-view: all 4 queries reached s5 with TTL 0 and stopped there (got $n)" same "$n" 4

for s in s1 s2 s3 s4 s5 s6; do
    check_log_clean "$s"
done
show_floods
verdict
