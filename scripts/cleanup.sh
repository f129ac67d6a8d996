# shellcheck shell=bash
# Leave nothing behind (sourced by the demo scripts). On exit, Ctrl-C or TERM: every
# pid in PIDS gets TERM, then KILL if still there after 1 s; the script's own
# `cleanup_more` runs if it defines one; WORK is removed, or kept and named after a
# FAIL or with KEEP_LOGS=1. `die` reports a failed set-up and exits through it.

PIDS=()

cleanup() {
    local pid _ alive=0
    trap - EXIT INT TERM
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in 1 2 3 4 5 6 7 8 9 10; do
        alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    if ((alive)); then
        for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    fi
    wait 2>/dev/null || true
    if declare -F cleanup_more >/dev/null; then cleanup_more; fi
    if [[ -n ${WORK:-} ]]; then
        if [[ ${KEEP_LOGS:-0} == 1 ]]; then
            echo "logs kept in $WORK"
        else
            rm -rf "$WORK"
        fi
    fi
}
trap cleanup EXIT
trap 'echo "interrupted" >&2; exit 130' INT
trap 'echo "terminated" >&2; exit 143' TERM

die() {
    KEEP_LOGS=1
    echo "FAIL: $*"
    exit 1
}
