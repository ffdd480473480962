/* `argent synth`: the built-in default data and model, so that the default pipeline
 * (jobs/recipes/default.recipe) runs the whole Augmented SBERT recipe on a fresh machine
 * without any download.
 *
 * The language: a sentence states a meaning (subject, action, object), each slot one of
 * --concepts concepts, each concept written with one of three made-up synonyms
 * ("kalomi", ...), with filler words sprinkled in ("the", "quickly", ...). Meaning, not
 * surface, decides similarity, so a model has to learn the synonym sets:
 *   gold.tsv    labelled pairs: label 1 when both sentences state the same meaning
 *               (paraphrases, about a third of the pairs), else 0 (NLI-like gold), and
 *               score, the fraction of the three slots whose meaning the two share
 *   pairs.tsv   unlabelled pairs drawn the same way (the pair space to label silver)
 *   test.tsv    more labelled pairs like gold.tsv, held out (the cross-encoder's evaluation)
 *   dev.tsv     pairs with an STS-like score: the fraction of the three slots the two
 *               meanings share (0, 1/3, 2/3, 1)
 *   vocab.txt   the five special tokens, the fillers and every word (one WordPiece each)
 *   model.h5    a small BERT bi-encoder (mean pooling) with HF's random initialisation
 *   done.json   written last: the folder is complete (what argent pipeline checks)
 * Every text depends only on (--seed, file, row), through the counter-based RNG. The
 * files are written by one process (argent pipeline runs this stage on rank 0). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/checkpoint.h"
#include "io/hfmodel.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "nn/bert.h"
#include "nn/error.h"
#include "nn/rng.h"

enum { N_SLOT = 3, N_SYN = 3, MAX_CONCEPTS = 64 };
static const char *const syll[] = {"ka", "lo", "mi", "ne", "ru", "sa", "ti", "vo", "ze", "pu", "ga", "do", "fe", "bi"};
#define N_SYLL 14
static const char *const fillers[] = {"the", "a", "today", "quickly", "again", "very", "then", "so", "now", "here"};
#define N_FILL 10

/* Streams of the RNG's `b` argument, so that the draws of different purposes never meet. */
enum { S_KIND = 1, S_CONCEPT, S_KEEP, S_OTHER, S_FILL_P, S_FILL_W, S_SYN };

typedef struct { int c[N_SLOT]; } meaning;

/* Synonym k of concept c in slot s: three syllables, distinct for every (s, c, k) when
 * N_SLOT * concepts * N_SYN <= N_SYLL^3. */
static void word_of(int s, int c, int k, int concepts, char *buf, size_t n) {
    int id = (s * concepts + c) * N_SYN + k;
    /* A multiplier coprime to N_SYLL^3 spreads neighbouring ids over different syllables. */
    int h = (int)(((long)id * 1031) % (N_SYLL * N_SYLL * N_SYLL));
    snprintf(buf, n, "%s%s%s", syll[h % N_SYLL], syll[(h / N_SYLL) % N_SYLL], syll[h / (N_SYLL * N_SYLL)]);
}

static float g_filler_rate = 0.4f;
static int g_synonyms = N_SYN;   /* synonyms used per concept (the vocab always has N_SYN) */

static void render(const meaning *m, uint64_t seed, uint64_t key, int concepts, char *out, size_t n) {
    char w[32];
    size_t len = 0;
    out[0] = 0;
    for (int s = 0; s < N_SLOT; s++) {
        if (ag_rng_uniform(seed, AG_RNG_NOISE, key, S_FILL_P, (uint64_t)s) < g_filler_rate)
            len += (size_t)snprintf(out + len, n - len, "%s ",
                                    fillers[ag_rng_u32(seed, AG_RNG_NOISE, key, S_FILL_W, (uint64_t)s) % N_FILL]);
        word_of(s, m->c[s], (int)(ag_rng_u32(seed, AG_RNG_NOISE, key, S_SYN, (uint64_t)s) % (uint32_t)g_synonyms), concepts, w,
                sizeof w);
        len += (size_t)snprintf(out + len, n - len, "%s ", w);
    }
    if (len) out[len - 1] = 0;
}

/* Pair `row` of file `file`: a third paraphrases; otherwise each slot keeps its concept
 * with probability 1/2 (a pair that ends up with the same meaning is a paraphrase too). */
static int make_pair(uint64_t seed, int file, int64_t row, int concepts, char *a, char *b, size_t n) {
    uint64_t key = ((uint64_t)file << 40) + (uint64_t)row;
    meaning x, y;
    int para = ag_rng_uniform(seed, AG_RNG_NOISE, key, S_KIND, 0) < 1.0f / 3.0f, same = 0;
    for (int s = 0; s < N_SLOT; s++) {
        x.c[s] = (int)(ag_rng_u32(seed, AG_RNG_NOISE, key, S_CONCEPT, (uint64_t)s) % (uint32_t)concepts);
        int keep = para || ag_rng_uniform(seed, AG_RNG_NOISE, key, S_KEEP, (uint64_t)s) < 0.5f;
        y.c[s] = keep ? x.c[s] : (int)(ag_rng_u32(seed, AG_RNG_NOISE, key, S_OTHER, (uint64_t)s) % (uint32_t)concepts);
        same += x.c[s] == y.c[s];
    }
    render(&x, seed, key * 2, concepts, a, n);
    render(&y, seed, key * 2 + 1, concepts, b, n);
    return same;
}

/* Write text through a temporary name and rename it into place. */
static FILE *open_tmp(const char *path, char *tmp, size_t cap) {
    snprintf(tmp, cap, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) ag_err("%s: cannot create: %s", tmp, strerror(errno));
    return f;
}

static int close_tmp(FILE *f, const char *tmp, const char *path) {
    if (fclose(f)) return ag_err("%s: write failed", tmp);
    if (rename(tmp, path)) return ag_err("%s: cannot rename into place: %s", path, strerror(errno));
    return 0;
}

/* kind 0: gold (label 0/1 and score), 1: unlabelled pairs, 2: dev (score), 3: test (as gold). */
static int write_pairs(const char *dir, const char *name, int kind, int64_t rows, uint64_t seed, int concepts) {
    char path[4200], tmp[4300], a[256], b[256];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = open_tmp(path, tmp, sizeof tmp);
    if (!f) return -1;
    fprintf(f, "%s", kind == 1 ? "sentence1\tsentence2\n" : kind == 2 ? "sentence1\tsentence2\tscore\n"
                                                             : "sentence1\tsentence2\tlabel\tscore\n");
    for (int64_t i = 0; i < rows; i++) {
        int same = make_pair(seed, kind, i, concepts, a, b, sizeof a);
        if (kind == 0 || kind == 3) fprintf(f, "%s\t%s\t%d\t%.6f\n", a, b, same == N_SLOT, (double)same / N_SLOT);
        else if (kind == 1) fprintf(f, "%s\t%s\n", a, b);
        else fprintf(f, "%s\t%s\t%.6f\n", a, b, (double)same / N_SLOT);
    }
    return close_tmp(f, tmp, path);
}

static int write_vocab(const char *dir, int concepts, char **text, size_t *len) {
    char path[4200], tmp[4300], w[32];
    snprintf(path, sizeof path, "%s/vocab.txt", dir);
    size_t cap = 4096 + (size_t)N_SLOT * (size_t)concepts * N_SYN * 8;
    char *v = malloc(cap);
    if (!v) return ag_err("out of memory");
    size_t n = 0;
    const char *special[] = {"[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"};
    for (int i = 0; i < 5; i++) n += (size_t)snprintf(v + n, cap - n, "%s\n", special[i]);
    for (int i = 0; i < N_FILL; i++) n += (size_t)snprintf(v + n, cap - n, "%s\n", fillers[i]);
    for (int s = 0; s < N_SLOT; s++)
        for (int c = 0; c < concepts; c++)
            for (int k = 0; k < N_SYN; k++) {
                word_of(s, c, k, concepts, w, sizeof w);
                n += (size_t)snprintf(v + n, cap - n, "%s\n", w);
            }
    FILE *f = open_tmp(path, tmp, sizeof tmp);
    if (!f) { free(v); return -1; }
    fwrite(v, 1, n, f);
    if (close_tmp(f, tmp, path)) { free(v); return -1; }
    *text = v;
    *len = n;
    return 0;
}

/* A randomly initialised bi-encoder over the vocab, as an argent checkpoint. */
static int write_model(const char *dir, char *vocab, size_t vlen, const long *size, uint64_t seed) {
    ag_model_desc md;
    ag_model_desc_init(&md);
    int lines = 0;
    for (size_t i = 0; i < vlen; i++) lines += vocab[i] == '\n';
    md.vocab_size = lines;
    md.hidden_size = (int)size[0];
    md.num_hidden_layers = (int)size[1];
    md.num_attention_heads = (int)size[2];
    md.intermediate_size = (int)size[3];
    md.max_position_embeddings = (int)size[4];
    md.max_seq_length = (int)size[4];
    md.has_pooler = 0;
    md.pooling = AG_POOL_MEAN;
    md.vocab = vocab;
    md.vocab_len = vlen;
    int rc = ag_model_desc_check(&md);
    ag_bert m;
    ag_params p;
    ag_params_init(&p);
    if (!rc) rc = ag_model_register(&md, &m, &p, NULL);
    if (!rc) rc = ag_params_alloc(&p);
    if (!rc) {
        ag_bert_init_weights(&m, &p, seed);
        ag_train_state ts;
        ag_train_state_init(&ts);
        ts.rng_seed = seed;
        char path[4200];
        snprintf(path, sizeof path, "%s/model.h5", dir);
        rc = ag_ckpt_write(path, &md, &ts, &p, NULL, NULL);
        if (!rc) printf("synth: %s: BERT %d layers, hidden %d, %d heads, %.2fM parameters, vocab %d\n", path,
                        md.num_hidden_layers, md.hidden_size, md.num_attention_heads, (double)p.total / 1e6, lines);
        ag_bert_free(&m);
    }
    ag_params_free(&p);
    md.vocab = NULL;  /* the caller owns it */
    ag_model_desc_free(&md);
    return rc;
}

static const ag_cli_opt opts[] = {
    {"out", "DIR", "folder for gold.tsv, pairs.tsv, dev.tsv, vocab.txt, model.h5 (created)", NULL, 1},
    {"gold", "N", "labelled pairs (label 1 = same meaning)", "1000", 0},
    {"pairs", "N", "unlabelled pairs (the pair space to label silver)", "4000", 0},
    {"dev", "N", "evaluation pairs with a similarity score in [0, 1]", "1000", 0},
    {"test", "N", "held-out labelled pairs (like gold)", "500", 0},
    {"concepts", "N", "concepts per slot (3 slots, 3 synonyms each)", "12", 0},
    {"synonyms", "N", "words per concept used in the texts (1..3)", "3", 0},
    {"fillers", "P", "probability of a filler word before each slot's word", "0.4", 0},
    {"seed", "N", "seed of every text and of the model's initialisation", "1", 0},
    {"hidden", "N", "model: hidden size", "64", 0},
    {"layers", "N", "model: layers", "2", 0},
    {"heads", "N", "model: attention heads", "4", 0},
    {"inter", "N", "model: intermediate (FFN) size", "256", 0},
    {"positions", "N", "model: max positions (also its max_seq_length)", "32", 0},
    {0}};

int ag_cmd_synth(int argc, char **argv) {
    ag_cli c;
    int rc = ag_cli_parse(&c, "argent synth",
                          "Generate the built-in default data (paraphrase pairs of a made-up language: gold, unlabelled,\n"
                          "dev) and a small randomly initialised BERT bi-encoder, for the default pipeline.",
                          opts, argc, argv);
    if (rc) {
        if (rc < 0) fprintf(stderr, "argent synth: %s\n", ag_errmsg());
        return rc > 0 ? 0 : 2;
    }
    long gold, pairs, dev, test, concepts, seed, size[5];
    const char *names[5] = {"hidden", "layers", "heads", "inter", "positions"};
    rc = c.npos ? ag_err("unexpected argument '%s'", c.pos[0]) : 0;
    if (!rc)
        rc = ag_cli_long(&c, "gold", &gold) || ag_cli_long(&c, "pairs", &pairs) || ag_cli_long(&c, "dev", &dev) ||
             ag_cli_long(&c, "test", &test) || ag_cli_long(&c, "concepts", &concepts) || ag_cli_long(&c, "seed", &seed);
    for (int i = 0; i < 5 && !rc; i++) {
        rc = ag_cli_long(&c, names[i], &size[i]);
        if (!rc && size[i] < 1) rc = ag_err("--%s: expected a positive number, got %ld", names[i], size[i]);
    }
    if (!rc && (gold < 2 || pairs < 1 || dev < 2 || test < 2))
        rc = ag_err("--gold, --dev and --test need at least 2 pairs, --pairs 1");
    if (!rc && (concepts < 2 || concepts > MAX_CONCEPTS))
        rc = ag_err("--concepts: expected 2..%d, got %ld", MAX_CONCEPTS, concepts);
    if (!rc && seed < 0) rc = ag_err("--seed: expected a number >= 0");
    double fr = 0.4;
    if (!rc) rc = ag_cli_double(&c, "fillers", &fr);
    if (!rc && !(fr >= 0 && fr <= 1)) rc = ag_err("--fillers: expected a probability in [0, 1], got %g", fr);
    g_filler_rate = (float)fr;
    long syn = N_SYN;
    if (!rc) rc = ag_cli_long(&c, "synonyms", &syn);
    if (!rc && (syn < 1 || syn > N_SYN)) rc = ag_err("--synonyms: expected 1..%d, got %ld", N_SYN, syn);
    g_synonyms = (int)syn;
    if (!rc && size[4] < 16) rc = ag_err("--positions: expected at least 16 (the longest sentence has 8 words)");
    if (rc) {
        fprintf(stderr, "argent synth: %s\n", ag_errmsg());
        ag_cli_free(&c);
        return 2;
    }
    const char *dir = ag_cli_str(&c, "out");
    char *vocab = NULL;
    size_t vlen = 0;
    char done[4200];
    snprintf(done, sizeof done, "%s/done.json", dir);
    remove(done);
    if (mkdir(dir, 0777) && errno != EEXIST) rc = ag_err("%s: cannot create directory: %s", dir, strerror(errno));
    if (!rc) rc = write_vocab(dir, (int)concepts, &vocab, &vlen);
    if (!rc) rc = write_pairs(dir, "gold.tsv", 0, gold, (uint64_t)seed, (int)concepts);
    if (!rc) rc = write_pairs(dir, "pairs.tsv", 1, pairs, (uint64_t)seed, (int)concepts);
    if (!rc) rc = write_pairs(dir, "dev.tsv", 2, dev, (uint64_t)seed, (int)concepts);
    if (!rc) rc = write_pairs(dir, "test.tsv", 3, test, (uint64_t)seed, (int)concepts);
    if (!rc) rc = write_model(dir, vocab, vlen, size, (uint64_t)seed);
    if (!rc) {
        char tmp[4300];
        FILE *f = open_tmp(done, tmp, sizeof tmp);
        if (!f) rc = -1;
        else {
            fprintf(f, "{\"gold\": %ld, \"pairs\": %ld, \"dev\": %ld, \"test\": %ld, \"concepts\": %ld, \"seed\": %ld}\n",
                    gold, pairs, dev, test, concepts, seed);
            rc = close_tmp(f, tmp, done);
        }
    }
    if (!rc)
        printf("synth: %s: %ld gold, %ld unlabelled, %ld dev and %ld test pairs (%ld concepts x 3 slots x 3 synonyms)\n",
               dir, gold, pairs, dev, test, concepts);
    else fprintf(stderr, "argent synth: %s\n", ag_errmsg());
    free(vocab);
    ag_cli_free(&c);
    return rc ? 1 : 0;
}
