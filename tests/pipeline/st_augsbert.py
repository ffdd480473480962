"""The Augmented SBERT recipe (reference.md section 7, jobs/recipes/augmented-sbert.recipe) in
PyPI sentence-transformers, reduced to fit this machine; the reference the quality table
(docs/results.md, "Quality") and the heavy pipeline test compare argent with.

  gold    MNLI dev-matched rows --gold (entailment -> 1, else 0)
  cross   CrossEncoder(all-MiniLM-L6-v2, 2 labels), 1 epoch, cross-entropy
  silver  MNLI rows --space labelled by the cross-encoder: softmax, argmax -> 0/1
  bi      SentenceTransformer(all-MiniLM-L6-v2), CosineSimilarityLoss, 1 epoch, on
          gold only (the baseline) and on gold + silver (duplicate pairs dropped, gold first)
  eval    STS-B dev rows --dev: EmbeddingSimilarityEvaluator (spearman_cosine...);
          the cross-encoder: argmax accuracy and macro F1 on MNLI rows --heldout

Writes a JSON object (--out, or stdout) with each model's metrics and each stage's wall time.
Exits 77 when a Python package, the model package or the data is missing.

  python3 tests/pipeline/st_augsbert.py --shared ../shared/data --out st-augsbert.json
"""
import argparse
import os
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import st_common as st  # noqa: E402


def span(text):
    lo, hi = text.split(":")
    return int(lo), int(hi)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shared", required=True, help="the shared data folder (../shared/data)")
    ap.add_argument("--out", default="-")
    ap.add_argument("--gold", default="0:500", help="MNLI rows of the gold set")
    ap.add_argument("--space", default="500:1500", help="MNLI rows of the pair space (silver)")
    ap.add_argument("--heldout", default="9000:9400", help="MNLI rows for the cross-encoder's accuracy")
    ap.add_argument("--dev", default="0:1500", help="STS-B dev rows to evaluate on")
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--cross-batch", type=int, default=16)
    ap.add_argument("--cross-lr", type=float, default=2e-5)
    ap.add_argument("--bi-batch", type=int, default=16)
    ap.add_argument("--bi-lr", type=float, default=2e-5)
    ap.add_argument("--warmup", default="10%")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--skip-gold-only", action="store_true", help="do not train the gold-only baseline")
    a = ap.parse_args()
    if not os.path.isdir(a.shared):
        st.skip(f"{a.shared}: no shared data folder")
    st.setup(a.threads, a.seed)
    path = st.minilm_dir()
    tm = st.Timer()
    t_all = time.time()

    gold = st.mnli(a.shared, *span(a.gold))
    space = st.mnli(a.shared, *span(a.space))
    heldout = st.mnli(a.shared, *span(a.heldout))
    dev = st.stsb(a.shared, "dev", *span(a.dev))
    res = {"settings": vars(a), "sizes": {"gold": len(gold), "space": len(space), "heldout": len(heldout),
                                          "dev": len(dev)}}

    base = st.bi_encoder(path, a.max_len)
    res["minilm"] = tm.run("eval-minilm", st.eval_sts, base, dev)
    del base

    # Cross-encoder on gold.
    # Timed like argent's train-cross stage (which also loads the model, evaluates on the
    # held-out pairs after training and saves): "train-cross" is the training loop alone,
    # "train-cross-stage" adds the model load and the held-out evaluation (not the save).
    t_stage = time.time()
    st.setup(a.threads, a.seed)
    ce = st.CrossEncoder(path, num_labels=2, max_length=a.max_len, device="cpu")
    tm.run("train-cross", st.fit_cross, ce, gold, a.cross_batch, 1, a.cross_lr, a.warmup, 0.01, a.seed, a.max_len)
    prob = st.cross_predict(ce, heldout)
    tm.t["train-cross-stage"] = round(time.time() - t_stage, 1)
    gold_ho = st.np.array([p[2] for p in heldout])
    acc = float((prob.argmax(1) == gold_ho).mean())
    from sklearn.metrics import f1_score
    res["cross"] = {"accuracy": acc, "f1_macro": float(f1_score(gold_ho, prob.argmax(1), average="macro"))}

    # Silver labels.
    prob = tm.run("label", st.cross_predict, ce, space)
    silver = [(p[0], p[1], int(k)) for p, k in zip(space, prob.argmax(1))]
    res["silver"] = {"pairs": len(silver), "positive": int(sum(s[2] for s in silver)),
                     "agree_with_gold_labels": float(st.np.mean([s[2] == p[2] for s, p in zip(silver, space)]))}
    del ce

    # Bi-encoders.
    if not a.skip_gold_only:
        st.setup(a.threads, a.seed)
        bi = st.bi_encoder(path, a.max_len)
        tm.run("train-bi-gold", st.fit_bi, bi, gold, a.bi_batch, 1, a.bi_lr, a.warmup, 0.01, a.seed)
        res["bi_gold"] = tm.run("eval-bi-gold", st.eval_sts, bi, dev)
        del bi
    both = st.drop_duplicate_pairs(gold + silver)
    res["sizes"]["gold_silver"] = len(both)
    st.setup(a.threads, a.seed)
    bi = st.bi_encoder(path, a.max_len)
    tm.run("train-bi", st.fit_bi, bi, both, a.bi_batch, 1, a.bi_lr, a.warmup, 0.01, a.seed)
    res["bi_gold_silver"] = tm.run("eval-bi", st.eval_sts, bi, dev)
    res["time"] = tm.t
    res["time"]["total"] = round(time.time() - t_all, 1)
    st.write_result(a.out, res)


if __name__ == "__main__":
    main()
