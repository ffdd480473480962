"""Check an `argent prepare` output against Python's own reading of the source file.

Reads the HDF5 dataset with h5py only (the schema must explain itself), reads the source
with Python's csv module (CSV) or by splitting on tabs (TSV), and checks, pair by pair,
the texts, the labels (float32 of the scaled score, or the mapped class), the line numbers,
that the sentences are unique, and that every sentence's word pieces equal Hugging Face
BertTokenizer(do_lower_case=True).tokenize + convert_tokens_to_ids with the same vocab.

usage: check_dataset.py DATASET SOURCE --format csv|tsv --a N --b N --label N
         [--scale HI] [--kind score|class] [--label-map MAP] [--header] [--vocab FILE]
         [--expect-pairs N]
Exit 0 when everything matches, 1 with the first differences otherwise, 77 when h5py or
transformers is missing.
"""
import argparse
import csv
import os
import sys

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
try:
    import h5py
    import numpy as np
except ImportError as e:  # pragma: no cover
    print(f"SKIPPED: {e}")
    sys.exit(77)


def source_rows(path, fmt, header):
    """(line, fields) for each data row, line = 1-based line where the row starts."""
    rows = []
    with open(path, newline="", encoding="utf-8-sig") as f:
        if fmt == "csv":
            r = csv.reader(f)
            line = 1
            for fields in r:
                rows.append((line, fields))
                line = r.line_num + 1
        else:
            for i, raw in enumerate(f):
                raw = raw.rstrip("\n").rstrip("\r")
                if raw == "":
                    continue
                rows.append((i + 1, raw.split("\t")))
    return rows[1:] if header else rows


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dataset")
    ap.add_argument("source")
    ap.add_argument("--format", default="csv")
    ap.add_argument("--a", type=int, default=0)
    ap.add_argument("--b", type=int, default=1)
    ap.add_argument("--label", type=int, default=2)
    ap.add_argument("--scale", type=float, default=None)
    ap.add_argument("--header", action="store_true")
    ap.add_argument("--kind", default="score")
    ap.add_argument("--label-map", help="name=value,... as given to argent prepare")
    ap.add_argument("--vocab")
    ap.add_argument("--expect-pairs", type=int)
    args = ap.parse_args()

    errors = []
    with h5py.File(args.dataset, "r") as f:
        assert f.attrs["argent_format"] == "argent.dataset", "argent_format attribute"
        assert int(f.attrs["schema_version"]) == 1
        texts = [t.decode("utf-8") for t in f["sentences/text"][:]]
        off = f["sentences/token_offsets"][:]
        toks = f["sentences/tokens"][:]
        a, b = f["pairs/a"][:], f["pairs/b"][:]
        label, line = f["pairs/label"][:], f["pairs/line"][:]
        kind = f["pairs"].attrs["label_kind"]
        assert label.dtype == np.float32 and toks.dtype == np.int32 and off.dtype == np.int64

    rows = source_rows(args.source, args.format, args.header)
    if args.expect_pairs is not None and len(a) != args.expect_pairs:
        errors.append(f"{len(a)} pairs, expected {args.expect_pairs}")
    if len(rows) != len(a):
        errors.append(f"{len(a)} pairs in the dataset, {len(rows)} rows in the source")
    if len(set(texts)) != len(texts):
        errors.append("sentences/text has duplicates")
    for p, (ln, fields) in enumerate(rows[: len(a)]):
        if texts[a[p]] != fields[args.a] or texts[b[p]] != fields[args.b]:
            errors.append(f"pair {p} (line {ln}): texts differ")
        if line[p] != ln:
            errors.append(f"pair {p}: line {line[p]}, the source row starts on line {ln}")
        lmap = dict(kv.split("=") for kv in args.label_map.split(",")) if args.label_map else None
        want = float(lmap[fields[args.label]] if lmap else fields[args.label])
        if args.scale:
            want = want / args.scale
        if np.float32(want) != label[p]:
            errors.append(f"pair {p} (line {ln}): label {label[p]!r}, want float32({want!r})")
        if len(errors) > 10:
            break
    if kind != args.kind:
        errors.append(f"label_kind {kind}, expected {args.kind}")

    if args.vocab:
        try:
            import transformers
        except ImportError as e:  # pragma: no cover
            print(f"SKIPPED: {e}")
            sys.exit(77)
        # transformers 5 renamed the pure-Python tokenizer; 4.x takes vocab_file
        if hasattr(transformers, "BertTokenizerLegacy"):
            tk = transformers.BertTokenizerLegacy(vocab_file=args.vocab, do_lower_case=True)
        else:
            tk = transformers.BertTokenizer(vocab_file=args.vocab, do_lower_case=True)
        bad = 0
        for i, t in enumerate(texts):
            want = tk.convert_tokens_to_ids(tk.tokenize(t))
            got = toks[off[i]:off[i + 1]].tolist()
            if got != want:
                bad += 1
                if bad <= 3:
                    errors.append(f"sentence {i} {t!r}: pieces {got[:12]}..., BertTokenizer {want[:12]}...")
        print(f"word pieces checked for {len(texts)} sentences, {bad} differ")

    print(f"{args.dataset}: {len(a)} pairs, {len(texts)} sentences, {len(toks)} word pieces")
    for e in errors[:12]:
        print("FAIL", e)
    sys.exit(1 if errors else 0)


if __name__ == "__main__":
    main()
