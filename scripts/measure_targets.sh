#!/usr/bin/env bash
# Measure every performance target against PyTorch and write results/targets/ (or OUT) from
# scratch: the runs go to a fresh OUT.new-XXXXXX, which replaces OUT once every run is complete,
# so OUT always holds one whole measurement. Needs torch beside convbench
# (pip install -e ".[yardstick]"). About 20 to 35 minutes on 2 cores, depending on the CPU.
#
#   scripts/measure_targets.sh [OUT]                         measure into a fresh directory
#   scripts/measure_targets.sh OUT --resume OUT.new-XXXXXX   finish an interrupted measurement
#   scripts/measure_targets.sh --quick [OUT]                 every run at tiny budgets, with im2col,
#                                                            numba and torch only, into
#                                                            runs/targets-quick (scripts/quick.sh)
#   scripts/measure_targets.sh OUT --reports                 rewrite OUT's reports and targets from its
#                                                            measurements with this checkout's code
set -euo pipefail
source "$(dirname "$0")/quick.sh"
quick_options "$@"; set -- "${args[@]}"
default=results/targets; [ "$quick" = 1 ] && default=runs/targets-quick
out=${1:-$default}
out=${out%/}
runs="seeds lenet5-b64 resnet18-b8 resnet18-b1 step-2t step-1t numba-first-step"
report_all() {  # every run's report, then the targets' table, plot and summary
    for r in $runs; do convbench report "$out/$r" "${report_budget[@]}" > /dev/null; done
    convbench targets $(for r in $runs; do echo "$out/$r"; done) --out "$out"
}
if [ "${2:-}" = "--reports" ]; then report_all; exit 0; fi
python -c "import torch" 2>/dev/null || { echo 'measure_targets.sh: needs torch (pip install -e ".[yardstick]")' >&2; exit 2; }
if [ "${2:-}" = "--resume" ]; then
    work=${3:?"--resume needs the interrupted directory (OUT.new-XXXXXX)"}
else
    mkdir -p "$(dirname "$out")"
    work=$(mktemp -d "$out.new-XXXXXX")
fi
echo "measuring into $work"
# auto's picks measured afresh for this measurement, unless the caller (reproduce.sh) chose a cache
export CONVBENCH_TUNING_CACHE="${CONVBENCH_TUNING_CACHE:-$(cd "$work" && pwd)/.tuning.json}"
ours=scipy,im2col,stride_tricks,numba,auto,torch
[ "$quick" = 1 ] && ours=$QUICK_BACKENDS,torch  # and the yardstick, which every target is against
run() {  # run NAME ARGS...: start the run, or finish it if an interrupted measurement began it
    local dir=$work/$1; shift
    if [ -f "$dir/plan.json" ]; then convbench run --out "$dir" --resume --quiet; else convbench run --out "$dir" --quiet "$@" "${run_budget[@]}" "${run_scope[@]}"; fi
}
step() {
    local dir=$work/$1; shift
    if [ -f "$dir/plan.json" ]; then convbench step --out "$dir" --resume --quiet; else convbench step --out "$dir" --quiet "$@" "${step_budget[@]}"; fi
}
dirs="--ops conv2d --directions forward,forward+backward --threads $sweep"
run seeds --suite seeds $dirs --backends $ours
run lenet5-b64 --suite lenet5 --batch 64 $dirs --backends $ours
run resnet18-b8 --suite resnet18 --batch 8 $dirs --backends $ours
run resnet18-b1 --suite resnet18 --ops conv2d --directions forward+backward --threads "$sweep" --backends scipy,torch
step step-2t --model seed002,lenet5 --threads 2 --backends $ours
step step-1t --model seed002,lenet5 --threads 1 --backends $ours
# numba's first lenet5 step in a fresh process, once its cache is warm (the warm-up run is thrown away;
# --quick's step-2t has just warmed it)
[ "$quick" = 1 ] || convbench step --model lenet5 --backends numba --rounds 1 --out "$(mktemp -d)/warm" --quiet
[ -f "$work/numba-first-step/plan.json" ] || convbench step --model lenet5 --backends numba --rounds 3 --out "$work/numba-first-step" --quiet

rm -f "$work"/.tuning.json*
rm -rf "$out"
mv "$work" "$out"
report_all
