"""Export round trip on the synthetic tiny models of tests/unit/test_hfmodel.c (runs after it):
SentenceTransformer(export_st) and CrossEncoder(export_ce) must load the folders argent wrote,
offline, and reproduce argent's own embeddings and logits (written to argent.json).

Usage: tiny_export_check.py OUT   (OUT = build/hfmodel-tiny). Exit 77 when sentence-transformers
is not installed or test_hfmodel has not produced OUT.
"""
import json
import os
import sys


def main():
    out = sys.argv[1]
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
    rep_path = os.path.join(out, "argent.json")
    if not os.path.exists(rep_path):
        print(f"SKIPPED: {rep_path} missing (test_hfmodel did not run)")
        sys.exit(77)
    try:
        import numpy as np
        import torch
        from sentence_transformers import CrossEncoder, SentenceTransformer
    except ImportError as e:
        print(f"SKIPPED: Python package missing: {e}")
        sys.exit(77)
    torch.set_num_threads(1)
    rep = json.load(open(rep_path))
    fails = 0

    st = SentenceTransformer(rep["export_st"], device="cpu")
    got = st.encode(rep["texts"], convert_to_numpy=True, batch_size=len(rep["texts"]))
    want = np.array(rep["embeddings"], dtype=np.float32)
    d = float(np.abs(got - want).max())
    ok = got.shape == want.shape and d <= 1e-5
    fails += not ok
    print(f"{'ok  ' if ok else 'FAIL'} SentenceTransformer(export_st) == argent: max |diff| {d:.3g} over "
          f"{len(rep['texts'])} texts; modules {[type(m).__name__ for m in st]}, max_seq_length {st.max_seq_length}")
    ok = st.max_seq_length == 10 and len(st) == 3
    fails += not ok
    print(f"{'ok  ' if ok else 'FAIL'} pipeline: Transformer, Pooling, Normalize; max_seq_length 10")

    ce = CrossEncoder(rep["export_ce"], device="cpu")
    pairs = [(rep["texts"][i], rep["texts"][i + 1]) for i in range(len(rep["texts"]) - 1)]
    # CrossEncoder applies no activation for more than one label: these are the logits.
    logits = np.asarray(ce.predict(pairs, convert_to_numpy=True, batch_size=len(pairs)))
    want = np.array(rep["ce_logits"], dtype=np.float32)
    d = float(np.abs(logits - want).max())
    ok = logits.shape == want.shape and d <= 1e-5
    fails += not ok
    print(f"{'ok  ' if ok else 'FAIL'} CrossEncoder(export_ce) logits == argent: max |diff| {d:.3g}, "
          f"labels {ce.config.id2label}")
    ok = ce.config.id2label == {0: "contradiction", 1: "entailment", 2: "neutral"}
    fails += not ok
    print(f"{'ok  ' if ok else 'FAIL'} id2label kept")
    print(f"{fails} failed")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
