"""`argent eval` of cross-encoders against sentence-transformers' own evaluators, on the
models and data of tests/cli/test_eval_cross.sh (its WORK folder):

  1. the one-label model, exported (`argent export --format cross-encoder`), through
     CrossEncoderCorrelationEvaluator on the scored test pairs == argent's corr1.csv;
  2. the same model through CrossEncoderClassificationEvaluator on the 0/1 test labels
     (binary: accuracy, F1, thresholds, average precision) == argent's bin.csv;
  3. the two-label model: CrossEncoderClassificationEvaluator (macro / micro / weighted F1)
     and sklearn's accuracy_score of the argmax == argent's multi.csv.

The texts and labels come from the TSV files `argent synth` wrote, read with Python's csv
module. Tolerance 1e-4 absolute. Exit 77 when sentence-transformers, torch or sklearn is
missing. Usage: check_eval_cross.py ARGENT WORK"""
import csv
import os
import shutil
import subprocess
import sys


def main():
    argent, work = sys.argv[1:3]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    try:
        import numpy as np
        import torch
        from sentence_transformers import CrossEncoder
        from sentence_transformers.cross_encoder.evaluation import (CrossEncoderClassificationEvaluator,
                                                                    CrossEncoderCorrelationEvaluator)
        from sklearn.metrics import accuracy_score
    except ImportError as e:
        print(f"SKIPPED: Python package missing: {e}")
        sys.exit(77)
    torch.set_num_threads(1)
    for f in ("corr1.csv", "bin.csv", "multi.csv", "ce1/model.h5", "ce2/model.h5", "data/test.tsv"):
        if not os.path.exists(os.path.join(work, f)):
            print(f"FAIL {work}/{f} missing: run tests/cli/test_eval_cross.sh first (ctest fixture)")
            sys.exit(1)

    with open(os.path.join(work, "data", "test.tsv"), newline="") as f:
        rows = list(csv.DictReader(f, delimiter="\t", quoting=csv.QUOTE_NONE))
    pairs = [[r["sentence1"], r["sentence2"]] for r in rows]
    scores = [float(r["score"]) for r in rows]
    labels = [int(r["label"]) for r in rows]

    def argent_csv(name):
        with open(os.path.join(work, name), newline="") as f:
            return {r["metric"]: float(r["value"]) for r in csv.DictReader(f)}

    def export(run):
        out = os.path.join(work, run + "-st")
        shutil.rmtree(out, ignore_errors=True)
        r = subprocess.run([argent, "export", os.path.join(work, run, "model.h5"), out, "--format", "cross-encoder"],
                           capture_output=True, text=True)
        if r.returncode:
            print(r.stdout, r.stderr)
            print(f"FAIL argent export {run}")
            sys.exit(1)
        return CrossEncoder(out, device="cpu", max_length=32)

    fails = 0

    def compare(what, got, want):
        nonlocal fails
        keys = sorted(want)
        bad = [k for k in keys if k not in got or not abs(got[k] - want[k]) <= 1e-4]
        extra = sorted(set(got) - set(want))
        ok = not bad and not extra
        fails += not ok
        d = max((abs(got[k] - want[k]) for k in keys if k in got), default=float("nan"))
        print(f"{'ok  ' if ok else 'FAIL'} {what}: {len(keys)} metrics, max |diff| {d:.2g}"
              + (f"; differ: {bad}" if bad else "") + (f"; only in argent: {extra}" if extra else ""))
        if not ok:
            for k in keys:
                print(f"     {k}: argent {got.get(k)}  sentence-transformers {want[k]}")

    ce1 = export("ce1")
    st = CrossEncoderCorrelationEvaluator(pairs, scores, name="", write_csv=False)(ce1)
    compare("1 label, scores: CrossEncoderCorrelationEvaluator", argent_csv("corr1.csv"),
            {k: float(v) for k, v in st.items()})
    st = CrossEncoderClassificationEvaluator(pairs, labels, name="", write_csv=False)(ce1)
    compare("1 label, 0/1 labels: CrossEncoderClassificationEvaluator (binary)", argent_csv("bin.csv"),
            {k: float(v) for k, v in st.items()})

    ce2 = export("ce2")
    want = {k: float(v) for k, v in CrossEncoderClassificationEvaluator(pairs, labels, name="", write_csv=False)(ce2).items()}
    logits = np.asarray(ce2.predict(pairs, convert_to_numpy=True, show_progress_bar=False))
    want["accuracy"] = float(accuracy_score(labels, np.argmax(logits, axis=1)))
    compare("2 labels: CrossEncoderClassificationEvaluator + accuracy_score", argent_csv("multi.csv"), want)
    print(f"{fails} failed")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
