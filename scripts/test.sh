#!/usr/bin/env bash
# Every test: the two topology scripts (real processes, PASS/FAIL), then `cargo test`
# (codec, flooding simulation, end-to-end and interoperability tests), then a smoke run
# of the benchmarks (their correctness checks, not their speed), stopping at the first
# part that fails. It builds what it needs; on a 2-core machine the whole run takes
# about 5 minutes, most of it compiling and `cargo test`.
#
# Usage: scripts/test.sh [--help]
#
# It needs python3 (an independent implementation of the protocol, for the
# interoperability tests). A test whose tool or privilege is missing passes without
# running and says so in one `SKIPPED: ...` line on stderr:
#   tmux    the client at a real terminal (tests/terminal.rs)
#   tshark  the Wireshark dissector (tests/wireshark.rs)
#   dot     Graphviz accepting flood-view's pictures (tests/traces.rs, flood_view.rs)
#   root    servents on separate hosts in network namespaces (tests/netns.rs, also
#           needs iproute2's `ip`), and the live Wireshark capture of a diamond
#           (tests/wireshark.rs, also needs tshark)
# So it passes for a user who is not root.
#
# Environment:
#   TP3KV_REQUIRE_ROOT=1  the tests that need root fail instead of skipping (CI, which
#                         runs as root, sets it in .ci/run)
#
# Exit status: 0 if everything passed, non-zero at the first part that failed
# (2 on a usage error).
set -euo pipefail
cd "$(dirname "$0")/.."

case ${1:-} in
"") ;;
-h | --help)
    sed -n '2,/^[^#]/{/^#/!q; s/^# \{0,1\}//; p}' "$0"
    exit 0
    ;;
*)
    echo "test.sh: error: unknown argument '$1' (it takes none; see --help)" >&2
    exit 2
    ;;
esac

./topologia1.sh
./topologia2.sh
cargo test
cargo test --bench perf
cargo test --bench sim
