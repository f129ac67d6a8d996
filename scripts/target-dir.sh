# shellcheck shell=bash
# target_dir: cargo's target dir, as cargo sees it (CARGO_TARGET_DIR, a
# build.target-dir in a cargo config, or ROOT/target), so the scripts find the
# binaries wherever cargo put them. Sourced by lib.sh and netns-topology.sh; needs
# ROOT (the repository) set.
target_dir() {
    local meta dir=""
    if command -v cargo >/dev/null &&
        meta=$(cd "$ROOT" && cargo metadata --format-version 1 --no-deps 2>/dev/null); then
        dir=$(printf '%s' "$meta" | grep -o '"target_directory":"[^"]*"' | head -n 1 |
            sed 's/^"target_directory":"//; s/"$//') || true
    fi
    [[ -n $dir ]] || dir=${CARGO_TARGET_DIR:-$ROOT/target}
    [[ $dir == /* ]] || dir=$ROOT/$dir
    echo "$dir"
}
