"""Loads an exported train-bi model with SentenceTransformer(DIR), encodes the sentences of
an argent dataset, and compares with `argent encode`'s embeddings (max |diff| <= 1e-4,
cosine >= 0.9999). usage: check_export.py ST_DIR EMB.h5 DATASET.h5. Exit 77 when h5py or
sentence-transformers is missing."""
import sys

try:
    import h5py
    import numpy as np
    from sentence_transformers import SentenceTransformer
except ImportError as e:
    print(f"SKIPPED export check: {e}")
    sys.exit(77)

st_dir, emb_path, ds_path = sys.argv[1:4]
with h5py.File(ds_path, "r") as f:
    texts = [t.decode() if isinstance(t, bytes) else t for t in f["sentences/text"][:]]
with h5py.File(emb_path, "r") as f:
    ours = f["embeddings"][:]
model = SentenceTransformer(st_dir, device="cpu")
ref = model.encode(texts, batch_size=32, convert_to_numpy=True)
d = float(np.abs(ref - ours).max())
cos = float((np.sum(ref * ours, 1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(ours, axis=1))).min())
ok = d <= 1e-4 and cos >= 0.9999
print(f"{'ok  ' if ok else 'FAIL'} exported model in SentenceTransformer vs argent encode: max |diff| {d:.3g}, "
      f"min cosine {cos:.7f} ({len(texts)} sentences)")
sys.exit(0 if ok else 1)
