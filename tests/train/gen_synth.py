"""Writes the small synthetic data of the train-bi tests (committed next to this script):
vocab.txt (special tokens + made-up words), pairs.tsv (training pairs: sentence a,
sentence b, similarity score in [0, 1], class 0/1) and sts.tsv (held-out pairs, same
columns). A pair's score is the fraction of "concepts" the two sentences share; each
concept has three synonyms, so a model must learn that synonyms mean the same.
Deterministic: python3 gen_synth.py rewrites identical files."""
import os
import random

HERE = os.path.dirname(os.path.abspath(__file__))
SYL = ["ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pu"]
N_SLOT, N_CONCEPT, N_SYN = 3, 6, 3
FILL = ["the", "a", "then", "so", "very"]


def word(s, c, k):
    i = (s * N_CONCEPT + c) * N_SYN + k
    return SYL[i % 10] + SYL[(i // 10) % 10] + SYL[(i // 100 + s) % 10]


def sentence(rng, concepts):
    out = []
    for s, c in enumerate(concepts):
        if rng.random() < 0.3:
            out.append(rng.choice(FILL))
        out.append(word(s, c, rng.randrange(N_SYN)))
    return " ".join(out)


def pairs(rng, n):
    rows = []
    for _ in range(n):
        a = [rng.randrange(N_CONCEPT) for _ in range(N_SLOT)]
        para = rng.random() < 0.35
        b = [x if (para or rng.random() < 0.5) else rng.randrange(N_CONCEPT) for x in a]
        score = sum(x == y for x, y in zip(a, b)) / N_SLOT
        rows.append((sentence(rng, a), sentence(rng, b), f"{score:.4f}", "1" if score >= 0.5 else "0"))
    return rows


def main():
    rng = random.Random(20240607)
    words = sorted({word(s, c, k) for s in range(N_SLOT) for c in range(N_CONCEPT) for k in range(N_SYN)})
    with open(os.path.join(HERE, "vocab.txt"), "w") as f:
        f.write("\n".join(["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"] + FILL + words) + "\n")
    for name, n in (("pairs.tsv", 480), ("sts.tsv", 120)):
        with open(os.path.join(HERE, name), "w") as f:
            for r in pairs(rng, n):
                f.write("\t".join(r) + "\n")


if __name__ == "__main__":
    main()
