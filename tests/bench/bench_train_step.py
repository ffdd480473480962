#!/usr/bin/env python3
"""Side-by-side benchmark of one bi-encoder training step: argent (C) against PyTorch.

MiniLM-L6-shaped BERT (6 layers, hidden 384, 12 heads, FFN 1536), batch 32, sequence
lengths 32/64/128, full-length rows, dropout on, mean pooling, CosineSimilarityLoss over 16
pairs, backward, clip_grad_norm_(1.0), AdamW. Both sides use the same thread count (default
all cores). Peak memory is each process's maximum resident set size.

usage: python3 tests/bench/bench_train_step.py [--build build] [--reps 3] [--threads N]
"""
import argparse
import json
import os
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
    ap.add_argument("--build", default="build")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--threads", type=int, default=os.cpu_count())
    ap.add_argument("--seq", type=int, nargs="*", default=[32, 64, 128])
    a = ap.parse_args()
    env = dict(os.environ, OMP_NUM_THREADS=str(a.threads), OPENBLAS_NUM_THREADS=str(a.threads))
    exe = os.path.join(a.build, "tests", "bench_train_step")
    rows, peak = [], None
    out = subprocess.run([exe, str(a.reps)] + [str(s) for s in a.seq], env=env, check=True,
                         capture_output=True, text=True).stdout
    for line in out.splitlines():
        r = json.loads(line)
        if r["kind"] == "sgemm":
            peak = r
        else:
            rows.append(r)
    try:
        out = subprocess.run([sys.executable, "-c", TORCH_SIDE, str(a.reps), str(a.threads)] + [str(s) for s in a.seq],
                             env=env, check=True, capture_output=True, text=True).stdout
        rows += [json.loads(l) for l in out.splitlines() if l.startswith("{")]
    except (subprocess.CalledProcessError, FileNotFoundError) as e:
        print(f"(PyTorch side not run: {e})", file=sys.stderr)
    print(f"threads: {a.threads}; sgemm {peak['M']}x{peak['N']}x{peak['K']}: {peak['gflops']:.1f} GFLOP/s")
    print("| impl | seq | step (s) | tokens/s | GFLOP/s | % of sgemm | peak RSS (MB) |")
    print("|---|---|---|---|---|---|---|")
    for r in sorted(rows, key=lambda r: (r["seq"], r["impl"])):
        gf = flops(r["seq"]) / r["step_s"] / 1e9
        print(f"| {r['impl']} | {r['seq']} | {r['step_s']:.3f} | {r['tokens_per_s']:.0f} | {gf:.1f} | "
              f"{100 * gf / peak['gflops']:.0f}% | {r['peak_rss_mb']:.0f} |")


if __name__ == "__main__":
    main()
