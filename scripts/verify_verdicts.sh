#!/usr/bin/env bash
# The measuring code verified like a kernel: A/A five times on a quiet machine, A/A with a busy
# neighbour, a 1.25x slowdown of one backend caught by two runs (twice) and by `convbench ab`,
# A/A through `convbench ab` (layers and LeNet-5 training steps), the pytest-benchmark path three times, and what makes processes
# differ (scripts/process_spread.py). Every run measures each row in 3 processes (the default).
# Usage: bash scripts/verify_verdicts.sh OUT [--slowed | SCRATCH_REVISION] [--quick]
#   OUT (must not exist) receives the run directories and compare-*.md;
#   --slowed: make a commit whose im2col is 1.25x slower (HEAD plus tests/slowed.py's wrapper,
#   written with git plumbing: no branch, the working tree untouched) and measure it against
#   HEAD with `convbench ab`; SCRATCH_REVISION: such a commit made by hand; left out, no ab step;
#   --quick: every run at tiny budgets (scripts/quick.sh), each check once, without numba, to
#   check the script; its verdicts mean nothing;
#   --ab-only: only the checks through `convbench ab` (with --slowed or SCRATCH_REVISION), for a
#   change to ab's code alone (about 35 minutes).
#   OUT --reports: every comparison of OUT written again from its runs with this checkout's code
#   (after a change to compare's tables; the measurements stay as they are).
# About 70 minutes on 2 cores. Run it on an otherwise idle machine.
set -euo pipefail  # a run that fails stops the script; compare's verdicts (exit 0 or 1) are recorded
source "$(dirname "$0")/quick.sh"
ab_only=0; kept=()
for a in "$@"; do if [ "$a" = --ab-only ]; then ab_only=1; else kept+=("$a"); fi; done
quick_options "${kept[@]}"; set -- "${args[@]}"
OUT=${1:?usage: verify_verdicts.sh OUT [--slowed | SCRATCH_REVISION] [--quick]}
SCRATCH=${2:-}
command -v convbench > /dev/null || { echo "convbench is not on PATH: activate the environment it is installed in" >&2; exit 2; }
if [ "$ab_only" = 1 ] && [ -z "$SCRATCH" ]; then echo "--ab-only needs --slowed or SCRATCH_REVISION" >&2; exit 2; fi
if [ "$SCRATCH" = "--reports" ]; then :
elif [ -e "$OUT" ]; then echo "$OUT exists; choose another" >&2; exit 2; fi
mkdir -p "$OUT"
if [ "$SCRATCH" = "--slowed" ]; then  # HEAD with im2col 1.25x slower, as a dangling commit
  index=$(mktemp); file=$(mktemp --suffix=.py)
  git show HEAD:kernels/im2col.py > "$file"
  python "$(dirname "$0")/../tests/slowed.py" --write "$file" 0.25
  GIT_INDEX_FILE=$index git read-tree HEAD
  GIT_INDEX_FILE=$index git update-index --cacheinfo "100644,$(git hash-object -w "$file"),kernels/im2col.py"
  SCRATCH=$(git -c user.name=convbench -c user.email=scratch@convbench.invalid \
    commit-tree "$(GIT_INDEX_FILE=$index git write-tree)" -p HEAD -m "scratch: im2col 1.25x slower")
  rm -f "$index" "$file"
  echo "slowed commit: $SCRATCH"
fi
backends=im2col,numba,stride_tricks
# --quick leaves numba out: `convbench ab` compiles it afresh in each revision's new worktree (25 s)
[ "$quick" = 1 ] && backends=im2col,stride_tricks
ARGS=(--suite seeds,lenet5 --backends "$backends" --threads 2 --quiet "${run_budget[@]}" "${run_scope[@]}")
verdict() {  # verdict NAME COMMAND...: COMMAND's report to OUT/NAME.md; its exit shown, and fatal above 1
  local status=0
  "${@:2}" > "$OUT/$1.md" || status=$?
  echo "$1: exit $status"
  [ "$status" -le 1 ] || { echo "verify_verdicts.sh: ${*:2} failed" >&2; exit "$status"; }
}
compare() { verdict "compare-$1-$2" convbench compare "$OUT/$1" "$OUT/$2" --threshold 0.10; }
if [ "$SCRATCH" = "--reports" ]; then  # compare-X-Y.md from runs X and Y; compare-AB.md from AB/a and AB/b
  for f in "$OUT"/compare-*.md; do
    pair=$(basename "$f" .md); pair=${pair#compare-}
    if [ -d "$OUT/$pair/a" ]; then verdict "compare-$pair" convbench compare "$OUT/$pair/a" "$OUT/$pair/b" --threshold 0.10
    else compare "${pair%-*}" "${pair#*-}"; fi
  done
  bash "$(dirname "$0")/verify_benchmark_files.sh" "$OUT/benchmark-files" --reports
  exit 0
fi
pairs=5
if [ "$quick" = 1 ]; then pairs=1; fi
if [ "$ab_only" = 0 ]; then
for n in $(seq 1 $((2 * pairs))); do convbench run "${ARGS[@]}" --out "$OUT/R$n"; done
for n in $(seq 1 2 $((2 * pairs))); do compare "R$n" "R$((n + 1))"; done   # A/A, quiet
python -c "while True: pass" & SPIN=$!  # a busy neighbour on one core
trap 'kill $SPIN 2>/dev/null || true' EXIT
convbench run "${ARGS[@]}" --out "$OUT/L1"
kill $SPIN
compare "R$((2 * pairs))" L1   # A/A, the second run with one core kept busy
for n in 1 2; do  # power: im2col 1.25x slower, each against a quiet run of its own (--quick: R1's)
  if [ "$quick" = 1 ]; then ln -s R1 "$OUT/P$n"; else convbench run "${ARGS[@]}" --out "$OUT/P$n"; fi
  python "$(dirname "$0")/../tests/slowed.py" im2col 0.25 run "${ARGS[@]}" --out "$OUT/S$n"
  compare "P$n" "S$n"
  if [ "$quick" = 1 ]; then break; fi
done
fi
if [ -n "$SCRATCH" ]; then
  verdict compare-ab convbench ab HEAD "$SCRATCH" "${ARGS[@]}" --out "$OUT/ab"            # power through ab
  verdict compare-ab-aa convbench ab HEAD HEAD "${ARGS[@]}" --out "$OUT/ab-aa"            # A/A through ab
  verdict compare-ab-steps convbench ab HEAD HEAD --model lenet5 --backends "$backends" --threads 2 --quiet \
    "${step_budget[@]}" --out "$OUT/ab-steps"                                                  # A/A of training steps
fi
[ "$ab_only" = 1 ] && exit 0
# the pytest-benchmark path: the same code benchmarked twice, compared, three times
bash "$(dirname "$0")/verify_benchmark_files.sh" "$OUT/benchmark-files" "$([ "$quick" = 1 ] && echo 1 || echo 3)" "${quick_flag[@]}"
# what makes one process run a row at another speed than the next (docs/methodology.md)
python "$(dirname "$0")/process_spread.py" "$OUT/process-spread.jsonl" "${quick_flag[@]}"
