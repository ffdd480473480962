/* `argent prepare` end to end, in process, at any rank count: CSV with quotes, bad rows with
 * and without --skip-bad (an existing output survives a failure), --rows, seeded --split,
 * JSON Lines with a label map, line-aligned files, empty labels, sentences only, usage
 * errors; STS-B dev (1,500 pairs, scores / 5) when ../shared/data is there. Every output
 * made on the world communicator is made again on MPI_COMM_SELF by rank 0 and must have
 * the same bytes: under mpirun -np 2 or 3 this is the rank-count invariance test. */
#include <math.h>
#include <mpi.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "io/dataset.h"
#include "io/readers.h"
#include "io/tokenizer.h"
#include "jobs/prepare.h"
#include "nn/error.h"
#include "tests/support/check.h"

static char dir[512];
static int rank, size;

static const char *path(const char *name) {
    static char p[16][1024];
    static int k;
    char *s = p[k++ % 16];
    snprintf(s, 1024, "%s/%s", dir, name);
    return s;
}

static void put(const char *p, const char *text) {
    if (rank) return;
    FILE *f = fopen(p, "wb");
    if (!f) { printf("cannot write %s\n", p); MPI_Abort(MPI_COMM_WORLD, 1); }
    fputs(text, f);
    fclose(f);
}

/* prepare with the given options (NULL-terminated) on comm. */
static int prep_on(MPI_Comm comm, va_list ap) {
    char *argv[64];
    int argc = 0;
    argv[argc++] = "prepare";
    const char *a;
    while ((a = va_arg(ap, const char *)) && argc < 63) argv[argc++] = (char *)a;
    argv[argc] = NULL;
    return ag_prepare_main(argc, argv, comm);
}

static int prep(MPI_Comm comm, ...) {
    va_list ap;
    va_start(ap, comm);
    int rc = prep_on(comm, ap);
    va_end(ap);
    return rc;
}

static int same_file(const char *p, const char *q) {
    FILE *f = fopen(p, "rb"), *g = fopen(q, "rb");
    int same = f && g;
    while (same) {
        int c = getc(f), d = getc(g);
        if (c != d) same = 0;
        if (c == EOF || d == EOF) break;
    }
    if (f) fclose(f);
    if (g) fclose(g);
    return same;
}

/* Run on the world (writing out), then on rank 0 alone (writing out + ".self") and compare.
 * Returns the world's exit code. Options must end with "--out", out, NULL. */
static int prep_both(const char *out, ...) {
    va_list ap;
    va_start(ap, out);
    int rc = prep_on(MPI_COMM_WORLD, ap);
    va_end(ap);
    MPI_Barrier(MPI_COMM_WORLD);
    if (rank == 0 && rc == 0) {
        /* the same arguments again, with the output renamed */
        char self[1100];
        snprintf(self, sizeof self, "%s.self", out);
        char *argv[64];
        int argc = 0;
        argv[argc++] = "prepare";
        va_start(ap, out);
        const char *a;
        while ((a = va_arg(ap, const char *)) && argc < 63) argv[argc++] = (char *)(a == out ? self : a);
        va_end(ap);
        argv[argc] = NULL;
        int rc2 = ag_prepare_main(argc, argv, MPI_COMM_SELF);
        char what[256];
        snprintf(what, sizeof what, "%s: %d rank%s and 1 rank write the same bytes", strrchr(out, '/') + 1, size,
                 size > 1 ? "s" : "");
        check_true(what, rc2 == 0 && same_file(out, self));
    }
    MPI_Barrier(MPI_COMM_WORLD);
    return rc;
}

static int has(const char *hay, const char *needle) { return hay && strstr(hay, needle) != NULL; }

static ag_tokenizer *tk;

/* The dataset's pieces of sentence i equal the tokenizer's. */
static int pieces_ok(const ag_dataset *ds) {
    int32_t *ids = NULL;
    int cap = 0, bad = 0;
    for (int64_t i = 0; i < ds->n_sentences; i++) {
        size_t len;
        const char *t = ag_dataset_text(ds, i, &len);
        int n = 0, m;
        ag_tok_wordpieces(tk, t, len, &ids, &n, &cap);
        const int32_t *got = ag_dataset_tokens(ds, i, &m);
        if (m != n || (n && memcmp(got, ids, sizeof *ids * (size_t)n))) bad++;
    }
    free(ids);
    return bad == 0;
}

static int64_t attr_int(const ag_dataset *ds, const char *name) {
    const ag_attr *a = ag_dataset_attr_get(ds, name);
    return a && a->kind == AG_ATTR_INT ? a->i : -999;
}

/* ---- inputs -------------------------------------------------------------------------------- */

#define NGEN 40

static void make_inputs(void) {
    put(path("vocab.txt"), "[PAD]\n[UNK]\n[CLS]\n[SEP]\n[MASK]\na\nman\nis\ndancing\n.\n,\nthe\nwoman\nplaying\nguitar\n"
                           "##s\nhello\nworld\n\"\nsleeps\nperson\nrests\ntwo\ndogs\n");
    /* 5 hand-written rows, then NGEN generated ones with repeated sentences */
    char *csv = malloc(65536), *bad = malloc(65536);
    size_t o = 0, ob = 0;
    const char *head = "A man is dancing.,\"The man, dancing.\",5.0\n"
                       "A woman is playing guitar.,A man is playing guitars.,2.5\n"
                       "\"Hello \"\"world\"\"\",A man is dancing.,0\n"
                       "\"two\nlines\",hello,4\n"
                       "the man,the woman,1.25\n";
    o += (size_t)snprintf(csv + o, 65536 - o, "%s", head);
    ob += (size_t)snprintf(bad + ob, 65536 - ob, "%s", head);
    for (int i = 0; i < NGEN; i++) {
        char row[128];
        snprintf(row, sizeof row, "a man is dancing %d,the woman %d,%d.%d\n", i % 13, i % 7, i % 5, (i * 7) % 10);
        o += (size_t)snprintf(csv + o, 65536 - o, "%s", row);
        if (i == 3) snprintf(row, sizeof row, "only,two\n");
        if (i == 8) snprintf(row, sizeof row, "x,y,abc\n");
        if (i == 20) snprintf(row, sizeof row, "x,y,9\n");
        ob += (size_t)snprintf(bad + ob, 65536 - ob, "%s", row);
    }
    put(path("s.csv"), csv);
    put(path("bad.csv"), bad);
    free(csv);
    free(bad);
    put(path("n.jsonl"), "{\"premise\": \"A man sleeps.\", \"hypothesis\": \"A person rests.\", \"label\": \"entailment\"}\n"
                         "{\"premise\": \"A man sleeps.\", \"hypothesis\": \"Two dogs.\", \"label\": \"contradiction\"}\n"
                         "{\"premise\": \"Two dogs.\", \"hypothesis\": \"A man sleeps.\", \"label\": \"neutral\"}\n");
    put(path("x.s1"), "A man sleeps . \nTwo dogs . \n");
    put(path("x.s2"), "A person rests . \nA man sleeps . \n");
    put(path("x.labels"), "entailment\nneutral\n");
    put(path("e.tsv"), "\ta man\tthe woman\n3\ttwo dogs\ta person\n \thello\tworld\n");
    MPI_Barrier(MPI_COMM_WORLD);
}

/* ---- tests --------------------------------------------------------------------------------- */

static void test_csv(void) {
    const char *out = path("s.h5");
    int rc = prep_both(out, "--input", path("s.csv"), "--a", "0", "--b", "1", "--label", "2", "--score-scale", "0:5",
                       "--vocab", path("vocab.txt"), "--quiet", "--out", out, NULL);
    if (rank) return;
    check_true("csv: exit 0", rc == 0);
    ag_dataset ds;
    if (!check_true("csv: output readable", !ag_dataset_read(out, &ds))) return;
    check_true("csv: 45 pairs", ds.n_pairs == 5 + NGEN);
    size_t l;
    check_true("csv: quoted comma and doubled quotes unescaped",
               !strcmp(ag_dataset_text(&ds, ds.b[0], &l), "The man, dancing.") &&
                   !strcmp(ag_dataset_text(&ds, ds.a[2], &l), "Hello \"world\""));
    check_true("csv: a repeated sentence is stored once", ds.b[2] == ds.a[0]);
    check_true("csv: embedded newline kept; line numbers of row starts",
               !strcmp(ag_dataset_text(&ds, ds.a[3], &l), "two\nlines") && ds.line[3] == 4 && ds.line[4] == 6 &&
                   ds.line[5] == 7);
    float want[5 + NGEN];
    const float head[5] = {5.0f, 2.5f, 0.0f, 4.0f, 1.25f};
    for (int i = 0; i < 5; i++) want[i] = (float)(head[i] / 5.0);
    for (int i = 0; i < NGEN; i++) {
        char s[16];
        snprintf(s, sizeof s, "%d.%d", i % 5, (i * 7) % 10);
        want[5 + i] = (float)(atof(s) / 5.0);
    }
    check_close("csv: labels = float32(score / 5)", ds.label, want, 5 + NGEN, 0, 0);
    check_true("csv: kind score, source gold", ds.label_kind == AG_LABEL_SCORE && ds.source == AG_SOURCE_GOLD);
    check_true("csv: word pieces as the tokenizer gives them", pieces_ok(&ds));
    check_true("csv: vocab sha256", !strcmp(ds.vocab_sha256, ag_tokenizer_vocab_hash(tk)));
    char sha[65];
    ag_file_sha256(path("s.csv"), sha);
    const ag_attr *a = ag_dataset_attr_get(&ds, "input_sha256");
    check_true("csv: input sha256 recorded", a && a->kind == AG_ATTR_STRS && a->nstrs == 1 && !strcmp(a->strs[0], sha));
    check_true("csv: rows_read", attr_int(&ds, "rows_read") == 5 + NGEN && attr_int(&ds, "rows_skipped_bad") == 0);
    ag_dataset_free(&ds);
}

static void test_bad_rows(void) {
    const char *out = path("bad.h5");
    put(out, "an older output");
    MPI_Barrier(MPI_COMM_WORLD);
    int rc = prep(MPI_COMM_WORLD, "--input", path("bad.csv"), "--b", "1", "--label", "2", "--score-scale", "0:5", "--vocab",
                  path("vocab.txt"), "--out", out, NULL);
    if (rank == 0) {
        check_true("bad rows: exit 1 without --skip-bad", rc == 1);
        check_true("bad rows: the message names file:line and what was expected",
                   has(ag_errmsg(), "bad.csv:10:") && has(ag_errmsg(), "expected 3 fields"));
        FILE *f = fopen(out, "rb");
        char buf[64] = "";
        if (f) { buf[fread(buf, 1, sizeof buf - 1, f)] = 0; fclose(f); }
        check_true("bad rows: the existing output is untouched", !strcmp(buf, "an older output"));
    }
    rc = prep_both(out, "--input", path("bad.csv"), "--b", "1", "--label", "2", "--score-scale", "0:5", "--vocab",
                   path("vocab.txt"), "--skip-bad", "--quiet", "--out", out, NULL);
    if (rank) return;
    ag_dataset ds;
    check_true("skip-bad: exit 0", rc == 0);
    if (!check_true("skip-bad: output readable", !ag_dataset_read(out, &ds))) return;
    check_true("skip-bad: 3 rows skipped and counted", ds.n_pairs == 5 + NGEN - 3 && attr_int(&ds, "rows_skipped_bad") == 3 &&
                                                          attr_int(&ds, "rows_read") == 5 + NGEN);
    ag_dataset_free(&ds);
}

static void test_rows_and_split(void) {
    const char *out = path("rows.h5");
    int rc = prep_both(out, "--input", path("s.csv"), "--b", "1", "--label", "2", "--rows", "2:5", "--vocab",
                       path("vocab.txt"), "--quiet", "--out", out, NULL);
    ag_dataset ds;
    if (rank == 0 && check_true("rows: exit 0", rc == 0) && !ag_dataset_read(out, &ds)) {
        check_true("rows 2:5: three pairs, lines 3, 4, 6", ds.n_pairs == 3 && ds.line[0] == 3 && ds.line[1] == 4 &&
                                                              ds.line[2] == 6 && ds.label[0] == 0.0f);
        ag_dataset_free(&ds);
    }
    /* split into two files; their lines partition the input's */
    const char *sout = path("sp.h5");
    rc = prep(MPI_COMM_WORLD, "--input", path("s.csv"), "--b", "1", "--label", "2", "--split", "train=0.8,dev=0.2", "--seed",
              "7", "--vocab", path("vocab.txt"), "--quiet", "--out", sout, NULL);
    MPI_Barrier(MPI_COMM_WORLD);
    ag_dataset tr, dv;
    int seen[64] = {0};
    if (rank == 0 && check_true("split: exit 0", rc == 0) && !ag_dataset_read(path("sp.train.h5"), &tr)) {
        if (!ag_dataset_read(path("sp.dev.h5"), &dv)) {
            check_true("split: 36 + 9 pairs", tr.n_pairs == 36 && dv.n_pairs == 9);
            int dup = 0, inorder = 1;
            for (int64_t p = 0; p < tr.n_pairs; p++) { dup += seen[tr.line[p]]++; if (p && tr.line[p] < tr.line[p - 1]) inorder = 0; }
            for (int64_t p = 0; p < dv.n_pairs; p++) dup += seen[dv.line[p]]++;
            check_true("split: disjoint, file order within each", dup == 0 && inorder);
            const ag_attr *a = ag_dataset_attr_get(&dv, "split");
            check_true("split: named in the file", a && !strcmp(a->s, "dev") && attr_int(&dv, "split_seed") == 7);
            check_true("split: each file has only its own sentences, with their pieces", pieces_ok(&dv) && dv.n_sentences <= 18);
            ag_dataset_free(&dv);
        }
        ag_dataset_free(&tr);
    }
    /* same seed: same files; {split} placeholder; another seed: another split */
    rc = prep(MPI_COMM_WORLD, "--input", path("s.csv"), "--b", "1", "--label", "2", "--split", "train=0.8,dev=0.2", "--seed",
              "7", "--vocab", path("vocab.txt"), "--quiet", "--out", path("again-{split}.h5"), NULL);
    if (rank == 0) check_true("split: same seed, same bytes", rc == 0 && same_file(path("sp.dev.h5"), path("again-dev.h5")));
    rc = prep(MPI_COMM_WORLD, "--input", path("s.csv"), "--b", "1", "--label", "2", "--split", "train=0.8,dev=0.2", "--seed",
              "8", "--vocab", path("vocab.txt"), "--quiet", "--out", path("other.h5"), NULL);
    if (rank == 0 && !ag_dataset_read(path("other.dev.h5"), &dv)) {
        int same = 1;
        ag_dataset d7;
        if (!ag_dataset_read(path("sp.dev.h5"), &d7)) {
            for (int64_t p = 0; p < dv.n_pairs && p < d7.n_pairs; p++) same &= dv.line[p] == d7.line[p];
            ag_dataset_free(&d7);
        }
        check_true("split: another seed, another split", rc == 0 && dv.n_pairs == 9 && !same);
        ag_dataset_free(&dv);
    }
    MPI_Barrier(MPI_COMM_WORLD);
}

static void test_jsonl_lines(void) {
    const char *out = path("n.h5");
    int rc = prep_both(out, "--input", path("n.jsonl"), "--a", "premise", "--b", "hypothesis", "--label", "label",
                       "--label-map", "entailment=1,neutral=0,contradiction=0", "--vocab", path("vocab.txt"), "--quiet",
                       "--out", out, NULL);
    ag_dataset ds;
    if (rank == 0 && check_true("jsonl: exit 0", rc == 0) && !ag_dataset_read(out, &ds)) {
        float want[3] = {1, 0, 0};
        check_close("jsonl: mapped class labels", ds.label, want, 3, 0, 0);
        check_true("jsonl: class kind, 2 classes, map stored", ds.label_kind == AG_LABEL_CLASS && ds.num_classes == 2 &&
                                                                   has(ds.label_map, "entailment=1"));
        check_true("jsonl: 3 unique sentences", ds.n_sentences == 3 && ds.a[1] == ds.a[0] && ds.b[2] == ds.a[0]);
        ag_dataset_free(&ds);
    }
    char files[3200];
    snprintf(files, sizeof files, "%s,%s,%s", path("x.s1"), path("x.s2"), path("x.labels"));
    out = path("x.h5");
    rc = prep_both(out, "--input", files, "--a", "s1", "--b", "s2", "--label", "labels", "--label-map",
                   "entailment=0,neutral=1,contradiction=2", "--vocab", path("vocab.txt"), "--quiet", "--out", out, NULL);
    if (rank == 0 && check_true("lines: exit 0", rc == 0) && !ag_dataset_read(out, &ds)) {
        size_t l;
        check_true("lines: text kept as is (trailing space)", !strcmp(ag_dataset_text(&ds, 0, &l), "A man sleeps . "));
        check_true("lines: labels, 3 classes from the map", ds.label[0] == 0 && ds.label[1] == 1 && ds.num_classes == 3);
        check_true("lines: shared sentence", ds.b[1] == ds.a[0]);
        ag_dataset_free(&ds);
    }
}

static void test_empty_labels(void) {
    const char *out = path("e.h5");
    int rc = prep(MPI_COMM_WORLD, "--input", path("e.tsv"), "--a", "1", "--b", "2", "--label", "0", "--vocab",
                  path("vocab.txt"), "--out", out, NULL);
    if (rank == 0)
        check_true("empty label: an error by default, naming file:line", rc == 1 && has(ag_errmsg(), "e.tsv:1:") &&
                                                                             has(ag_errmsg(), "empty label"));
    rc = prep(MPI_COMM_WORLD, "--input", path("e.tsv"), "--a", "1", "--b", "2", "--label", "0", "--empty-label", "skip",
              "--vocab", path("vocab.txt"), "--quiet", "--out", out, NULL);
    ag_dataset ds;
    if (rank == 0 && check_true("empty label skip: exit 0", rc == 0) && !ag_dataset_read(out, &ds)) {
        check_true("empty label skip: 1 pair, 2 counted", ds.n_pairs == 1 && ds.label[0] == 3.0f &&
                                                            attr_int(&ds, "rows_without_label") == 2);
        ag_dataset_free(&ds);
    }
    rc = prep(MPI_COMM_WORLD, "--input", path("e.tsv"), "--a", "1", "--b", "2", "--label", "0", "--empty-label", "nan",
              "--vocab", path("vocab.txt"), "--quiet", "--out", out, NULL);
    if (rank == 0 && check_true("empty label nan: exit 0", rc == 0) && !ag_dataset_read(out, &ds)) {
        check_true("empty label nan: NaN kept", ds.n_pairs == 3 && isnan(ds.label[0]) && ds.label[1] == 3.0f && isnan(ds.label[2]));
        ag_dataset_free(&ds);
    }
    /* sentences only */
    out = path("only.h5");
    rc = prep_both(out, "--input", path("s.csv"), "--vocab", path("vocab.txt"), "--quiet", "--out", out, NULL);
    if (rank == 0 && check_true("sentences only: exit 0", rc == 0) && !ag_dataset_read(out, &ds)) {
        check_true("sentences only: no pairs, 18 unique, unlabeled", ds.n_pairs == 0 && ds.n_sentences == 5 + 13 &&
                                                                       ds.label_kind == AG_LABEL_NONE &&
                                                                       ds.source == AG_SOURCE_UNLABELED && pieces_ok(&ds));
        ag_dataset_free(&ds);
    }
}

static void test_usage(void) {
    const char *v = path("vocab.txt"), *in = path("s.csv"), *out = path("u.h5");
    struct {
        const char *what, *msg;
        int want;
        const char *args[12];
    } cases[] = {
        {"unknown option", "--colour", 2, {"--input", in, "--vocab", v, "--out", out, "--colour", "red"}},
        {"missing --vocab", "--vocab", 2, {"--input", in, "--out", out}},
        {"bad --rows", "--rows", 2, {"--input", in, "--vocab", v, "--out", out, "--rows", "5:2"}},
        {"--label-kind without --label", "needs a --label", 2, {"--input", in, "--vocab", v, "--out", out, "--label-kind", "class"}},
        {"bad --split", "--split", 2, {"--input", in, "--b", "1", "--vocab", v, "--out", out, "--split", "a=0.7,b=0.7"}},
        {"bad --seed", "--seed: expected an integer", 2, {"--input", in, "--vocab", v, "--out", out, "--seed", "x"}},
        {"unknown format", "--format", 2, {"--input", in, "--vocab", v, "--out", out, "--format", "xml"}},
        {"missing input", "cannot open", 1, {"--input", path("none.csv"), "--vocab", v, "--out", out}},
        {"missing vocab file", "--vocab", 1, {"--input", in, "--vocab", path("none.txt"), "--out", out}},
        {"unknown column", "not in the header", 1, {"--input", in, "--a", "sentence1", "--vocab", v, "--out", out}},
        {"unwritable output", "/nonexistent-dir/u.h5", 1, {"--input", in, "--vocab", v, "--out", "/nonexistent-dir/u.h5"}},
        {"help", NULL, 0, {"--help"}},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        char *argv[16];
        int argc = 0;
        argv[argc++] = "prepare";
        for (int k = 0; k < 12 && cases[i].args[k]; k++) argv[argc++] = (char *)cases[i].args[k];
        argv[argc] = NULL;
        ag_err_clear();
        int rc = ag_prepare_main(argc, argv, MPI_COMM_WORLD);
        if (rank == 0) {
            char what[128];
            snprintf(what, sizeof what, "usage: %s -> exit %d", cases[i].what, cases[i].want);
            check_true(what, rc == cases[i].want && (!cases[i].msg || has(ag_errmsg(), cases[i].msg)));
        }
    }
}

static void test_stsb(void) {
    char csv[1024], vocab[1024];
    snprintf(csv, sizeof csv, "%s/data/stsb/stsb-en-dev.csv", ARGENT_SHARED);
    snprintf(vocab, sizeof vocab, "%s/data/vocab/bert-base-uncased-vocab.txt", ARGENT_SHARED);
    struct stat sb;
    if (stat(csv, &sb) || stat(vocab, &sb)) {
        if (rank == 0) printf("SKIP STS-B dev: %s/data not found\n", ARGENT_SHARED);
        return;
    }
    const char *out = path("stsb-dev.h5");
    int rc = prep_both(out, "--input", csv, "--b", "1", "--label", "2", "--score-scale", "0:5", "--vocab", vocab, "--out",
                       out, NULL);
    if (rank) return;
    ag_dataset ds;
    if (!check_true("STS-B dev: exit 0", rc == 0) || ag_dataset_read(out, &ds)) return;
    check_true("STS-B dev: 1,500 pairs", ds.n_pairs == 1500);
    /* the scores, read again with the CSV reader, divided by 5 */
    const char *p = csv;
    ag_reader_opts o = {.format = AG_FMT_CSV};
    ag_reader *r = ag_reader_open(&p, 1, &o);
    float *want = calloc(1500, sizeof *want);
    ag_row row;
    int n = 0, texts = 1;
    while (r && n < 1500 && ag_reader_next(r, &row) == AG_ROW_OK) {
        want[n] = (float)(atof(row.field[2]) / 5.0);
        size_t l;
        texts &= !strcmp(ag_dataset_text(&ds, ds.a[n], &l), row.field[0]) && !strcmp(ag_dataset_text(&ds, ds.b[n], &l), row.field[1]);
        n++;
    }
    ag_reader_close(r);
    check_true("STS-B dev: texts", n == 1500 && texts);
    check_close("STS-B dev: labels = score / 5", ds.label, want, 1500, 0, 0);
    check_true("STS-B dev: word pieces", pieces_ok(&ds));
    free(want);
    ag_dataset_free(&ds);
}

int main(int argc, char **argv) {
    MPI_Init(&argc, &argv);
    MPI_Comm_rank(MPI_COMM_WORLD, &rank);
    MPI_Comm_size(MPI_COMM_WORLD, &size);
    snprintf(dir, sizeof dir, "%s/test_prepare.np%d", ARGENT_BUILD_DIR, size);
    if (rank == 0) mkdir(dir, 0755);
    MPI_Barrier(MPI_COMM_WORLD);
    make_inputs();
    tk = ag_tokenizer_load(path("vocab.txt"), 1);
    if (!tk) { printf("tokenizer: %s\n", ag_errmsg()); MPI_Abort(MPI_COMM_WORLD, 1); }
    test_csv();
    test_bad_rows();
    test_rows_and_split();
    test_jsonl_lines();
    test_empty_labels();
    test_usage();
    ag_tokenizer_free(tk);
    tk = NULL;
    {
        /* STS-B pieces are checked with the real vocab */
        char vocab[1024];
        snprintf(vocab, sizeof vocab, "%s/data/vocab/bert-base-uncased-vocab.txt", ARGENT_SHARED);
        struct stat sb;
        if (!stat(vocab, &sb)) tk = ag_tokenizer_load(vocab, 1);
        test_stsb();
        ag_tokenizer_free(tk);
    }
    int rc = rank == 0 ? check_finish() : 0;
    MPI_Finalize();
    return rc;
}
