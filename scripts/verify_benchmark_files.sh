#!/usr/bin/env bash
# The pytest-benchmark path verified like a kernel: the same code benchmarked twice
# (`-k seed002`: every backend's seed002 problems and training step), compared, PAIRS times.
# Usage: bash scripts/verify_benchmark_files.sh OUT [PAIRS]   (OUT must not exist; PAIRS default 3)
# About 1 minute a pair on 2 cores. Run it on an otherwise idle machine.
set -uo pipefail
OUT=${1:?usage: verify_benchmark_files.sh OUT [PAIRS]}
PAIRS=${2:-3}
command -v convbench > /dev/null || { echo "convbench is not on PATH: activate the environment it is installed in" >&2; exit 2; }
if [ -e "$OUT" ]; then echo "$OUT exists; choose another" >&2; exit 2; fi
mkdir -p "$OUT"
TESTS="$(dirname "$0")/../tests/benchmarks"
for pair in $(seq 1 "$PAIRS"); do
  for side in a b; do
    python -m pytest "$TESTS" --benchmark-only -k seed002 -q -p no:cacheprovider \
      --benchmark-json="$OUT/bench-$pair$side.json" > /dev/null
  done
  convbench compare "$OUT/bench-${pair}a.json" "$OUT/bench-${pair}b.json" --threshold 0.10 > "$OUT/compare-bench-$pair.md"
  echo "compare bench-${pair}a bench-${pair}b: exit $?"
done
gzip -9 "$OUT"/bench-*.json  # about 2 MB of raw call times each; `gunzip -k` them to compare again
