"""argent's cross-encoder scores against sentence-transformers' CrossEncoder on the exported
model, on the tiny inputs of make_tiny_cross:

  1. train-cross (120 steps, 2 labels) -> export RUN/model.h5 --format cross-encoder ->
     CrossEncoder(DIR).predict on the pool's pairs (the texts, tokenised by the exported
     tokenizer) equals the logits and softmax probabilities `argent label` wrote;
  2. the 1-label random checkpoint: CrossEncoder's sigmoid equals argent's probabilities.

Tolerance: 2e-5 absolute + 1e-5 relative on logits and probabilities (float32 forward, different summation
orders). Exit 77 when sentence-transformers, torch or h5py is not installed.
Usage: check_export.py ARGENT MPIEXEC TINY_DIR WORK_DIR"""
import os
import shutil
import subprocess
import sys


def main():
    argent, mpiexec, tiny, work = sys.argv[1:5]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    os.environ["OMP_NUM_THREADS"] = "1"
    os.environ.pop("ARGENT_FAULT", None)
    try:
        import h5py
        import numpy as np
        import torch
        from sentence_transformers import CrossEncoder
    except ImportError as e:
        print(f"SKIPPED: Python package missing: {e}")
        sys.exit(77)
    torch.set_num_threads(1)
    shutil.rmtree(work, ignore_errors=True)
    os.makedirs(work)
    mpi = [mpiexec, "--allow-run-as-root", "--oversubscribe", "--timeout", "300"]

    def run(cmd):
        r = subprocess.run(cmd, capture_output=True, text=True)
        if r.returncode:
            print(" ".join(cmd))
            print(r.stdout, r.stderr)
            sys.exit(1)

    with h5py.File(os.path.join(tiny, "pool.h5"), "r") as f:
        text = [t.decode() if isinstance(t, bytes) else t for t in f["sentences/text"][:]]
        pairs = [(text[a], text[b]) for a, b in zip(f["pairs/a"][:], f["pairs/b"][:])]
    fails = 0

    def compare(what, got, want):
        nonlocal fails
        d = float(np.abs(got - want).max()) if got.shape == want.shape else float("inf")
        ok = got.shape == want.shape and bool(np.all(np.abs(got - want) <= 2e-5 + 1e-5 * np.abs(want)))
        fails += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}: max |diff| {d:.3g} over {len(want)} pairs "
              f"(values in [{want.min():.3f}, {want.max():.3f}])")

    # 1. trained two-label model
    rundir = os.path.join(work, "run")
    run(mpi + ["-np", "1", argent, "train-cross", "--model", os.path.join(tiny, "bi.h5"), "--train",
               os.path.join(tiny, "train.h5"), "--out", rundir, "--lr", "1e-3", "--steps", "120", "--warmup", "10", "--max-length", "32",
               "--seed", "5"])
    export = os.path.join(work, "export2")
    run([argent, "export", os.path.join(rundir, "model.h5"), export, "--format", "cross-encoder"])
    run(mpi + ["-np", "2", argent, "label", "--model", rundir, "--data", os.path.join(tiny, "pool.h5"), "--out",
               os.path.join(work, "s2.h5"), "--chunk-size", "128", "--quiet"])
    with h5py.File(os.path.join(work, "s2.scores.h5"), "r") as f:
        sc = f["scores"][:]
    ce = CrossEncoder(export, device="cpu", max_length=32)
    logits = np.asarray(ce.predict(pairs, batch_size=64, convert_to_numpy=True, show_progress_bar=False))
    probs = np.asarray(ce.predict(pairs, batch_size=64, apply_softmax=True, convert_to_numpy=True,
                                  show_progress_bar=False))
    compare("trained, 2 labels: CrossEncoder(export).predict logits == argent label logits", logits, sc[:, 0:2])
    compare("trained, 2 labels: predict(apply_softmax=True) == argent probabilities", probs, sc[:, 2:4])
    labels = ce.model.config.id2label
    ok = labels == {0: "different", 1: "same"}
    fails += not ok
    print(f"{'ok  ' if ok else 'FAIL'} id2label from the training data's label map: {labels}")

    # 2. one-label random model (sigmoid)
    export1 = os.path.join(work, "export1")
    run([argent, "export", os.path.join(tiny, "cross1.h5"), export1, "--format", "cross-encoder"])
    run(mpi + ["-np", "1", argent, "label", "--model", os.path.join(tiny, "cross1.h5"), "--data",
               os.path.join(tiny, "pool.h5"), "--out", os.path.join(work, "s1.h5"), "--chunk-size", "300", "--quiet"])
    with h5py.File(os.path.join(work, "s1.scores.h5"), "r") as f:
        sc1 = f["scores"][:]
    ce1 = CrossEncoder(export1, device="cpu", max_length=32)
    p1 = np.asarray(ce1.predict(pairs, batch_size=50, convert_to_numpy=True, show_progress_bar=False))
    compare("1 label: CrossEncoder(export).predict (sigmoid) == argent probabilities", p1, sc1[:, 1])
    print(f"{fails} failed")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
