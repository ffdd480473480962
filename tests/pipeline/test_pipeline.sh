#!/bin/bash
# argent pipeline on the built-in default recipe (jobs/recipes/default.recipe), made small
# with recipe variables, at np 2. One mode per ctest:
#   default  the recipe runs end to end: exit 0, the results table on stdout, report.md,
#            results.csv (one row per evaluation), a marker per stage, and the curves
#            (PNGs when gnuplot is installed, also with a relative --out; else a note in report.md)
#   rerun    the finished pipeline run again: every stage skipped, nothing rewritten, the
#            same table
#   resume   a pipeline stopped by SIGUSR1 inside train-cross (fault injection) exits 85
#            with the earlier stages marked done; run again it skips them, train-cross
#            resumes from its checkpoint, and every evaluation equals the uninterrupted
#            run's bit for bit (resume at the same np is exact)
#   errors   bad recipes and variables: exit 2 with a message naming the file:line, the
#            variable or the stage; a failing stage: exit 1 naming the stage; nothing
#            written for a recipe that does not parse
#   slurm    every jobs/recipes/*.recipe is also accepted by slurm/submit --dry-run (the
#            two share the format); skipped without python3
# usage: test_pipeline.sh MODE ARGENT MPIEXEC WORK SRCDIR
MODE=$1 ARGENT=$2 MPIEXEC=$3 WORK=$4 SRC=$5
fail() { echo "FAIL: $*"; exit 1; }
NP=2
SMALL=(GOLD=200 PAIRS=400 DEV=200 TEST=100 CROSS_EPOCHS=2 BI_STEPS=20)
pipe() {  # out-dir log [extra args]: run the small default pipeline at np 2
    local out=$1 log=$2
    shift 2
    "$MPIEXEC" -np $NP --allow-run-as-root --oversubscribe "$ARGENT" pipeline default --out "$out" "${SMALL[@]}" "$@" \
        > "$log.out" 2> "$log.err"
}
# Everything a stage wrote (the report is rewritten on purpose: its times say what ran).
mtimes() { stat -c '%n %Y %s' "$1"/pipeline/*.json "$1"/eval-*.csv "$1"/*.h5 "$1"/*/model.h5 "$1"/data/* 2>/dev/null | sort; }

case $MODE in
default)
    rm -rf "$WORK"; mkdir -p "$WORK"
    pipe "$WORK/run" "$WORK/first" || { cat "$WORK/first.err"; fail "the default pipeline exited $?"; }
    for f in report.md results.csv eval-untrained.csv eval-bi-gold.csv eval-bi-gold-silver.csv silver.h5 \
             cross/model.h5 bi-gold/model.h5 bi-gold-silver/model.h5; do
        [ -s "$WORK/run/$f" ] || fail "missing output $f"
    done
    n=$(ls "$WORK/run/pipeline/"stage-*.json | wc -l)
    [ "$n" = 12 ] || fail "$n stage markers, expected 12"
    grep -q '| eval | bi-encoder, gold + silver (Augmented SBERT) | spearman_cosine |' "$WORK/first.out" ||
        { cat "$WORK/first.out"; fail "no results table on stdout"; }
    rows=$(($(wc -l < "$WORK/run/results.csv") - 1))
    [ "$rows" = 6 ] || { cat "$WORK/run/results.csv"; fail "$rows result rows, expected 6"; }
    grep -q '^## Stages' "$WORK/run/report.md" || fail "report.md has no stages table"
    grep -q 'skipped' "$WORK/first.err" && fail "a fresh run skipped a stage"
    # Curves: PNGs with gnuplot, a note and the gnuplot scripts without it.
    [ -s "$WORK/run/plots/10-bi-gold-silver-loss.gp" ] || fail "no plot script for the gold + silver loss"
    if command -v gnuplot > /dev/null; then
        n=$(ls "$WORK/run/plots/"*.png 2>/dev/null | wc -l)
        [ "$n" = 6 ] || fail "$n PNG plots, expected 6 (loss and evaluation of 3 training runs)"
        grep -q '](plots/10-bi-gold-silver-eval.png)' "$WORK/run/report.md" || fail "report.md does not show the plots"
        # The README's way: a relative output folder (the plots are drawn from inside it).
        (cd "$WORK" && pipe rel "$WORK/rel") || { cat "$WORK/rel.err"; fail "the pipeline with a relative --out exited"; }
        n=$(ls "$WORK/rel/plots/"*.png 2>/dev/null | wc -l)
        [ "$n" = 6 ] || { cat "$WORK/rel.out"; fail "relative --out: $n PNG plots, expected 6"; }
    else
        grep -q 'Plots skipped: gnuplot is not installed' "$WORK/run/report.md" || fail "no note about the missing gnuplot"
    fi
    ;;
rerun)
    [ -f "$WORK/run/report.md" ] || fail "needs the default test's run"
    before=$(mtimes "$WORK/run")
    sleep 1
    pipe "$WORK/run" "$WORK/again" || { cat "$WORK/again.err"; fail "the rerun exited $?"; }
    n=$(grep -c 'done in an earlier run' "$WORK/again.err")
    [ "$n" = 12 ] || { cat "$WORK/again.err"; fail "$n of 12 stages skipped"; }
    grep -q 'pipeline: \[[0-9]*/12\] argent ' "$WORK/again.err" && fail "the rerun ran a stage"
    after=$(mtimes "$WORK/run")
    [ "$before" = "$after" ] || { diff <(echo "$before") <(echo "$after"); fail "the rerun rewrote outputs"; }
    # The same results (columns 1..5; the last one is the stage time, read from the markers).
    diff <(grep '^| [0-9]' "$WORK/first.out" | cut -d'|' -f2-6) <(grep '^| [0-9]' "$WORK/again.out" | cut -d'|' -f2-6) ||
        fail "the rerun's table differs"
    ;;
resume)
    [ -f "$WORK/run/report.md" ] || fail "needs the default test's run"
    rm -rf "$WORK/res"
    # SIGUSR1 in the first training stage (train-cross) at its step index 3: it finishes that step,
    # checkpoints (ckpt-000004) and returns 85.
    ARGENT_FAULT=usr1:step=3 pipe "$WORK/res" "$WORK/stop"; rc=$?
    [ $rc = 85 ] || { cat "$WORK/stop.err"; fail "interrupted pipeline exited $rc, expected 85"; }
    grep -q 'stopped after a checkpoint' "$WORK/stop.err" || fail "no 'stopped after a checkpoint' message"
    n=$(ls "$WORK/res/pipeline/"stage-*.json | wc -l)
    [ "$n" = 6 ] || fail "$n stage markers after the stop, expected 6 (the stages before train-cross)"
    [ -f "$WORK/res/cross/checkpoints/ckpt-000004.h5" ] || fail "train-cross left no checkpoint after step 4"
    ARGENT_FAULT= pipe "$WORK/res" "$WORK/resume" || { cat "$WORK/resume.err"; fail "the resumed pipeline exited $?"; }
    n=$(grep -c 'done in an earlier run' "$WORK/resume.err")
    [ "$n" = 6 ] || { cat "$WORK/resume.err"; fail "$n stages skipped on resume, expected 6"; }
    grep -q 'resumed from .*ckpt-000004.h5' "$WORK/resume.err" || { cat "$WORK/resume.err"; fail "train-cross did not resume"; }
    for f in eval-bi-gold.csv eval-bi-gold-silver.csv; do
        cmp "$WORK/run/$f" "$WORK/res/$f" || fail "$f differs from the uninterrupted run's"
    done
    # The silver files differ in their provenance (paths, times); their labels must not.
    if command -v h5dump > /dev/null; then
        cmp <(h5dump -d /pairs/label "$WORK/run/silver.h5" | tail -n +3) \
            <(h5dump -d /pairs/label "$WORK/res/silver.h5" | tail -n +3) ||
            fail "silver labels differ from the uninterrupted run's"
    fi
    ;;
errors)
    WORK=$WORK-errors
    rm -rf "$WORK"; mkdir -p "$WORK"
    run1() { "$MPIEXEC" -np 1 --allow-run-as-root --oversubscribe "$ARGENT" pipeline "$@" > "$WORK/e.out" 2> "$WORK/e.err"; }
    expect() {  # code pattern description
        local rc=$1 pat=$2 what=$3
        [ "$got" = "$rc" ] || { cat "$WORK/e.err"; fail "$what: exit $got, expected $rc"; }
        grep -q -- "$pat" "$WORK/e.err" || { cat "$WORK/e.err"; fail "$what: message lacks '$pat'"; }
    }
    printf 'set A=1\nsynth: --out $OUT/x --seed $UNDEFINED_VAR\n' > "$WORK/undef.recipe"
    run1 "$WORK/undef.recipe" --out "$WORK/o1"; got=$?
    expect 2 'undef.recipe:2: \$UNDEFINED_VAR is not defined' "undefined variable"
    [ -e "$WORK/o1" ] && fail "a recipe that does not parse created its output folder"
    printf '# c\n\nfrobnicate: --x 1\n' > "$WORK/stage.recipe"
    run1 "$WORK/stage.recipe"; got=$?
    expect 2 "stage.recipe:3: 'frobnicate' is not a stage" "unknown stage"
    printf 'synth --out x\n' > "$WORK/colon.recipe"
    run1 "$WORK/colon.recipe"; got=$?
    expect 2 "colon.recipe:1: expected 'set NAME=VALUE' or 'STAGE" "line without a colon"
    printf 'synth: --out "x\n' > "$WORK/quote.recipe"
    run1 "$WORK/quote.recipe"; got=$?
    expect 2 'quote.recipe:1: no closing quotation' "unclosed quote"
    run1 no-such-recipe; got=$?
    expect 2 "recipe 'no-such-recipe': no file" "unknown recipe"
    run1 default 1BAD=x; got=$?
    expect 2 "'1BAD=x': expected NAME=VALUE" "bad variable name"
    printf 'synth: --out $OUT/d --gold 1\n' > "$WORK/fail.recipe"
    run1 "$WORK/fail.recipe" --out "$WORK/o2"; got=$?
    expect 1 'fail.recipe:1) failed with exit code' "failing stage"
    [ -e "$WORK/o2/pipeline/stage-01-synth.json" ] && fail "a failed stage got a done marker"
    # Variables: the command line wins over set lines; $$ is a dollar; a continuation line.
    printf 'set GOLD=7\nsynth: --out $OUT/d --gold $GOLD \\\n  --pairs 3 --dev 2 --test 2 --seed 2\n' > "$WORK/vars.recipe"
    run1 "$WORK/vars.recipe" --out "$WORK/o3" GOLD=5 --dry-run; got=$?
    [ $got = 0 ] || { cat "$WORK/e.err"; fail "dry run exited $got"; }
    grep -q "argent synth --out $WORK/o3/d --gold 5 --pairs 3 --dev 2 --test 2 --seed 2" "$WORK/e.out" ||
        { cat "$WORK/e.out"; fail "dry run shows other arguments"; }
    ;;
slurm)
    command -v python3 > /dev/null || { echo "skip: python3 not found"; exit 77; }
    for r in "$SRC"/jobs/recipes/*.recipe; do
        python3 "$SRC/slurm/submit" "$r" DATA=/data MODEL=/model --dry-run > "$WORK.$(basename "$r").sh" 2> "$WORK.err" ||
            { cat "$WORK.err"; fail "slurm/submit rejects $r"; }
        n=$("$MPIEXEC" -np 1 --allow-run-as-root --oversubscribe "$ARGENT" pipeline "$r" DATA=/data MODEL=/model --dry-run |
            grep -c '^ *[0-9]* ')
        m=$(grep -c '^job[0-9]*=' "$WORK.$(basename "$r").sh")
        [ "$n" = "$m" ] || fail "$r: argent pipeline sees $n stages, slurm/submit $m jobs"
    done
    ;;
*) fail "unknown mode $MODE" ;;
esac
echo "PASS $MODE"
