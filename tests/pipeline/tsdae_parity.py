"""argent tsdae against sentence-transformers, over whole training runs: a tiny BERT without
dropout is trained for 2 epochs of batch 4 on 22 sentences (12 steps, the last batch of each
epoch smaller) by `argent tsdae` at np 1 and np 2, and by DenoisingAutoEncoderLoss
(tie_encoder_decoder=True) with torch's AdamW (constant lr, no weight decay), clip_grad_norm_
1.0 and the legacy fit loop. Both see the same data order (argent's engine permutation) and
the same deletion noise (nn/noise.h's draw, re-drawn each epoch; tests/pipeline/st_common.py
reproduces both in Python); a few sentences are longer than --max-length, so truncation of
the noisy source and of the clean target is exercised. The decoder's new tensors start from
argent's initialisation (read from a checkpoint of a run at lr 0), so nothing differs but
float arithmetic.

Checked: every step's loss within 1e-5 (relative), and every encoder tensor of the final
model.h5 within 1e-4 (max |a - b| / max |a|) of torch's (except the attention key biases, a
null direction of the softmax: see below), at np 1 and np 2; the output is a CLS-pooling
bi-encoder with the encoder's tensors only. Exits 77 when torch / transformers / sentence-transformers / h5py
are missing.

  python3 tests/pipeline/tsdae_parity.py --argent build/argent --mpiexec mpiexec --work DIR
"""
import argparse
import json
import os
import shutil
import subprocess
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_common as st  # noqa: E402  (exits 77 without the Python packages)

try:
    import h5py
    from transformers import BertConfig, BertModel, BertTokenizer
except Exception as e:  # noqa: BLE001
    st.skip(f"python packages missing: {e}")

torch, np = st.torch, st.np
WORDS = ("alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu nu xi omicron pi rho sigma tau "
         "upsilon phi chi psi omega red green blue cat dog runs fast slow big small the a of and").split()


def build_model(folder):
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", ".", ","] + WORDS + ["##s", "##ed"]
    with open(os.path.join(folder, "vocab.txt"), "w") as f:
        f.write("\n".join(vocab) + "\n")
    torch.manual_seed(3)
    cfg = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=48, max_position_embeddings=24, type_vocab_size=2, hidden_act="gelu",
                     layer_norm_eps=1e-12, pad_token_id=0, hidden_dropout_prob=0.0,
                     attention_probs_dropout_prob=0.0, attn_implementation="eager")
    m = BertModel(cfg)
    with torch.no_grad():  # wider than HF's init, so that every term matters
        for name, p in m.named_parameters():
            if "LayerNorm.weight" in name:
                p.copy_(1 + 0.1 * torch.randn(p.shape))
            elif name.endswith("bias"):
                p.copy_(0.05 * torch.randn(p.shape))
            else:
                p.copy_(0.1 * torch.randn(p.shape))
    m.save_pretrained(folder)
    BertTokenizer(os.path.join(folder, "vocab.txt")).save_pretrained(folder)


def sentences():
    g = np.random.default_rng(11)
    out = []
    while len(out) < 22:
        n = int(g.integers(1, 15)) if len(out) % 5 else int(g.integers(14, 20))  # some beyond max length
        words = [WORDS[int(k)] for k in g.integers(0, len(WORDS), n)]
        if len(out) % 7 == 3:
            words[-1] += "s"
        s = " ".join(words) + (" ." if len(out) % 3 == 0 else "")
        if s not in out:
            out.append(s)
    return out


def run(cmd, log):
    with open(log, "w") as f:
        r = subprocess.run(cmd, stdout=f, stderr=subprocess.STDOUT)
    if r.returncode != 0:
        print(open(log).read())
        raise SystemExit(f"FAIL: {' '.join(cmd)} exited {r.returncode}")


def torch_run(folder, sents, init_ckpt, batch, epochs, lr, seed, max_len):
    tr = st.Transformer(folder, max_seq_length=max_len, model_kwargs={"attn_implementation": "eager"})
    model = st.SentenceTransformer(modules=[tr, st.Pooling(32, pooling_mode="cls")], device="cpu")
    loss_fn = st.DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
    loss_fn.decoder.set_attn_implementation("eager")
    with h5py.File(init_ckpt, "r") as f, torch.no_grad():
        n = 0
        for name, p in loss_fn.decoder.named_parameters():
            if ".crossattention." in name or name.startswith("cls."):
                p.copy_(torch.from_numpy(f["params"]["decoder." + name][()]))
                n += 1
        assert n > 0
    opt = torch.optim.AdamW(loss_fn.parameters(), lr=lr, weight_decay=0.0)
    losses = []
    loss_fn.train()
    for ep, idx in st.engine_batches(len(sents), batch, epochs, seed):
        noisy = [st.noise_delete(sents[i], seed, i, ep) for i in idx]
        value = loss_fn([model.tokenize(noisy), model.tokenize([sents[i] for i in idx])], None)
        value.backward()
        torch.nn.utils.clip_grad_norm_(loss_fn.parameters(), 1.0)
        opt.step()
        opt.zero_grad()
        losses.append(value.item())
    params = {n: p.detach().numpy().copy() for n, p in model.transformers_model.named_parameters()}
    return losses, params


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--argent", required=True)
    ap.add_argument("--mpiexec", required=True)
    ap.add_argument("--work", required=True)
    a = ap.parse_args()
    shutil.rmtree(a.work, ignore_errors=True)
    os.makedirs(a.work)
    folder = os.path.join(a.work, "tiny")
    os.makedirs(folder)
    build_model(folder)
    sents = sentences()
    with open(os.path.join(a.work, "corpus.tsv"), "w") as f:
        f.write("text\n" + "".join(s + "\n" for s in sents))
    corpus = os.path.join(a.work, "corpus.h5")
    mpi = [a.mpiexec, "--allow-run-as-root", "--oversubscribe", "-np"]
    run(mpi + ["1", a.argent, "prepare", "--input", os.path.join(a.work, "corpus.tsv"), "--a", "text", "--vocab",
         os.path.join(folder, "vocab.txt"), "--out", corpus], os.path.join(a.work, "prepare.log"))
    batch, epochs, lr, seed, max_len = 4, 2, 2e-3, 7, 12
    common = ["tsdae", "--model", folder, "--data", corpus, "--batch", str(batch), "--seed", str(seed),
              "--max-length", str(max_len), "--check-every", "1"]
    init = os.path.join(a.work, "init")
    run(mpi + ["1", a.argent] + common + ["--steps", "1", "--lr", "0", "--out", init], init + ".log")
    ref_losses, ref = torch_run(folder, sents, os.path.join(init, "checkpoints", "ckpt-000001.h5"), batch, epochs,
                                lr, seed, max_len)
    steps = len(ref_losses)
    assert steps == 2 * ((len(sents) + batch - 1) // batch), steps
    failed = 0
    for np_ in (1, 2):
        out = os.path.join(a.work, f"np{np_}")
        run(mpi + [str(np_), a.argent] + common + ["--epochs", str(epochs), "--lr", str(lr), "--out", out],
            out + ".log")
        got = {}
        for line in open(os.path.join(out, "metrics.jsonl")):
            j = json.loads(line)
            if "loss" in j:
                got[j["step"]] = j["loss"]
        worst = max(abs(got[k + 1] - ref_losses[k]) / abs(ref_losses[k]) for k in range(steps))
        ok = len(got) == steps and worst <= 1e-5
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} np {np_}: {steps} step losses, worst relative difference {worst:.2e} "
              f"(first {ref_losses[0]:.6f}, last {ref_losses[-1]:.6f})")
        with h5py.File(os.path.join(out, "model.h5"), "r") as f:
            names = set(f["params"].keys())
            pooling = f["config"].attrs["pooling"]
            pooling = pooling.decode() if isinstance(pooling, bytes) else str(pooling)
            worst_t, worst_name = 0.0, ""
            for name, want in ref.items():
                # The key bias adds the same amount to every score of a query, which the
                # softmax ignores: its true gradient is zero, its computed one rounding noise
                # that AdamW turns into lr-sized steps of either sign (not compared).
                if name.endswith("attention.self.key.bias"):
                    continue
                if name not in names:
                    print(f"FAIL np {np_}: model.h5 has no {name}")
                    failed += 1
                    continue
                have = f["params"][name][()]
                rel = float(np.abs(have - want).max() / max(np.abs(want).max(), 1e-30))
                if rel > worst_t:
                    worst_t, worst_name = rel, name
            extra = [n for n in names if n not in ref]
        ok = worst_t <= 1e-4 and not extra and pooling == "cls"
        failed += not ok
        print(f"{'ok  ' if ok else 'FAIL'} np {np_}: final encoder, worst tensor {worst_name} {worst_t:.2e}; "
              f"pooling {pooling}; tensors beyond the encoder: {extra or 'none'}")
    print("PASS" if not failed else f"{failed} check(s) failed")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
