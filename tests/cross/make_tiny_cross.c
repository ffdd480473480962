/* Inputs of the cross-encoder stage tests, generated (no downloads, no Python): a tiny
 * vocab, tiny random BERT checkpoints and pair datasets of a synthetic task, written to DIR:
 *
 *   vocab.txt      [PAD] [UNK] [CLS] [SEP] [MASK], filler words, topic words
 *   bi.h5          bi-encoder checkpoint (random init): a pretrained encoder for train-cross,
 *                  and the wrong kind of model for label
 *   cross.h5       2-label cross-encoder checkpoint (random init, std 0.3 so that outputs
 *                  differ between pairs)
 *   cross1.h5      1-label cross-encoder checkpoint (same encoder)
 *   train.h5       gold pairs: 1 when both sentences name the same topic (with either of its
 *                  two synonyms), else 0; class labels, 2 classes, label map
 *   dev.h5         held-out gold pairs of the same task
 *   pool.h5        unlabeled pairs to silver-label (source unlabeled, NaN labels)
 *   sentences.h5   sentences only (no pairs): a wrong input for label
 *
 * Sentences are 2..6 words: filler words around one topic word; the generator is keyed on
 * (seed, pair), so every run writes the same bytes. Usage: make_tiny_cross DIR [POOL_PAIRS]. */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/checkpoint.h"
#include "io/dataset.h"
#include "io/hfmodel.h"
#include "io/tokenizer.h"
#include "nn/error.h"
#include "nn/rng.h"

enum { N_TOPIC = 2, N_SYN = 3, N_FILL = 10 };
static const char *fillers[N_FILL] = {"the", "a", "of", "and", "very", "then", "so", "it", "is", "was"};
static const char *topics[N_TOPIC][N_SYN] = {{"cat", "dog", "bird"}, {"car", "ship", "train"}};

static char dir[1024];

static const char *path(const char *name) {
    static char p[4][1100];
    static int k;
    char *s = p[k++ % 4];
    snprintf(s, 1100, "%s/%s", dir, name);
    return s;
}

static int write_vocab(void) {
    FILE *f = fopen(path("vocab.txt"), "w");
    if (!f) return ag_err("%s: cannot create", path("vocab.txt"));
    fputs("[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\n", f);
    for (int i = 0; i < N_FILL; i++) fprintf(f, "%s\n", fillers[i]);
    for (int t = 0; t < N_TOPIC; t++)
        for (int s = 0; s < N_SYN; s++) fprintf(f, "%s\n", topics[t][s]);
    return fclose(f) ? ag_err("write failed") : 0;
}

/* A sentence about `topic`, its surface drawn from (seed, key). */
static void sentence(int topic, uint64_t seed, uint64_t key, char *out, size_t n) {
    int len = 2 + (int)(ag_rng_u32(seed, AG_RNG_NOISE, key, 1, 0) % 5);
    int at = (int)(ag_rng_u32(seed, AG_RNG_NOISE, key, 2, 0) % (uint32_t)len);
    size_t o = 0;
    out[0] = 0;
    for (int w = 0; w < len; w++) {
        const char *word = w == at ? topics[topic][ag_rng_u32(seed, AG_RNG_NOISE, key, 3, 0) % N_SYN]
                                   : fillers[ag_rng_u32(seed, AG_RNG_NOISE, key, 4, (uint64_t)w) % N_FILL];
        o += (size_t)snprintf(out + o, n - o, "%s%s", w ? " " : "", word);
    }
}

/* n pairs of the task from key range base..; labelled or not. */
static int make_pairs(const ag_tokenizer *tk, int n, uint64_t seed, uint64_t base, int labelled, const char *file) {
    ag_dataset ds;
    ag_dataset_init(&ds);
    char ta[128], tb[128];
    for (int i = 0; i < n; i++) {
        uint64_t key = base + (uint64_t)i;
        /* Label 1 (half the pairs): both sentences are about animals (topic 0); label 0:
         * one of the three other combinations of topics. */
        int same = ag_rng_uniform(seed, AG_RNG_NOISE, key, 11, 0) < 0.5f;
        int combo = 1 + (int)(ag_rng_u32(seed, AG_RNG_NOISE, key, 12, 0) % 3);
        int t1 = same ? 0 : combo & 1, t2 = same ? 0 : combo >> 1;
        sentence(t1, seed, key * 2, ta, sizeof ta);
        sentence(t2, seed, key * 2 + 1, tb, sizeof tb);
        int64_t a = ag_dataset_intern(&ds, ta, strlen(ta)), b = ag_dataset_intern(&ds, tb, strlen(tb));
        if (a < 0 || b < 0 || ag_dataset_add_pair(&ds, (int32_t)a, (int32_t)b, labelled ? (float)same : NAN, i + 1))
            return -1;
    }
    /* Tokenise every sentence. */
    int64_t S = ds.n_sentences;
    int64_t *off = malloc((size_t)(S + 1) * sizeof *off);
    int32_t *ids = NULL;
    int nid = 0, cap = 0;
    off[0] = 0;
    for (int64_t s = 0; s < S; s++) {
        size_t len;
        const char *txt = ag_dataset_text(&ds, s, &len);
        if (ag_tok_wordpieces(tk, txt, len, &ids, &nid, &cap)) return -1;
        off[s + 1] = nid;
    }
    ag_dataset_set_tokens(&ds, off, ids);
    snprintf(ds.vocab_sha256, sizeof ds.vocab_sha256, "%s", ag_tokenizer_vocab_hash(tk));
    if (labelled) {
        ds.label_kind = AG_LABEL_CLASS;
        ds.source = AG_SOURCE_GOLD;
        ds.num_classes = 2;
        ds.label_map = strdup("different=0,same=1");
    } else {
        ds.label_kind = AG_LABEL_NONE;
        ds.source = AG_SOURCE_UNLABELED;
    }
    ag_dataset_attr_str(&ds, "generator", "tests/cross/make_tiny_cross.c");
    int rc = ag_dataset_write(&ds, file);
    ag_dataset_free(&ds);
    return rc;
}

static int sentences_only(const ag_tokenizer *tk, const char *file) {
    ag_dataset ds;
    ag_dataset_init(&ds);
    const char *s[] = {"the cat", "a boat"};
    int64_t *off = malloc(3 * sizeof *off);
    int32_t *ids = NULL;
    int n = 0, cap = 0;
    off[0] = 0;
    for (int i = 0; i < 2; i++) {
        ag_dataset_intern(&ds, s[i], strlen(s[i]));
        if (ag_tok_wordpieces(tk, s[i], strlen(s[i]), &ids, &n, &cap)) return -1;
        off[i + 1] = n;
    }
    ag_dataset_set_tokens(&ds, off, ids);
    snprintf(ds.vocab_sha256, sizeof ds.vocab_sha256, "%s", ag_tokenizer_vocab_hash(tk));
    int rc = ag_dataset_write(&ds, file);
    ag_dataset_free(&ds);
    return rc;
}

/* A tiny model checkpoint: kind, labels; weights N(0, std) keyed on the seed. */
static int make_model(ag_model_kind kind, int num_labels, float std, const char *file, const char *vocab, size_t vlen,
                      int V) {
    ag_model_desc md;
    ag_model_desc_init(&md);
    md.vocab_size = V;
    md.hidden_size = 32;
    md.num_hidden_layers = 2;
    md.num_attention_heads = 4;
    md.intermediate_size = 64;
    md.max_position_embeddings = 64;
    md.kind = kind;
    md.has_pooler = kind == AG_MODEL_CROSS_ENCODER;
    md.num_labels = num_labels;
    md.max_seq_length = 32;
    for (int k = 0; k < num_labels; k++) snprintf(md.id2label[k], AG_LABEL_MAX, k ? "same" : "different");
    if (num_labels == 1) snprintf(md.id2label[0], AG_LABEL_MAX, "same");
    snprintf(md.architecture, sizeof md.architecture, "%s",
             kind == AG_MODEL_CROSS_ENCODER ? "BertForSequenceClassification" : "BertModel");
    md.vocab = malloc(vlen + 1);
    memcpy(md.vocab, vocab, vlen + 1);
    md.vocab_len = vlen;
    ag_bert m;
    ag_xhead h;
    ag_params p;
    ag_params_init(&p);
    int rc = ag_model_register(&md, &m, &p, &h) || ag_params_alloc(&p) ? -1 : 0;
    if (!rc) {
        ag_bert_init_weights(&m, &p, 7);
        for (int i = 0; i < p.n; i++)
            if (p.t[i].ndim == 2) ag_init_normal(&p, i, std, 7);
        ag_train_state ts;
        ag_train_state_init(&ts);
        rc = ag_ckpt_write(file, &md, &ts, &p, NULL, NULL);
    }
    ag_bert_free(&m);
    ag_params_free(&p);
    ag_model_desc_free(&md);
    return rc;
}

int main(int argc, char **argv) {
    if (argc < 2) {
        fprintf(stderr, "usage: make_tiny_cross DIR [POOL_PAIRS]\n");
        return 2;
    }
    snprintf(dir, sizeof dir, "%s", argv[1]);
    int pool = argc > 2 ? atoi(argv[2]) : 1000;
    /* mkdir -p */
    for (char *s = dir + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            mkdir(dir, 0777);
            *s = '/';
        }
    mkdir(dir, 0777);
    if (write_vocab()) goto fail;
    ag_tokenizer *tk = ag_tokenizer_load(path("vocab.txt"), 1);
    if (!tk) goto fail;
    FILE *f = fopen(path("vocab.txt"), "rb");
    char vocab[4096];
    size_t vlen = fread(vocab, 1, sizeof vocab - 1, f);
    vocab[vlen] = 0;
    fclose(f);
    int V = ag_tokenizer_vocab_size(tk);
    const uint64_t seed = 11;
    if (make_model(AG_MODEL_BI_ENCODER, 1, 0.02f, path("bi.h5"), vocab, vlen, V) ||
        make_model(AG_MODEL_CROSS_ENCODER, 2, 0.3f, path("cross.h5"), vocab, vlen, V) ||
        make_model(AG_MODEL_CROSS_ENCODER, 1, 0.3f, path("cross1.h5"), vocab, vlen, V) ||
        make_pairs(tk, 1200, seed, 0, 1, path("train.h5")) || make_pairs(tk, 300, seed, 100000, 1, path("dev.h5")) ||
        make_pairs(tk, pool, seed, 200000, 0, path("pool.h5")) || sentences_only(tk, path("sentences.h5")))
        goto fail;
    ag_tokenizer_free(tk);
    printf("tiny cross-encoder inputs in %s (%d pool pairs)\n", dir, pool);
    return 0;
fail:
    fprintf(stderr, "make_tiny_cross: %s\n", ag_errmsg());
    return 1;
}
