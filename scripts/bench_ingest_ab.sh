#!/usr/bin/env bash
# Compares the OTLP ingestion of two tracebox builds by alternating runs of
# `tracebox bench ingest` (A, B, A, B, ...), each on a fresh data directory.
#
# Why alternating: on a shared VM the same binary's CPU per span drifts by
# 10-30% within the hour, so two builds measured one after the other compare
# the hours, not the builds. Alternating pairs see the same drift; compare
# the means (and `server_cpu_us_per_span` more than spans/s).
#
#   scripts/bench_ingest_ab.sh BIN_A BIN_B [PAIRS=5] [SPANS=200000] [-- bench args]
#
# Keep copies of the binaries (e.g. cp target/release/tracebox /tmp/tb-new):
# a rebuild in between would otherwise change what is measured.
set -euo pipefail

if [[ $# -lt 2 ]]; then
    # The header comment above is the usage.
    awk 'NR > 1 && /^#/ { sub(/^# ?/, ""); print; next } NR > 1 { exit }' "$0"
    exit 2
fi
a=$1 b=$2
shift 2
pairs=5 spans=200000
if [[ $# -gt 0 && $1 != -- ]]; then pairs=$1; shift; fi
if [[ $# -gt 0 && $1 != -- ]]; then spans=$1; shift; fi
[[ $# -gt 0 && $1 == -- ]] && shift
extra=("$@")

results=$(mktemp)
trap 'rm -f "$results"' EXIT

for ((i = 1; i <= pairs; i++)); do
    for side in A B; do
        bin=$a
        [[ $side == B ]] && bin=$b
        dir=$(mktemp -d "${TMPDIR:-/tmp}/tracebox-ab.XXXXXX")
        line=$("$bin" bench ingest --spans "$spans" --data "$dir" --json "${extra[@]}" 2>"$dir.err" | tail -n 1) || true
        if [[ $line != "{"* ]]; then
            echo "$bin bench ingest failed:" >&2
            tail -n 5 "$dir.err" >&2
            rm -rf "$dir" "$dir.err"
            exit 1
        fi
        rm -rf "$dir" "$dir.err"
        echo "$side $line" >>"$results"
        python3 - "$side" "$line" "$i" <<'EOF'
import json, sys
side, j, pair = sys.argv[1], json.loads(sys.argv[2]), sys.argv[3]
print(f"pair {pair} {side}: {j['spans_per_s']:8.0f} spans/s  {j['server_cpu_us_per_span']:6.1f} us/span  "
      f"peak RSS {j['peak_rss_bytes'] / 1e6:4.0f} MB")
EOF
    done
done

python3 - "$results" "$a" "$b" <<'EOF'
import json, statistics, sys
runs = {"A": [], "B": []}
for line in open(sys.argv[1]):
    side, rest = line.split(" ", 1)
    runs[side].append(json.loads(rest))
means = {}
for side, name in (("A", sys.argv[2]), ("B", sys.argv[3])):
    rs = runs[side]
    rate = [r["spans_per_s"] for r in rs]
    cpu = [r["server_cpu_us_per_span"] for r in rs]
    means[side] = (statistics.mean(rate), statistics.mean(cpu))
    print(f"{side} ({name}): {len(rs)} runs, spans/s mean {means[side][0]:,.0f} "
          f"(min {min(rate):,.0f}, max {max(rate):,.0f}), server CPU per span mean "
          f"{means[side][1]:.1f} us")
(ra, ca), (rb, cb) = means["A"], means["B"]
print(f"B vs A: spans/s {100 * (rb / ra - 1):+.1f}%, CPU per span {100 * (cb / ca - 1):+.1f}%")
EOF
