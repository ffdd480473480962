"""Tokenizer throughput, one thread: argent vs Hugging Face's Rust ("fast") and Python
("slow") BERT tokenizers on the STS-B (train + dev, both columns) and SNLI (dev + test,
both sides) sentences, in the same run. Prints a table; the token counts must agree.

  python3 tests/bench/bench_tokenizer.py --build build [--shared ../shared] [--rounds 3]
"""
import argparse
import csv
import json
import os
import subprocess
import sys
import time

os.environ["TOKENIZERS_PARALLELISM"] = "false"  # Rust encode_batch on one thread
os.environ["RAYON_NUM_THREADS"] = "1"
os.environ.setdefault("HF_HUB_OFFLINE", "1")

HERE = os.path.dirname(os.path.abspath(__file__))


def sentences(data):
    out = []
    for split in ("train", "dev"):
        with open(os.path.join(data, "stsb", "stsb-en-%s.csv" % split), encoding="utf-8", newline="") as f:
            for r in csv.reader(f):
                out += [r[0], r[1]]
    for split in ("dev", "test"):
        for side in ("s1", "s2"):
            with open(os.path.join(data, "nli", "snli-%s.%s" % (split, side)), encoding="utf-8") as f:
                out += f.read().split("\n")[:-1]
    return out


def timed(fn, min_s):
    reps, t0 = 0, time.perf_counter()
    while True:
        r = fn()
        reps += 1
        t = time.perf_counter() - t0
        if t >= min_s:
            return r, t / reps


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--build", required=True, help="build folder holding tests/../bench_tokenizer")
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "..", "shared"))
    ap.add_argument("--seconds", type=float, default=1.0, help="minimum time of each argent measurement")
    ap.add_argument("--rounds", type=int, default=3, help="alternating rounds; the best of each is kept")
    args = ap.parse_args()
    cpu = min(os.sched_getaffinity(0))
    os.sched_setaffinity(0, {cpu})  # every measurement (and the C child) on the same single core
    data = os.path.join(os.path.abspath(args.shared), "data")
    vocab = os.path.join(data, "vocab", "bert-base-uncased-vocab.txt")
    if not os.path.exists(vocab):
        sys.exit("no %s: the benchmark needs the shared data" % vocab)
    texts = sentences(data)
    assert not any("\n" in s for s in texts)
    path = os.path.join(args.build, "bench_tokenizer_texts.txt")
    with open(path, "w", encoding="utf-8", newline="\n") as f:
        f.write("\n".join(texts) + "\n")
    exe = None
    for cand in ("bench_tokenizer", os.path.join("tests", "bench_tokenizer")):
        if os.path.exists(os.path.join(args.build, cand)):
            exe = os.path.join(args.build, cand)
    if not exe:
        sys.exit("no bench_tokenizer in %s (build the target bench_tokenizer)" % args.build)

    import logging
    logging.disable(logging.WARNING)
    import transformers
    import tokenizers
    from transformers import BertTokenizer
    from transformers.models.bert.tokenization_bert_legacy import BertTokenizerLegacy

    fast = BertTokenizer(vocab=vocab, do_lower_case=True)
    slow = BertTokenizerLegacy(vocab, do_lower_case=True)
    # Rounds alternate the implementations so that load from other processes hits them
    # alike; each row keeps its best round.
    best = {}

    def keep(name, tokens, sec):
        if name not in best or sec < best[name][1]:
            best[name] = (tokens, sec)

    for _ in range(args.rounds):
        r = json.loads(subprocess.run([exe, vocab, path, str(args.seconds)], check=True,
                                      capture_output=True, text=True).stdout)
        keep("argent (C)", r["tokens"], r["seconds"])
        enc, t = timed(lambda: fast._tokenizer.encode_batch(texts, add_special_tokens=False), 0)
        keep("HF fast, Rust encode_batch", sum(len(e.ids) for e in enc), t)
        ids, t = timed(lambda: fast(texts, add_special_tokens=False)["input_ids"], 0)
        keep("HF fast, tokenizer(texts)", sum(len(x) for x in ids), t)
    ids, t = timed(lambda: [slow.encode(s, add_special_tokens=False) for s in texts], 0)
    keep("HF slow (Python), one round", sum(len(x) for x in ids), t)
    rows = [(k,) + v for k, v in best.items()]

    print("Tokenizer throughput, one thread (core %d), best of %d rounds: %d sentences (STS-B train+dev, "
          "SNLI dev+test), bert-base-uncased vocab; transformers %s, tokenizers %s; load average %.1f"
          % (cpu, args.rounds, len(texts), transformers.__version__, tokenizers.__version__, os.getloadavg()[0]))
    print("| implementation | tokens | seconds | tokens/s | sentences/s | vs HF fast (Rust) |")
    print("|---|---:|---:|---:|---:|---:|")
    ref = rows[1][1] / rows[1][2]
    for name, tok, sec in rows:
        print("| %s | %d | %.3f | %.3g | %.3g | %.2fx |" % (name, tok, sec, tok / sec, len(texts) / sec,
                                                          tok / sec / ref))
    if len({tok for _, tok, _ in rows}) != 1:
        sys.exit("token counts differ between implementations")


if __name__ == "__main__":
    main()
