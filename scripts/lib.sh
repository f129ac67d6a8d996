# shellcheck shell=bash
# Shared helpers for topologia1.sh and topologia2.sh (sourced, not run).
#
# They start real servents in the background, each with its stdout and its log
# (stderr, RUST_LOG=debug) in a private temp dir, drive the client with scripted
# commands, and check what came back. Every process started here is killed, and the
# temp dir removed, on exit, on Ctrl-C and on TERM (kept, and named, after a FAIL
# or with KEEP_LOGS=1).
#
# Every servent also writes a trace (`--trace`), kept after the run in TRACES
# (default <cargo's target dir>/traces/<script name>/), and `show_floods` draws them
# with flood-view.
#
# The script's own arguments are read here: --help (its header comment, then the
# options and environment below), --no-build; anything else is a usage error (2).

set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SCRIPT=$(basename "$0")
NO_BUILD=0

# usage: the calling script's header comment (what it builds and checks), then what
# every topology script takes.
usage() {
    sed -n '2,/^[^#]/{/^#/!q; s/^# \{0,1\}//; p}' "$0"
    cat <<EOF

Usage: ./$SCRIPT [--no-build] [--help]

Options:
  --no-build   use the release binaries as they are, without running cargo build
  -h, --help   print this help and exit

Environment:
  TIMEOUT=S         the client's --timeout, seconds (default 1)
  START_TIMEOUT=S   how long to wait for a servent to listen or its links (default 10)
  RUST_LOG=FILTER   the servents' log level (default debug)
  KEEP_LOGS=1       keep the run's temp dir and print where it is; it is kept
                    anyway after a FAIL. It holds each servent's log and stdout
                    (s1.log, s1.out, ...) and each client run's stdout and stderr,
                    named after its command: "? KEY" in KEY.out and KEY.err
                    ("? rtmp": rtmp.out), "T" in topology.out and topology.err
  TRACES=DIR        where the servents' traces and the pictures go (default
                    <target dir>/traces/${SCRIPT%.sh})
  CARGO_TARGET_DIR  cargo's target dir: the binaries are taken from its release/
  TMPDIR            where the temp dir goes (default /tmp)

Exit status: 0 on PASS, 1 on FAIL, 2 on a usage error.
EOF
}

while (($#)); do
    case $1 in
    -h | --help)
        usage
        exit 0
        ;;
    --no-build) NO_BUILD=1 ;;
    *)
        echo "$SCRIPT: error: unknown argument '$1' (see ./$SCRIPT --help)" >&2
        exit 2
        ;;
    esac
    shift
done

cd "$ROOT"

# shellcheck source=scripts/target-dir.sh
source "$ROOT/scripts/target-dir.sh"
TARGET=$(target_dir)
SERVENT=$TARGET/release/servent
CLIENT=$TARGET/release/client
FLOOD_VIEW=$TARGET/release/flood-view
TRACES=${TRACES:-$TARGET/traces/${SCRIPT%.sh}}
TIMEOUT=${TIMEOUT:-1}
START_TIMEOUT=${START_TIMEOUT:-10}
export RUST_LOG=${RUST_LOG:-debug}

WORK=$(mktemp -d "${TMPDIR:-/tmp}/tp3kv.XXXXXX")
PORT_LOCKS=${TMPDIR:-/tmp}/tp3kv-port-locks
LOCKS=()          # port reservations held, released by cleanup
FAILS=()          # failed checks
declare -A PORT   # servent name -> listening port
declare -A NAME   # "127.0.0.1:port" -> servent name

# shellcheck source=scripts/cleanup.sh
source "$ROOT/scripts/cleanup.sh"
cleanup_more() {
    local lock
    for lock in "${LOCKS[@]}"; do rm -rf "$lock"; done
}

# Build (or check) the release binaries, with cargo's own progress shown (it does
# nothing if they are fresh); --no-build only checks they are there.
build() {
    if ((NO_BUILD)); then
        echo "using the release binaries in $TARGET/release as they are (--no-build)"
    elif command -v cargo >/dev/null; then
        echo "building the release binaries (cargo build --release, into $TARGET)"
        cargo build --release || die "cargo build failed"
    else
        echo "cargo not found: using the release binaries in $TARGET/release"
    fi
    [[ -x $SERVENT && -x $CLIENT && -x $FLOOD_VIEW ]] ||
        die "no servent, client and flood-view in $TARGET/release (build them with cargo build --release)"
    rm -rf "$TRACES"
    mkdir -p "$TRACES"
}

# reserve_port VAR: a free port for a servent that is named as a neighbour before
# it starts. Chosen below the kernel's ephemeral range, so no port-0 socket (or an
# outgoing connection, which could connect to itself) can take it meanwhile, and
# locked with mkdir so two runs of these scripts at once never pick the same one.
reserve_port() {
    local low _ p tries
    read -r low _ </proc/sys/net/ipv4/ip_local_port_range 2>/dev/null || low=32768
    (( low > 11024 )) || low=32768
    # Shared by every user of the machine (sticky, like /tmp); if another user's older
    # run made it private, this user's own. One this user made private (older versions
    # of these scripts created it 0755) is opened up for the others.
    mkdir -p -m 1777 "$PORT_LOCKS" 2>/dev/null || true
    if [[ -d $PORT_LOCKS && -O $PORT_LOCKS && ! -L $PORT_LOCKS &&
        $(stat -c %a "$PORT_LOCKS" 2>/dev/null) != 1777 ]]; then
        chmod 1777 "$PORT_LOCKS" 2>/dev/null || true
    fi
    if [[ ! -w $PORT_LOCKS ]]; then
        PORT_LOCKS=$PORT_LOCKS-$(id -u)
        mkdir -p "$PORT_LOCKS" || die "cannot create $PORT_LOCKS for port reservations"
    fi
    for tries in $(seq 50); do
        p=$(( low - 10000 + RANDOM % 10000 ))
        # Skip a port any local socket already uses (hex in /proc/net/tcp*).
        if grep -qi ":$(printf '%04X' "$p") " /proc/net/tcp /proc/net/tcp6 2>/dev/null; then
            continue
        fi
        if mkdir "$PORT_LOCKS/$p" 2>/dev/null; then
            LOCKS+=("$PORT_LOCKS/$p")
            printf -v "$1" '%s' "$p"
            return 0
        fi
    done
    die "no free port found to reserve after $tries tries"
}

# start_servent NAME PORT KVFILE [NEIGHBOUR...]: start a servent in the background
# (PORT 0: any free port) and wait for its `listening on` line; sets PORT[NAME].
start_servent() {
    local name=$1 port=$2 kv=$3 pid line got i
    shift 3
    echo "starting $name on port $port with $kv${*:+, neighbours: $*}"
    "$SERVENT" --trace "$TRACES/$name.jsonl" "$port" "$kv" "$@" \
        >"$WORK/$name.out" 2>"$WORK/$name.log" &
    pid=$!
    PIDS+=("$pid")
    for (( i = 0; i < START_TIMEOUT * 20; i++ )); do
        line=$(grep -m1 '^listening on ' "$WORK/$name.out" || true)
        if [[ -n $line ]]; then
            got=${line##*:}
            [[ $port == 0 || $got == "$port" ]] || die "$name listens on $got, not $port"
            PORT[$name]=$got
            NAME[127.0.0.1:$got]=$name
            return 0
        fi
        if ! kill -0 "$pid" 2>/dev/null; then
            die "$name exited before listening: $(tail -n 3 "$WORK/$name.log")"
        fi
        sleep 0.05
    done
    die "$name printed no 'listening on' line in ${START_TIMEOUT}s"
}

addr() { echo "127.0.0.1:${PORT[$1]}"; }

# count PATTERN FILE: how many lines match the extended regex (0 if none).
count() { grep -cE -- "$1" "$2" || true; }

# check_log_clean NAME: NAME's log has no warning or error, but for a neighbour that
# was not listening yet when NAME started (the scripts start servents in any order);
# each of those must have come up.
check_log_clean() {
    local name=$1 log="$WORK/$1.log" n warned up
    warned=$(count ' WARN  neighbour .* unreachable \(connection refused\); retrying' "$log")
    n=$(( $(count ' (WARN|ERROR) ' "$log") - warned ))
    check "$name logged no warning or error (got $n)" same "$n" 0
    if [ "$warned" -gt 0 ]; then
        up=$(count 'connected to neighbour .*, up after ' "$log")
        check "$name: each neighbour it found not yet listening came up ($up of $warned)" \
            same "$up" "$warned"
    fi
}

# wait_links NAME DEGREE: wait until NAME has DEGREE neighbour links up, counting
# the ones it dialled ("connected to neighbour") and the ones that dialled it and
# said ID(0) ("is a neighbour servent").
wait_links() {
    local name=$1 degree=$2 i n=0
    for (( i = 0; i < START_TIMEOUT * 20; i++ )); do
        n=$(count 'link [0-9]+: (connected to neighbour |.* is a neighbour servent$)' \
            "$WORK/$name.log")
        (( n >= degree )) && return 0
        sleep 0.05
    done
    die "$name has $n of its $degree neighbour links after ${START_TIMEOUT}s"
}

# ask STEP NAME COMMAND...: run a client on servent NAME with these commands (one per
# line), keep its stdout in $WORK/STEP.out and stderr in $WORK/STEP.err, and print
# the exchange; each answer is tagged with the servent its IP:PORT belongs to. STEP
# is the key asked for (`? rtmp`: rtmp), or `topology` for `T`, as --help says.
ask() {
    local step=$1 name=$2 line cmd rc=0
    shift 2
    printf '%s\n' "$@" |
        "$CLIENT" --lang en --timeout "$TIMEOUT" "$(addr "$name")" >"$WORK/$step.out" 2>"$WORK/$step.err" ||
        rc=$?
    for cmd in "$@"; do printf 'client on %s> %s\n' "$name" "$cmd"; done
    while IFS= read -r line; do
        printf '    %s   <- %s\n' "$line" "${NAME[${line##* }]:-unknown servent}"
    done <"$WORK/$step.out"
    while IFS= read -r line; do printf '    [stderr] %s\n' "$line"; done <"$WORK/$step.err"
    (( rc == 0 )) || echo "    [client exit status $rc]"
}

# kv_value FILE KEY: the value FILE gives KEY, as the servent reads it (first word is
# the key, the rest trimmed is the value, '#'-first and blank lines skipped, last wins).
kv_value() {
    awk -v k="$2" '/^#/ { next } $1 == k { v = $0; sub(/^[ \t]*[^ \t]+[ \t]*/, "", v)
        sub(/[ \t\r]+$/, "", v); found = 1 } END { if (found) print v }' "$1"
}

# answer FILE KEY NAME: the client line expected when servent NAME answers KEY.
answer() { echo "$(kv_value "$1" "$2") $(addr "$3")"; }

# query_id NAME KEY: "ip:port#seq" of the (first) query for KEY that servent NAME
# got from a client, as its trace names it.
query_id() {
    grep -F '"type":"KEYREQ"' "$TRACES/$1.jsonl" 2>/dev/null | grep -F "\"key\":\"$2\"" |
        grep -m1 -o '"query":"[^"]*"' | cut -d'"' -f4 || true
}

# traced NAME WORDS...: how many lines of servent NAME's trace hold every one of the
# WORDS (fixed strings, e.g. '"event":"dropped"' '"reason":"duplicate"'); 0 if none.
# The traces, not the logs: their words are the schema, not a log line's wording.
traced() {
    local name=$1 word lines
    shift
    lines=$(cat "$TRACES/$name.jsonl" 2>/dev/null || true)
    for word; do lines=$(grep -F -- "$word" <<<"$lines" || true); done
    if [[ -n $lines ]]; then wc -l <<<"$lines"; else echo 0; fi
}

# wait_traced N NAME WORDS...: wait (up to 2 s) for N such trace lines; print the
# count. A trace is written once per loop turn, so it can lag the client a little,
# e.g. a duplicate dropped after the answer.
wait_traced() {
    local want=$1 i n
    shift
    for (( i = 0; i < 40; i++ )); do
        n=$(traced "$@")
        (( n >= want )) && break
        sleep 0.05
    done
    echo "$n"
}

# flood_view ARGS...: flood-view on every trace of this run, servents named s1, s2...
flood_view() {
    local name args=()
    for name in "${!PORT[@]}"; do args+=(--name "$(addr "$name")=$name"); done
    "$FLOOD_VIEW" "${args[@]}" "$@" "$TRACES"/*.jsonl
}

# show_floods: every query of the run drawn from the traces, and where they are kept;
# floods.dot beside them (and floods.svg, if Graphviz is installed), and one picture
# per query in queries/. The closing lines say where the picture is, or, without
# Graphviz, how to draw it.
show_floods() {
    echo
    echo "floods, as the servents' traces tell them (flood-view $TRACES/*.jsonl):"
    flood_view | sed 's/^./  &/'
    flood_view --dot >"$TRACES/floods.dot"
    flood_view --split "$TRACES/queries" >/dev/null
    rm -f "$TRACES/floods.svg"
    if command -v dot >/dev/null; then
        dot -Tsvg "$TRACES/floods.dot" >"$TRACES/floods.svg" 2>/dev/null ||
            rm -f "$TRACES/floods.svg"
    fi
    echo "  traces kept in $TRACES/"
    echo "  with floods.dot (every query, a Graphviz digraph) and queries/ (one per query);"
    if [[ -s $TRACES/floods.svg ]]; then
        echo "  the picture: $TRACES/floods.svg"
    elif command -v dot >/dev/null; then
        echo "  no floods.svg: Graphviz's dot failed on floods.dot"
    else
        echo "  no floods.svg, as Graphviz's dot is not installed; with it, draw them with"
        echo "  dot -Tsvg $TRACES/floods.dot > floods.svg"
    fi
}

# Checks: print ok/FAIL lines and remember failures for the verdict.
pass() { printf '  ok    %s\n' "$1"; }
fail() { printf '  FAIL  %s\n' "$1"; FAILS+=("$1"); }
check() { # check DESCRIPTION COMMAND...: pass if the command succeeds
    local what=$1
    shift
    if "$@"; then pass "$what"; else fail "$what"; fi
}
same() { [[ $1 == "$2" ]]; }

# expect_answers STEP DESCRIPTION LINE...: the client printed exactly these lines
# (in any order) on stdout.
expect_answers() {
    local step=$1 what=$2
    shift 2
    local got want
    got=$(sort "$WORK/$step.out")
    want=$(if (( $# )); then printf '%s\n' "$@" | sort; fi)
    if [[ $got == "$want" ]]; then
        pass "$what"
    else
        fail "$what"
        printf '        expected: %s\n' "${want:-(nothing)}" | sed '2,$s/^/                  /'
        printf '        got:      %s\n' "${got:-(nothing)}" | sed '2,$s/^/                  /'
    fi
}

# verdict: the final PASS / FAIL line, and the exit status.
verdict() {
    echo
    if (( ${#FAILS[@]} == 0 )); then
        echo "PASS"
        exit 0
    fi
    local reasons
    KEEP_LOGS=1
    printf -v reasons '%s; ' "${FAILS[@]}"
    echo "FAIL: ${reasons%; }"
    exit 1
}
