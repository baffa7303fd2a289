#!/usr/bin/env bash
# Regenerate every measurement under results/ at one commit, from scratch: the parts go to a
# fresh OUT.new-XXXXXX, which replaces OUT (default results) once every part is complete, so OUT
# always holds one whole, consistent set; then the figures in README.md and docs/ are rewritten
# from it (scripts/docs_figures.py). About 90 minutes (Intel Xeon) to 2.5 hours (first-generation AMD EPYC) on 2 cores; run it on an idle machine.
#
#   bash scripts/reproduce.sh [OUT]                          measure everything into a fresh OUT
#   bash scripts/reproduce.sh OUT --resume OUT.new-XXXXXX    finish an interrupted reproduction
#   bash scripts/reproduce.sh --quick [OUT]                  every part at tiny budgets, on a few
#       problems and backends (scripts/quick.sh), into runs/reproduce-quick: checks the script in minutes
#   bash scripts/reproduce.sh [OUT] --reports                every report, plot and comparison of OUT
#       written again from its measurements with this checkout's code (after a change to them; a few
#       minutes): OUT/README.md then names both commits
#
# auto picks afresh, in a tuning cache of the reproduction's own: a pick cached by older code is
# never measured as this commit's.
# Needs: a clean git checkout (the commit is the results' version), torch beside convbench
# (pip install -e ".[yardstick]"), and the real MNIST test set in $CONVBENCH_MNIST (default
# ../shared/data/mnist-t10k). The parts, each a command the docs name:
#   targets/          bash scripts/measure_targets.sh             docs/performance.md
#   suites/           convbench run (seeds, lenet5, resnet18; every backend, 2 threads)   docs/results.md
#   steps/            convbench step (seed002, lenet5; every backend)                     docs/training.md
#   seed002-mnist-t10k/  convbench train, seed 002's net on real MNIST per backend       docs/training.md
#   cluster-overhead/ python scripts/cluster_overhead.py                                  docs/cluster.md
#   verdicts/         bash scripts/verify_verdicts.sh --slowed                            docs/methodology.md
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/quick.sh
quick_options "$@"; set -- "${args[@]}"
reports=0; kept=()
for a in "$@"; do if [ "$a" = --reports ]; then reports=1; else kept+=("$a"); fi; done
set -- "${kept[@]}"
default=results; [ "$quick" = 1 ] && default=runs/reproduce-quick
out=${1:-$default}
out=${out%/}
mnist=${CONVBENCH_MNIST:-../shared/data/mnist-t10k}
fail() { echo "reproduce.sh: $*" >&2; exit 2; }
command -v convbench > /dev/null || fail "convbench is not on PATH: activate the environment it is installed in"
[ "$quick" = 1 ] || [ -z "$(git status --porcelain --untracked-files=no)" ] || fail "the checkout has uncommitted changes: results must belong to one commit"
commit=$(git rev-parse --short HEAD)
if [ "$reports" = 1 ]; then  # the measurements stay; what is written from them is written again
    [ -f "$out/README.md" ] || fail "$out holds no reproduction (no README.md)"
    echo "rewriting the reports of $out from its measurements, at $commit"
    bash scripts/measure_targets.sh "$out/targets" --reports
    for run in suites steps; do convbench report "$out/$run" > /dev/null; done
    for run in "$out"/seed002-mnist-t10k/*/; do python -c 'import sys; from convbench.cnn.train import redraw; redraw(sys.argv[1])' "$run"; done
    bash scripts/verify_verdicts.sh "$out/verdicts" --reports > /dev/null
    python scripts/cluster_overhead.py "$out/cluster-overhead" --reports
    sed -i '/^Reports, plots and comparisons written again/d' "$out/README.md"
    echo "Reports, plots and comparisons written again from these measurements by \`bash scripts/reproduce.sh --reports\` at commit $commit ($(date -u +%Y-%m-%d))." >> "$out/README.md"
    if [ "$out" = results ]; then python scripts/docs_figures.py; fi
    echo "reports of $out rewritten at $commit; commit them with the pages' figures (git add results README.md docs)"
    exit 0
fi
python -c "import torch" 2>/dev/null || fail 'needs torch (pip install -e ".[yardstick]")'
[ -d "$mnist" ] || fail "no MNIST folder at $mnist (set CONVBENCH_MNIST to the folder of the t10k IDX files)"
if [ "${2:-}" = "--resume" ]; then
    work=${3:?"--resume needs the interrupted directory (OUT.new-XXXXXX)"}
else
    mkdir -p "$(dirname "$out")"
    work=$(mktemp -d "$out.new-XXXXXX")
fi
echo "reproducing results at $commit into $work"
# auto's picks measured afresh at this commit, whatever a user's cache holds (kept for a resume, then dropped)
export CONVBENCH_TUNING_CACHE="$(cd "$work" && pwd)/.tuning.json"

part() {  # part NAME COMMAND...: run COMMAND once for NAME (skipped when a resumed reproduction did it)
    local name=$1; shift
    if [ -f "$work/.done-$name" ]; then echo "== $name: done before"; return; fi
    echo "== $name: $(date -u +%H:%M:%S)"
    rm -rf "${work:?}/$name"
    "$@"
    touch "$work/.done-$name"
}
backends=all; trained="numba im2col stride_tricks scipy naive"
[ "$quick" = 1 ] && { backends=$QUICK_BACKENDS; trained=${QUICK_BACKENDS//,/ }; }
suites() {
    convbench run --suite seeds,lenet5,resnet18 --backends "$backends" --threads 2 --out "$work/suites" --quiet "${run_budget[@]}" "${run_scope[@]}"
    convbench report "$work/suites" "${report_budget[@]}" > /dev/null
}
steps() {
    convbench step --model seed002,lenet5 --backends "$backends" --out "$work/steps" --quiet "${step_budget[@]}"
    convbench report "$work/steps" "${report_budget[@]}" > /dev/null
}
mnist() {
    for b in $trained; do
        convbench train --model seed002 --backend "$b" --iterations 2000 --data-dir "$mnist" --holdout 2000 \
            --quiet --out "$work/seed002-mnist-t10k/$b" "${train_budget[@]}"
    done
}
part targets bash scripts/measure_targets.sh "$work/targets" "${quick_flag[@]}"
part suites suites
part steps steps
part seed002-mnist-t10k mnist
part cluster-overhead python scripts/cluster_overhead.py "$work/cluster-overhead" "${overhead_budget[@]}"
part verdicts bash scripts/verify_verdicts.sh "$work/verdicts" --slowed "${quick_flag[@]}"

rm -f "$work"/.done-* "$work"/.tuning.json*
cat > "$work/README.md" <<EOF
# results

Every file here was produced by \`bash scripts/reproduce.sh${quick_flag[*]:+ --quick}\` at commit $commit
($(date -u +%Y-%m-%d), $(python -c 'import cpuinfo; print(cpuinfo.get_cpu_info()["brand_raw"])'),
$(nproc) cores). The script names the command behind each folder; the docs/ pages read them.
EOF
rm -rf "$out"
mv "$work" "$out"
if [ "$out" = results ]; then python scripts/docs_figures.py; fi  # the pages' figures, from the new results
if [ "$quick" = 1 ]; then
    echo "quick check at $commit done, into $out: every part ran (at tiny budgets: its figures mean nothing)"
else
    echo "results at $commit in $out; commit them with the pages' figures (git add results README.md docs)"
fi
