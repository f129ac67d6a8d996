#!/usr/bin/env bash
# Topology 1, the diamond (topologia 1 do relatório: o losango s1–{s2,s3}–s4):
#
#          s2
#        /    \
#   s1 <        > s4          client on s1; s1 names s2 and s3, s2 and s3 name s4
#        \    /
#          s3
#
# Reliable flooding on a cycle: s4 hears every query twice (via s2 and via s3),
# handles the first copy and drops the second, so it answers once. The servents
# start in a mixed order: s1 first, while the neighbours it names do not exist yet
# (it keeps redialling), then s4, s3, s2. Ports: s1 and s4 take any free port (0);
# s2 and s3, named before they start, get ports reserved in advance.
#
# The client, one run per command so each answer belongs to one question, asks:
#   ? rtmp    only s4 has it: exactly one answer, from s4; s4's trace shows the query
#             received twice, answered once, one copy dropped as a duplicate (or, if
#             timing sends s4's copy round to s3 first, once, and s1 drops the echo)
#   ? motd    s1, s2 and s4 have it (not s3): one answer from each, with its value
#   T         all four answer, each with the path the query took from s1
#   ? xyzzy   nobody has it: no answer
# Data: data/diamond/*.kv (see data/README.md). Ends with PASS or FAIL: <reason>,
# and the floods drawn from the servents' traces (flood-view), servents named s1..s4.
# TIMEOUT=4 ./topologia1.sh waits as long as the assignment's client (default 1 s).

source "$(dirname "${BASH_SOURCE[0]}")/scripts/lib.sh" "$@"
DATA=data/diamond

echo "== Topology 1: diamond s1-{s2,s3}-s4 (client timeout ${TIMEOUT}s) =="
build
reserve_port P2
reserve_port P3

start_servent s1 0 $DATA/s1.kv "127.0.0.1:$P2" "127.0.0.1:$P3"
start_servent s4 0 $DATA/s4.kv
start_servent s3 "$P3" $DATA/s3.kv "$(addr s4)"
start_servent s2 "$P2" $DATA/s2.kv "$(addr s4)"
for s in s1 s2 s3 s4; do wait_links $s 2; done
echo "all links up: s1=$(addr s1) s2=$(addr s2) s3=$(addr s3) s4=$(addr s4)"
echo

ask rtmp s1 "? rtmp"
ask motd s1 "? motd"
ask topology s1 "T"
ask xyzzy s1 "? xyzzy"

echo
echo "checks:"
expect_answers rtmp "? rtmp: exactly one answer, from s4" \
    "$(answer $DATA/s4.kv rtmp s4)"

# s4's story for that query, found by its id (client ip:port#seq) in s1's trace.
id=$(query_id s1 rtmp)
check "s1 traced the rtmp query (id ${id:-?})" test -n "$id"
Q="\"query\":\"$id\""
heard=$(wait_traced 2 s4 '"event":"received"' "$Q" '"type":"KEYFLOOD"')
dropped=$(wait_traced 1 s4 '"event":"dropped"' "$Q" '"reason":"duplicate"')
answered=$(traced s4 '"event":"answered"' "$Q")
check "s4 answered it once (got $answered)" same "$answered" 1
if (( heard != 1 )); then
    check "s4 received it twice (got $heard) and dropped exactly one duplicate (got $dropped)" \
        same "$heard:$dropped" "2:1"
else
    # Legal under load: s1>s2>s4>s3 can beat s1>s3. s3 then takes s4's copy as its
    # first and sends it back to s1, which drops it; s4 hears the query only once.
    n=$(traced s1 '"event":"dropped"' "$Q" '"reason":"duplicate"')
    check "s4 received it once (s2 or s3 took s4's copy first); s1 dropped the echo ($dropped, $n)" \
        same "$dropped:$n" "0:1"
fi
# s1 sends 2 copies, s2, s3 and s4 forward 1 each: of these 5, 3 are firsts (at
# s2, s3, s4), the other 2 are dropped, wherever timing makes them land.
n=0
for s in s1 s2 s3 s4; do
    n=$(( n + $(traced $s '"event":"dropped"' "$Q" '"reason":"duplicate"') ))
done
check "2 duplicates dropped in the whole network (got $n)" same "$n" 2
for s in s1 s2 s3; do
    got=$(traced $s '"event":"received"' "$Q"):$(traced $s '"event":"dropped"' "$Q" '"reason":"duplicate"')
    n=$(( ${got%:*} - ${got#*:} )):$(traced $s '"event":"answered"' "$Q")
    check "$s handled the rtmp query once, without answering (handled:answered $n)" same "$n" "1:0"
done

expect_answers motd "? motd: one answer from each of s1, s2, s4, none from s3" \
    "$(answer $DATA/s1.kv motd s1)" \
    "$(answer $DATA/s2.kv motd s2)" \
    "$(answer $DATA/s4.kv motd s4)"

# T: each servent answers with the path from s1 to itself. s4 is reached through
# s2 or s3, whichever copy came first; both are correct.
A1=$(addr s1) A2=$(addr s2) A3=$(addr s3) A4=$(addr s4)
TOPO=$WORK/topology.out
check "T: 4 answers (got $(wc -l <"$TOPO"))" same "$(wc -l <"$TOPO")" 4
check "T: s1 answers '$A1'" grep -Fqx "$A1 $A1" "$TOPO"
check "T: s2 answers 's1 s2'" grep -Fqx "$A1 $A2 $A2" "$TOPO"
check "T: s3 answers 's1 s3'" grep -Fqx "$A1 $A3 $A3" "$TOPO"
check "T: s4 answers 's1 s2 s4' or 's1 s3 s4'" \
    grep -Fqx -e "$A1 $A2 $A4 $A4" -e "$A1 $A3 $A4 $A4" "$TOPO"

expect_answers xyzzy "? xyzzy: no answer"
check "? xyzzy: the client says 'no answer received'" \
    grep -q "no answer received" "$WORK/xyzzy.err"

# The traces tell the same story: flood-view's headline for the rtmp query.
line=$(flood_view --query "$id" | head -n 1)
check "flood-view: the rtmp query reached 4 servents, 1 answer, 2 duplicates dropped" \
    same "$line" "query $id, key \"rtmp\": 4 servents reached, 1 answer, 2 duplicates dropped"

for s in s1 s2 s3 s4; do
    check_log_clean "$s"
done
show_floods
verdict
