# Sourced by the measuring scripts for their --quick option: every part at tiny budgets, on a
# few problems of each suite, so that a script is checked end to end in minutes before its long
# run (the docs' tests run them so). Its figures mean nothing: keep them out of results/.
#
#   quick_options "$@"; set -- "${args[@]}"    # sets quick=1 when --quick is among the arguments,
#                                              # and the budgets below (empty without --quick);
#                                              # --help prints the script's header, an unknown
#                                              # option stops it (exit 2)
QUICK_MATCH='^(seed002_.*|conv2|layer4_downsample)$'  # seed002's conv and pool, one layer of lenet5 and of resnet18
QUICK_BACKENDS=im2col,numba  # the backends a --quick script measures (each other one costs every run its imports)

quick_options() {
    quick=0; args=(); quick_flag=(); run_budget=(); report_budget=(); run_scope=(); step_budget=(); train_budget=(); pytest_budget=(); overhead_budget=(); sweep=1,2
    local a
    for a in "$@"; do
        case "$a" in
            --quick) quick=1 ;;
            -h|--help) sed -n '2,/^set /{/^#/s/^# \{0,1\}//p}' "$0"; exit 0 ;;  # the script's header
            --resume|--slowed|--reports) args+=("$a") ;;
            -*) echo "$(basename "$0"): unknown option $a (--help shows the usage)" >&2; exit 2 ;;
            *) args+=("$a") ;;
        esac
    done
    if [ "$quick" = 1 ]; then
        quick_flag=(--quick)  # for the scripts it runs
        run_budget=(--rounds 2 --max-time 0.05 --window 0.2)  # convbench run and ab
        run_scope=(--match "$QUICK_MATCH")
        report_budget=(--no-plots)  # the reports of measure_targets.sh and reproduce.sh (convbench report's own
        # tests and the docs' blocks draw the plots)
        sweep=2  # measure_targets.sh's thread counts: one is enough to check the script
        step_budget=(--rounds 1 --max-time 2)  # leaves out naive's LeNet-5 step at batch 64 (5 s)
        train_budget=(--iterations 20 --holdout 20 --val-fraction 0.002)  # about 20 images each to test and
        # validate on: naive's forward pass takes 55 ms an image, and 20 steps see 80 images
        pytest_budget=(--benchmark-max-time=0.01 --benchmark-min-rounds=1 -k "seed002 and im2col")  # one backend's
        overhead_budget=(--repeats 1 --match "$QUICK_MATCH")  # scripts/cluster_overhead.py
    fi
}
