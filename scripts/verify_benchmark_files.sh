#!/usr/bin/env bash
# The pytest-benchmark path verified like a kernel: the same code benchmarked twice
# (`-k seed002`: every backend's seed002 problems and training step), compared, PAIRS times.
# Usage: bash scripts/verify_benchmark_files.sh OUT [PAIRS] [--quick]   (OUT must not exist; PAIRS default 3;
# --quick: tiny budgets, scripts/quick.sh). About 1 minute a pair on 2 cores. Run it on an otherwise idle machine.
# bash scripts/verify_benchmark_files.sh OUT --reports: OUT's comparisons written again from its files.
set -euo pipefail
source "$(dirname "$0")/quick.sh"
quick_options "$@"; set -- "${args[@]}"
OUT=${1:?usage: verify_benchmark_files.sh OUT [PAIRS] [--quick]}
PAIRS=${2:-3}
command -v convbench > /dev/null || { echo "convbench is not on PATH: activate the environment it is installed in" >&2; exit 2; }
compare() {  # compare PAIR A B: A against B into OUT/compare-bench-PAIR.md; 1 is a verdict, 2 a failure
  local status=0
  convbench compare "$2" "$3" --threshold 0.10 > "$OUT/compare-bench-$1.md" || status=$?
  echo "compare bench-${1}a bench-${1}b: exit $status"
  [ "$status" -le 1 ] || exit "$status"
}
if [ "$PAIRS" = "--reports" ]; then
  scratch=$(mktemp -d); trap 'rm -rf "$scratch"' EXIT
  for f in "$OUT"/compare-bench-*.md; do
    pair=$(basename "$f" .md); pair=${pair#compare-bench-}
    for side in a b; do gunzip -c "$OUT/bench-$pair$side.json.gz" > "$scratch/bench-$pair$side.json"; done
    compare "$pair" "$scratch/bench-${pair}a.json" "$scratch/bench-${pair}b.json"
  done
  exit 0
fi
if [ -e "$OUT" ]; then echo "$OUT exists; choose another" >&2; exit 2; fi
mkdir -p "$OUT"
TESTS="$(dirname "$0")/../tests/benchmarks"
for pair in $(seq 1 "$PAIRS"); do
  for side in a b; do
    python -m pytest "$TESTS" --benchmark-only -k seed002 -q -p no:cacheprovider "${pytest_budget[@]}" \
      --benchmark-json="$OUT/bench-$pair$side.json" > /dev/null
  done
  compare "$pair" "$OUT/bench-${pair}a.json" "$OUT/bench-${pair}b.json"
done
gzip -9 "$OUT"/bench-*.json  # about 2 MB of raw call times each; `gunzip -k` them to compare again
