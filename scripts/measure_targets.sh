#!/usr/bin/env bash
# Measure every performance target against PyTorch (needs `pip install torch` beside convbench)
# and write results/targets/. About 20 minutes on 2 cores. Re-running resumes unfinished runs.
set -euo pipefail
out=${1:-results/targets}
ours=scipy,im2col,stride_tricks,numba,auto,torch
mkdir -p "$out"
run() {  # run DIR ARGS...: start, or finish an interrupted run
    local dir=$out/$1; shift
    if [ -f "$dir/plan.json" ]; then convbench run --out "$dir" --resume --quiet; else convbench run --out "$dir" --quiet "$@"; fi
}
step() {
    local dir=$out/$1; shift
    if [ -f "$dir/plan.json" ]; then convbench step --out "$dir" --resume --quiet; else convbench step --out "$dir" --quiet "$@"; fi
}
dirs="--ops conv2d --directions forward,forward+backward --threads 1,2"
run seeds --suite seeds $dirs --backends $ours
run lenet5-b64 --suite lenet5 --batch 64 $dirs --backends $ours
run resnet18-b8 --suite resnet18 --batch 8 --match _conv $dirs --backends im2col,stride_tricks,numba,auto,torch
step step-2t --model seed002,lenet5 --threads 2 --backends $ours
step step-1t --model seed002,lenet5 --threads 1 --backends $ours
# numba's first lenet5 step in a fresh process, once its cache is warm (the warm-up run is thrown away)
convbench step --model lenet5 --backends numba --rounds 1 --out "$(mktemp -d)/warm" --quiet
[ -f "$out/numba-first-step/plan.json" ] || convbench step --model lenet5 --backends numba --rounds 3 --out "$out/numba-first-step" --quiet
for run in seeds lenet5-b64 resnet18-b8 step-2t step-1t; do convbench report "$out/$run" > /dev/null; done
convbench targets "$out"/seeds "$out"/lenet5-b64 "$out"/resnet18-b8 "$out"/step-2t "$out"/step-1t "$out"/numba-first-step --out "$out"
