#!/usr/bin/env python3
"""Side-by-side benchmark of one bi-encoder training step: argent (C) against PyTorch.

MiniLM-L6-shaped BERT (6 layers, hidden 384, 12 heads, FFN 1536), batch 32, sequence
lengths 32/64/128, full-length rows, dropout on, mean pooling, CosineSimilarityLoss over 16
pairs, backward, clip_grad_norm_(1.0), AdamW. Both sides use the same thread count (default
all cores). Peak memory is each process's maximum resident set size.

With --rounds R the programs run R times, interleaved (argent build(s), then PyTorch, then
again), and the table gives each one's median step time: on a shared machine this evens out
the load between them. More than one --build compares builds (say, before and after a
change) in the same run; each row is labelled with its build folder.

usage: python3 tests/bench/bench_train_step.py [--build build [--build other]] [--reps 3]
                                               [--threads N] [--rounds R] [--no-torch]
"""
import argparse
import json
import os
import statistics
import subprocess
import sys
import time

TORCH_SIDE = r"""
import json, resource, sys, time
import torch, torch.nn.functional as F
from transformers import BertConfig, BertModel
reps, threads = int(sys.argv[1]), int(sys.argv[2])
torch.set_num_threads(threads)
torch.manual_seed(0)
cfg = BertConfig(vocab_size=30522, hidden_size=384, num_hidden_layers=6, num_attention_heads=12,
                 intermediate_size=1536, max_position_embeddings=512)
model = BertModel(cfg, add_pooling_layer=False).train()
opt = torch.optim.AdamW(model.parameters(), lr=1e-5, weight_decay=0.01)
for T in [int(x) for x in sys.argv[3:]]:
    ids = torch.randint(1000, 29000, (32, T)); ids[:, 0] = 101; ids[:, -1] = 102
    mask = torch.ones(32, T, dtype=torch.long)
    y = torch.tensor([(i % 5) / 4 for i in range(16)])
    times = []
    for r in range(reps + 1):
        t0 = time.perf_counter()
        h = model(input_ids=ids, attention_mask=mask).last_hidden_state
        m = mask.unsqueeze(-1).float()
        emb = (h * m).sum(1) / m.sum(1).clamp(min=1e-9)
        loss = F.mse_loss(F.cosine_similarity(emb[:16], emb[16:]), y)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step(); opt.zero_grad()
        if r: times.append(time.perf_counter() - t0)
    mean = sum(times) / len(times)
    print(json.dumps({"kind": "step", "impl": "pytorch " + torch.__version__, "batch": 32, "seq": T,
                      "step_s": mean, "best_s": min(times), "tokens_per_s": 32 * T / mean,
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024}), flush=True)
"""


def flops(T, B=32, C=384, I=1536, L=6):
    N = B * T
    return 3.0 * L * (2 * N * (4 * C * C + 2 * C * I) + 4 * B * T * T * C)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", action="append")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seq", type=int, nargs="*", default=[32, 64, 128])
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--no-torch", action="store_true")
    a = ap.parse_args()
    builds = a.build or ["build"]
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    runs, peaks = {}, []   # (impl, seq) -> list of rows
    for rnd in range(a.rounds):
        for b in builds:
            exe = os.path.join(b, "tests", "bench_train_step")
            out = subprocess.run([exe, str(a.reps)] + [str(s) for s in a.seq], env=env, check=True,
                                 capture_output=True, text=True).stdout
            for line in out.splitlines():
                r = json.loads(line)
                if r["kind"] == "sgemm":
                    peaks.append(r["gflops"])
                    continue
                if len(builds) > 1:
                    r["impl"] = f"argent ({b})"
                runs.setdefault((r["impl"], r["seq"]), []).append(r)
                print(f"round {rnd + 1}: {r['impl']} T={r['seq']} {r['step_s']:.3f} s/step", file=sys.stderr, flush=True)
        if a.no_torch:
            continue
        try:
            out = subprocess.run([sys.executable, "-c", TORCH_SIDE, str(a.reps), str(a.threads)] +
                                 [str(s) for s in a.seq], env=env, check=True, capture_output=True,
                                 text=True).stdout
            for l in out.splitlines():
                if l.startswith("{"):
                    r = json.loads(l)
                    runs.setdefault((r["impl"], r["seq"]), []).append(r)
                    print(f"round {rnd + 1}: {r['impl']} T={r['seq']} {r['step_s']:.3f} s/step", file=sys.stderr, flush=True)
        except (subprocess.CalledProcessError, FileNotFoundError) as e:
            print(f"(PyTorch side not run: {e})", file=sys.stderr)
            a.no_torch = True
    peak = statistics.median(peaks)
    print(f"threads: {a.threads}; rounds: {a.rounds} (medians); sgemm {32 * max(a.seq)}x1536x384: "
          f"{peak:.1f} GFLOP/s (median; range {min(peaks):.1f}-{max(peaks):.1f}); "
          f"load average {open('/proc/loadavg').read().split()[0]} at the end")
    print("| impl | seq | step (s) | range (s) | tokens/s | GFLOP/s | % of sgemm | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|---|")
    for (impl, seq), rs in sorted(runs.items(), key=lambda kv: (kv[0][1], kv[0][0])):
        st = statistics.median(r["step_s"] for r in rs)
        gf = flops(seq) / st / 1e9
        lo, hi = min(r["step_s"] for r in rs), max(r["step_s"] for r in rs)
        print(f"| {impl} | {seq} | {st:.3f} | {lo:.2f}-{hi:.2f} | {32 * seq / st:.0f} | {gf:.1f} | "
              f"{100 * gf / peak:.0f}% | {max(r['peak_rss_mb'] for r in rs):.0f} |")


if __name__ == "__main__":
    main()
