"""TSDAE alone (jobs/recipes/tsdae.recipe) in PyPI sentence-transformers, reduced to fit this
machine: all-MiniLM-L6-v2 with CLS pooling, DenoisingAutoEncoderLoss with the tied decoder
on the first --sentences unique sentences of MNLI dev-matched rows --rows (premise then
hypothesis, in order), deletion noise 0.6 drawn afresh each epoch, batch 8, lr 3e-5
constant, no weight decay, max length --max-len; then STS-B dev (EmbeddingSimilarityEvaluator).

Writes a JSON object (--out, or stdout) with the metrics before and after and the wall times.
Exits 77 when a Python package, the model package or the data is missing.

  python3 tests/pipeline/st_tsdae.py --shared ../shared/data --out st-tsdae.json
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
    ap.add_argument("--rows", default="0:500", help="MNLI dev-matched rows whose sentences form the corpus")
    ap.add_argument("--sentences", type=int, default=500, help="first N unique sentences")
    ap.add_argument("--dev", default="0:1500")
    ap.add_argument("--max-len", type=int, default=64)
    ap.add_argument("--batch", type=int, default=8)
    ap.add_argument("--epochs", type=int, default=1)
    ap.add_argument("--lr", type=float, default=3e-5)
    ap.add_argument("--seed", type=int, default=42)
    ap.add_argument("--threads", type=int, default=2)
    a = ap.parse_args()
    if not os.path.isdir(a.shared):
        st.skip(f"{a.shared}: no shared data folder")
    st.setup(a.threads, a.seed)
    path = st.minilm_dir()
    tm = st.Timer()
    t_all = time.time()
    sents = st.unique_sentences(st.mnli(a.shared, *span(a.rows)))[:a.sentences]
    dev = st.stsb(a.shared, "dev", *span(a.dev))
    res = {"settings": vars(a), "sizes": {"sentences": len(sents), "dev": len(dev)}}
    model = st.bi_encoder(path, a.max_len, pooling="cls")
    res["minilm_cls"] = tm.run("eval-before", st.eval_sts, model, dev)
    st.setup(a.threads, a.seed)
    tm.run("tsdae", st.fit_tsdae, model, sents, a.batch, a.epochs, a.lr, a.seed)
    res["tsdae"] = tm.run("eval", st.eval_sts, model, dev)
    res["time"] = tm.t
    res["time"]["total"] = round(time.time() - t_all, 1)
    st.write_result(a.out, res)


if __name__ == "__main__":
    main()
