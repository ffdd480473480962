"""Domain adaptation (jobs/recipes/domain-adaptation.recipe) in PyPI sentence-transformers,
reduced to fit this machine. Target domain: STS 2016 question-question (StackExchange
question titles).

  tsdae+sup  all-MiniLM-L6-v2 with CLS pooling, TSDAE (tied decoder, noise 0.6 afresh each
             epoch, batch 8, lr 3e-5 constant, no weight decay) on the first --sentences
             unique sentences of the target's pairs (all 1,555, scored or not, without
             their scores), then supervised: CosineSimilarityLoss on STS-B train rows
             --train (score / 5), batch 16, 1 epoch, linear warm-up --warmup then decay,
             lr 2e-5, weight decay 0.01
  sup only   all-MiniLM-L6-v2 as it is (mean pooling + Normalize), the same supervised step
Both evaluated on the target's 209 scored pairs (EmbeddingSimilarityEvaluator, score / 5),
also before any training.

Writes a JSON object (--out, or stdout); exits 77 when a package, the model or the data is
missing.

  python3 tests/pipeline/st_domain.py --shared ../shared/data --out st-domain.json
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
    ap.add_argument("--shared", required=True)
    ap.add_argument("--out", default="-")
    ap.add_argument("--sentences", type=int, default=500)
    ap.add_argument("--train", default="0:500", help="STS-B train rows for the supervised step")
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--tsdae-batch", type=int, default=8)
    ap.add_argument("--tsdae-lr", type=float, default=3e-5)
    ap.add_argument("--batch", type=int, default=16)
    ap.add_argument("--lr", type=float, default=2e-5)
    ap.add_argument("--warmup", default="10%")
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not os.path.isdir(a.shared):
        st.skip(f"{a.shared}: no shared data folder")
    st.setup(a.threads, a.seed)
    path = st.minilm_dir()
    tm = st.Timer()
    t_all = time.time()
    target = st.sts16_qq(a.shared, scored=False)
    sents = st.unique_sentences(target)[:a.sentences]
    test = st.sts16_qq(a.shared, scored=True)
    train = st.stsb(a.shared, "train", *span(a.train))
    res = {"settings": vars(a), "sizes": {"sentences": len(sents), "test": len(test), "train": len(train)}}

    base = st.bi_encoder(path, a.max_len)
    res["minilm"] = tm.run("eval-minilm", st.eval_sts, base, test)
    st.setup(a.threads, a.seed)
    tm.run("sup-only", st.fit_bi, base, train, a.batch, 1, a.lr, a.warmup, 0.01, a.seed)
    res["sup_only"] = tm.run("eval-sup-only", st.eval_sts, base, test)
    del base

    st.setup(a.threads, a.seed)
    model = st.bi_encoder(path, a.max_len, pooling="cls")
    res["minilm_cls"] = tm.run("eval-minilm-cls", st.eval_sts, model, test)
    tm.run("tsdae", st.fit_tsdae, model, sents, a.tsdae_batch, 1, a.tsdae_lr, a.seed)
    res["tsdae"] = tm.run("eval-tsdae", st.eval_sts, model, test)
    st.setup(a.threads, a.seed)
    tm.run("tsdae-sup", st.fit_bi, model, train, a.batch, 1, a.lr, a.warmup, 0.01, a.seed)
    res["tsdae_sup"] = tm.run("eval-tsdae-sup", st.eval_sts, model, test)
    res["time"] = tm.t
    res["time"]["total"] = round(time.time() - t_all, 1)
    st.write_result(a.out, res)


if __name__ == "__main__":
    main()
