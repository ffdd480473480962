#!/usr/bin/env python3
"""The PyTorch side of the GPU benchmark: the same step bench_cuda_step.c times, with
Hugging Face BertModel on the GPU. MiniLM-L6 and BERT-base shapes, batch 32, sequence 128,
full-length rows, dropout on (train mode); a step is zero_grad (buffers kept), forward,
backward from a fixed upstream gradient of last_hidden_state, then a device sync. fp32 with
TF32 off and with TF32 on; attention "eager" (softmax and two matmuls, the algorithm argent
runs) and "sdpa" (PyTorch's fused attention). One JSON object per line; exit 77 when no GPU.

usage: bench_torch_step.py [--steps N] [--warmup N] [--batch B] [--seq T] [--model minilm|base|all]
                           [--attn eager,sdpa] [--device cuda|cpu]
(--device cpu is a dry run of this script on a machine without a GPU; its times mean nothing.)
"""
import argparse
import json
import sys
import time


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--batch", type=int, default=32)
    ap.add_argument("--seq", type=int, default=128)
    ap.add_argument("--model", default="all")
    ap.add_argument("--attn", default="eager,sdpa")
    ap.add_argument("--device", default="cuda", choices=["cuda", "cpu"])
    # bf16: torch.autocast(bfloat16) around the forward, fp32 master weights and gradients
    ap.add_argument("--precisions", default="fp32,tf32,bf16")
    a = ap.parse_args()
    try:
        import torch
        from transformers import BertConfig, BertModel
    except ImportError as e:
        print("SKIPPED: PyTorch or transformers missing (%s)" % e)
        return 77
    gpu = a.device == "cuda"
    if gpu and not torch.cuda.is_available():
        print("SKIPPED: no CUDA device visible to PyTorch")
        return 77
    dev = torch.device(a.device)

    def sync():
        if gpu:
            torch.cuda.synchronize()
    shapes = {"minilm-l6": dict(hidden_size=384, num_hidden_layers=6, num_attention_heads=12, intermediate_size=1536),
              "bert-base": dict(hidden_size=768, num_hidden_layers=12, num_attention_heads=12, intermediate_size=3072)}
    want = {"all": list(shapes), "minilm": ["minilm-l6"], "base": ["bert-base"]}[a.model]
    B, T = a.batch, a.seq
    g = torch.Generator().manual_seed(7)
    ids = torch.randint(1000, 29000, (B, T), generator=g)
    ids[:, 0], ids[:, -1] = 101, 102
    ids = ids.to(dev)
    mask = torch.ones(B, T, dtype=torch.long, device=dev)
    for name in want:
        s = shapes[name]
        flops = 3.0 * s["num_hidden_layers"] * (2 * B * T * (4 * s["hidden_size"] ** 2 + 2 * s["hidden_size"] * s["intermediate_size"])
                                                + 4 * B * T * T * s["hidden_size"])
        for attn in a.attn.split(","):
            torch.manual_seed(0)
            try:
                cfg = BertConfig(vocab_size=30522, max_position_embeddings=512, type_vocab_size=2,
                                 hidden_dropout_prob=0.1, attention_probs_dropout_prob=0.1,
                                 attn_implementation=attn, **s)
                model = BertModel(cfg, add_pooling_layer=False).to(dev).train()
                attn = model.config._attn_implementation or attn  # what transformers actually chose
            except (TypeError, ValueError, ImportError) as e:
                print("bench_torch_step: attention %s unavailable: %s" % (attn, e), file=sys.stderr)
                continue
            up = torch.randn(B, T, s["hidden_size"], device=dev, generator=torch.Generator(dev).manual_seed(3))
            for prec in a.precisions.split(","):
                tf32 = prec == "tf32"
                torch.backends.cuda.matmul.allow_tf32 = tf32
                amp = torch.autocast(dev.type, dtype=torch.bfloat16, enabled=prec == "bf16")
                if gpu:
                    torch.cuda.reset_peak_memory_stats()
                times = []
                for step in range(a.warmup + a.steps):
                    sync()
                    t0 = time.perf_counter()
                    model.zero_grad(set_to_none=False)
                    with amp:
                        h = model(input_ids=ids, attention_mask=mask).last_hidden_state
                    h.float().backward(up)
                    sync()
                    if step >= a.warmup:
                        times.append(time.perf_counter() - t0)
                    if step == 0:  # as bench_cuda_step: device memory in use (context included)
                        free, total = torch.cuda.mem_get_info() if gpu else (0, 0)
                        used = total - free
                mean = sum(times) / len(times)
                print(json.dumps({"impl": "pytorch %s (%s)" % (torch.__version__, attn), "model": name,
                                  "precision": prec, "batch": B, "seq": T,
                                  "steps": a.steps, "step_ms": round(mean * 1e3, 3),
                                  "best_ms": round(min(times) * 1e3, 3), "tokens_per_s": round(B * T / mean),
                                  "tflops": round(flops / mean / 1e12, 2),
                                  "device_mem_used_mb": round(used / 2**20),
                                  "torch_peak_alloc_mb": round(torch.cuda.max_memory_allocated() / 2**20) if gpu else 0}),
                      flush=True)
            torch.backends.cuda.matmul.allow_tf32 = False
            del model
            if gpu:
                torch.cuda.empty_cache()
    return 0


if __name__ == "__main__":
    sys.exit(main())
