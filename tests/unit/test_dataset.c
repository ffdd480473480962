/* The HDF5 dataset: builder (unique sentences), round trip of every field and attribute,
 * subsets, identical bytes for identical content, atomic replacement, and clear errors for
 * empty, truncated, garbage, foreign, wrong-schema and wrong-type files. */
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "io/dataset.h"
#include "nn/error.h"
#include "tests/support/check.h"

static char dir[512];

static const char *tmp(const char *name) {
    static char path[8][1024];
    static int k;
    char *p = path[k++ % 8];
    snprintf(p, 1024, "%s/%s", dir, name);
    return p;
}

static int has(const char *hay, const char *needle) {
    if (strstr(hay, needle)) return 1;
    printf("     message: %s\n", hay);
    return 0;
}

static long file_size(const char *p) {
    struct stat sb;
    return stat(p, &sb) ? -1 : (long)sb.st_size;
}

static char *slurp(const char *p, long *n) {
    FILE *f = fopen(p, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    *n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *b = malloc((size_t)*n + 1);
    if (fread(b, 1, (size_t)*n, f) != (size_t)*n) { free(b); b = NULL; }
    fclose(f);
    return b;
}

static void spit(const char *p, const char *b, long n) {
    FILE *f = fopen(p, "wb");
    if (f) { fwrite(b, 1, (size_t)n, f); fclose(f); }
}

static int same_file(const char *p, const char *q) {
    long n, m;
    char *a = slurp(p, &n), *b = slurp(q, &m);
    int same = a && b && n == m && !memcmp(a, b, (size_t)n);
    free(a);
    free(b);
    return same;
}

/* Sentences with a duplicate, an empty text and multi-byte UTF-8; made-up word pieces
 * (sentence i has i % 4 pieces, so some have none). */
static void build(ag_dataset *ds) {
    ag_dataset_init(ds);
    const char *texts[] = {"A man is dancing.", "Ein Mann tanzt, caf\xc3\xa9 \xe5\x8c\x97\xe4\xba\xac.", "",
                           "A man is dancing.", "line\nbreak and \"quotes\"", "A man is dancing."};
    int64_t id[6];
    for (int i = 0; i < 6; i++) id[i] = ag_dataset_intern(ds, texts[i], strlen(texts[i]));
    check_true("intern: duplicates get the first id", id[3] == 0 && id[5] == 0 && id[4] == 3 && ds->n_sentences == 4);
    ag_dataset_add_pair(ds, (int32_t)id[0], (int32_t)id[1], 0.95f, 2);
    ag_dataset_add_pair(ds, (int32_t)id[1], (int32_t)id[2], 0.0f, 3);
    ag_dataset_add_pair(ds, (int32_t)id[4], (int32_t)id[3], NAN, 7);
    ag_dataset_add_pair(ds, (int32_t)id[3], (int32_t)id[0], 1.0f, 9);
    check_true("add_pair: out of range refused", ag_dataset_add_pair(ds, 0, 4, 0, 0) && has(ag_errmsg(), "out of range"));
    int64_t *off = malloc(sizeof *off * 5);
    int32_t *tok = malloc(sizeof *tok * 16);
    off[0] = 0;
    int n = 0;
    for (int i = 0; i < 4; i++) {
        for (int k = 0; k < i % 4; k++) tok[n++] = 1000 + 10 * i + k;
        off[i + 1] = n;
    }
    ag_dataset_set_tokens(ds, off, tok);
    ds->label_kind = AG_LABEL_SCORE;
    ds->source = AG_SOURCE_GOLD;
    strcpy(ds->vocab_sha256, "0123456789abcdef0123456789abcdef0123456789abcdef0123456789abcdef");
    ds->label_map = strdup("x=1,y=0");
    const char *files[2] = {"a.csv", "b \xc3\xa9.csv"};
    ag_dataset_attr_str(ds, "created_by", "test");
    ag_dataset_attr_int(ds, "rows_read", 1234567890123LL);
    ag_dataset_attr_float(ds, "fraction", 0.25);
    ag_dataset_attr_strs(ds, "input_files", files, 2);
    ag_dataset_attr_str(ds, "created_by", "test_dataset");   /* replaces */
    check_true("attr: reserved name refused", ag_dataset_attr_str(ds, "schema_version", "2") && has(ag_errmsg(), "reserved"));
}

static int same_dataset(const ag_dataset *x, const ag_dataset *y) {
    if (x->n_sentences != y->n_sentences || x->n_pairs != y->n_pairs) return 0;
    for (int64_t i = 0; i < x->n_sentences; i++) {
        size_t l1, l2;
        const char *t1 = ag_dataset_text(x, i, &l1), *t2 = ag_dataset_text(y, i, &l2);
        int n1, n2;
        const int32_t *k1 = ag_dataset_tokens(x, i, &n1), *k2 = ag_dataset_tokens(y, i, &n2);
        if (l1 != l2 || memcmp(t1, t2, l1) || n1 != n2 || (n1 && memcmp(k1, k2, sizeof *k1 * (size_t)n1))) return 0;
    }
    for (int64_t p = 0; p < x->n_pairs; p++) {
        if (x->a[p] != y->a[p] || x->b[p] != y->b[p] || x->line[p] != y->line[p]) return 0;
        if (!(x->label[p] == y->label[p] || (isnan(x->label[p]) && isnan(y->label[p])))) return 0;
    }
    return x->label_kind == y->label_kind && x->source == y->source && x->num_classes == y->num_classes &&
           !strcmp(x->vocab_sha256, y->vocab_sha256) &&
           ((!x->label_map && !y->label_map) || (x->label_map && y->label_map && !strcmp(x->label_map, y->label_map)));
}

static void test_roundtrip(void) {
    ag_dataset ds, back;
    build(&ds);
    const char *p = tmp("rt.h5");
    check_true("write", !ag_dataset_write(&ds, p));
    check_true("no temporary file left", file_size(tmp("rt.h5.tmp")) < 0);
    check_true("read", !ag_dataset_read(p, &back));
    check_true("round trip: texts, pieces, pairs, labels (NaN too), lines, metadata", same_dataset(&ds, &back));
    const ag_attr *a = ag_dataset_attr_get(&back, "created_by");
    check_true("attr str", a && a->kind == AG_ATTR_STR && !strcmp(a->s, "test_dataset"));
    a = ag_dataset_attr_get(&back, "rows_read");
    check_true("attr int64", a && a->kind == AG_ATTR_INT && a->i == 1234567890123LL);
    a = ag_dataset_attr_get(&back, "fraction");
    check_true("attr float", a && a->kind == AG_ATTR_FLOAT && a->f == 0.25);
    a = ag_dataset_attr_get(&back, "input_files");
    check_true("attr string list", a && a->kind == AG_ATTR_STRS && a->nstrs == 2 && !strcmp(a->strs[1], "b \xc3\xa9.csv"));
    check_true("schema attrs are not provenance", !ag_dataset_attr_get(&back, "schema_version") &&
                                                     !ag_dataset_attr_get(&back, "argent_format"));
    /* read -> write -> read keeps everything, and the bytes */
    const char *q = tmp("rt2.h5");
    check_true("rewrite of what was read", !ag_dataset_write(&back, q));
    check_true("same content gives the same bytes", same_file(p, q));
    /* the builder still works on a dataset that was read (the index is built on demand) */
    int64_t id = ag_dataset_intern(&back, "A man is dancing.", 17);
    int64_t nid = ag_dataset_intern(&back, "new", 3);
    check_true("intern after read", id == 0 && nid == 4 && back.n_sentences == 5);
    int nt4;
    check_true("a new sentence has no pieces yet", ag_dataset_tokens(&back, 4, &nt4) == NULL && nt4 == 0);
    check_true("write refuses untokenised sentences", ag_dataset_write(&back, tmp("untok.h5")) && has(ag_errmsg(), "4 of 5"));
    ag_dataset_free(&back);

    /* subset: pairs 3 and 1, sentences renumbered in order of first use */
    ag_dataset sub;
    int64_t pick[2] = {3, 1};
    check_true("subset", !ag_dataset_subset(&ds, pick, 2, &sub));
    size_t l;
    int nt;
    check_true("subset: 3 sentences in first-use order", sub.n_sentences == 3 && sub.n_pairs == 2 &&
                                                           !strcmp(ag_dataset_text(&sub, 0, &l), "A man is dancing.") &&
                                                           !strcmp(ag_dataset_text(&sub, 2, &l), ""));
    const int32_t *t = ag_dataset_tokens(&sub, 1, &nt);
    check_true("subset: pieces follow their sentence", nt == 1 && t[0] == 1010);
    check_true("subset: pairs remapped", sub.a[0] == 0 && sub.b[0] == 0 && sub.a[1] == 1 && sub.b[1] == 2 &&
                                             sub.label[0] == 1.0f && sub.line[1] == 3);
    check_true("subset: attributes copied", ag_dataset_attr_get(&sub, "input_files") && sub.label_kind == AG_LABEL_SCORE);
    int64_t badpick = 9;
    ag_dataset sub2;
    check_true("subset: pair out of range", ag_dataset_subset(&ds, &badpick, 1, &sub2) && has(ag_errmsg(), "out of range"));
    const char *sp = tmp("sub.h5");
    ag_dataset back2;
    check_true("subset: written and read back", !ag_dataset_write(&sub, sp) && !ag_dataset_read(sp, &back2) &&
                                                   same_dataset(&sub, &back2));
    ag_dataset_free(&back2);
    ag_dataset_free(&sub);

    /* a dataset of sentences only: no pairs, empty datasets are fine */
    ag_dataset only;
    ag_dataset_init(&only);
    ag_dataset_intern(&only, "one", 3);
    int64_t *off = calloc(2, sizeof *off);
    int32_t *tok = malloc(sizeof *tok);
    ag_dataset_set_tokens(&only, off, tok);
    const char *op = tmp("only.h5");
    check_true("sentences only: round trip", !ag_dataset_write(&only, op) && !ag_dataset_read(op, &back) &&
                                                 back.n_pairs == 0 && back.n_sentences == 1 && back.label_kind == AG_LABEL_NONE &&
                                                 back.source == AG_SOURCE_UNLABELED);
    ag_dataset_free(&back);
    ag_dataset_free(&only);

    /* class labels must lie in [0, num_classes) */
    ds.label_kind = AG_LABEL_CLASS;
    ds.num_classes = 1;
    check_true("write refuses a class label >= num_classes", ag_dataset_write(&ds, tmp("cls.h5")) && has(ag_errmsg(), "num_classes"));
    ds.label_kind = AG_LABEL_SCORE;
    ag_dataset_free(&ds);
}

static void test_atomic(void) {
    ag_dataset ds;
    build(&ds);
    const char *p = tmp("keep.h5");
    ag_dataset_write(&ds, p);
    long before = file_size(p);
    /* a failing write (no word pieces) leaves the existing file as it was */
    int64_t *off = ds.tok_off;
    ds.tok_off = NULL;
    check_true("write without pieces fails", ag_dataset_write(&ds, p) && has(ag_errmsg(), "tokenise all"));
    ds.tok_off = off;
    ag_dataset back;
    check_true("existing output intact after a failed write", file_size(p) == before && !ag_dataset_read(p, &back));
    ag_dataset_free(&back);
    /* a directory that does not exist: error names the path, nothing left behind */
    check_true("write into a missing directory fails clearly",
               ag_dataset_write(&ds, "/nonexistent-dir/x.h5") && has(ag_errmsg(), "/nonexistent-dir/x.h5"));
    /* a failure after the temporary file is complete (the rename onto a non-empty
     * directory fails): the temporary file is removed */
    const char *dp = tmp("adir.h5");
    mkdir(dp, 0755);
    spit(tmp("adir.h5/x"), "x", 1);
    check_true("rename failure reported", ag_dataset_write(&ds, dp) && has(ag_errmsg(), "cannot rename"));
    char tmpname[1100];
    snprintf(tmpname, sizeof tmpname, "%s.tmp.%ld", dp, (long)getpid());
    check_true("temporary file removed after the failure", file_size(tmpname) < 0);
    ag_dataset_free(&ds);
}

/* Write a valid file, then change it with plain HDF5 calls. */
static const char *doctor(const char *name, const char *what) {
    ag_dataset ds;
    build(&ds);
    const char *p = tmp(name);
    ag_dataset_write(&ds, p);
    ag_dataset_free(&ds);
    hid_t f = H5Fopen(p, H5F_ACC_RDWR, H5P_DEFAULT);
    hsize_t n = 4;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    if (!strcmp(what, "float a")) {
        H5Ldelete(f, "pairs/a", H5P_DEFAULT);
        float v[4] = {0, 1, 2, 3};
        hid_t d = H5Dcreate2(f, "pairs/a", H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        H5Dclose(d);
    } else if (!strcmp(what, "no label")) {
        H5Ldelete(f, "pairs/label", H5P_DEFAULT);
    } else if (!strcmp(what, "no pairs")) {
        H5Ldelete(f, "pairs", H5P_DEFAULT);
    } else if (!strcmp(what, "schema 2")) {
        hid_t a = H5Aopen(f, "schema_version", H5P_DEFAULT);
        long long v = 2;
        H5Awrite(a, H5T_NATIVE_LLONG, &v);
        H5Aclose(a);
    } else if (!strcmp(what, "pair out of range")) {
        hid_t d = H5Dopen2(f, "pairs/b", H5P_DEFAULT);
        int v[4] = {0, 1, 2, 99};
        H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        H5Dclose(d);
    } else if (!strcmp(what, "offsets decrease")) {
        hid_t d = H5Dopen2(f, "sentences/token_offsets", H5P_DEFAULT);
        long long v[5] = {0, 2, 1, 3, 6};
        H5Dwrite(d, H5T_NATIVE_LLONG, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        H5Dclose(d);
    } else if (!strcmp(what, "short labels")) {
        H5Ldelete(f, "pairs/label", H5P_DEFAULT);
        hsize_t m = 3;
        hid_t s3 = H5Screate_simple(1, &m, NULL);
        float v[3] = {0, 0, 0};
        hid_t d = H5Dcreate2(f, "pairs/label", H5T_IEEE_F32LE, s3, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        H5Dclose(d);
        H5Sclose(s3);
    } else if (!strcmp(what, "2d tokens")) {
        H5Ldelete(f, "sentences/tokens", H5P_DEFAULT);
        hsize_t dims[2] = {3, 2};
        hid_t s2 = H5Screate_simple(2, dims, NULL);
        int v[6] = {0};
        hid_t d = H5Dcreate2(f, "sentences/tokens", H5T_STD_I32LE, s2, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        H5Dwrite(d, H5T_NATIVE_INT, H5S_ALL, H5S_ALL, H5P_DEFAULT, v);
        H5Dclose(d);
        H5Sclose(s2);
    } else if (!strcmp(what, "bad kind")) {
        hid_t g = H5Gopen2(f, "pairs", H5P_DEFAULT);
        H5Adelete(g, "label_kind");
        H5Gclose(g);
    }
    H5Sclose(sp);
    H5Fclose(f);
    return p;
}

static void expect_error(const char *what, const char *path, const char *msg1, const char *msg2) {
    ag_dataset ds;
    ag_err_clear();
    int rc = ag_dataset_read(path, &ds);
    int ok = rc != 0 && ds.n_sentences == 0 && ds.text == NULL;
    ok = ok && has(ag_errmsg(), path) && (!msg1 || has(ag_errmsg(), msg1)) && (!msg2 || has(ag_errmsg(), msg2));
    check_true(what, ok);
    printf("     -> %s\n", ag_errmsg());
    if (!rc) ag_dataset_free(&ds);
}

static void test_bad_files(void) {
    expect_error("missing file", tmp("nope.h5"), "cannot open", NULL);
    const char *p = tmp("empty.h5");
    spit(p, "", 0);
    expect_error("empty file", p, "empty", NULL);
    p = tmp("text.h5");
    spit(p, "sentence1,sentence2\n", 20);
    expect_error("a text file", p, "not an HDF5 file", NULL);
    p = tmp("garbage.h5");
    char g[8192];
    uint32_t x = 7;
    for (size_t i = 0; i < sizeof g; i++) { x = x * 1103515245u + 12345u; g[i] = (char)(x >> 16); }
    spit(p, g, sizeof g);
    expect_error("random bytes", p, "not an HDF5 file", NULL);
    expect_error("a directory", dir, "not a regular file", NULL);

    /* an HDF5 file that is not an argent dataset */
    p = tmp("foreign.h5");
    hid_t f = H5Fcreate(p, H5F_ACC_TRUNC, H5P_DEFAULT, H5P_DEFAULT);
    hsize_t n = 3;
    hid_t sp = H5Screate_simple(1, &n, NULL);
    hid_t d = H5Dcreate2(f, "data", H5T_STD_I32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    H5Dclose(d);
    H5Sclose(sp);
    H5Fclose(f);
    expect_error("foreign HDF5 file", p, "not an argent dataset", NULL);

    expect_error("wrong schema version", doctor("v2.h5", "schema 2"), "schema version 2", "reads version 1");
    expect_error("wrong type", doctor("ft.h5", "float a"), "/pairs/a", "wrong type (expected integers)");
    expect_error("missing dataset", doctor("nl.h5", "no label"), "/pairs/label", "missing");
    expect_error("missing group", doctor("np.h5", "no pairs"), "/pairs", "missing");
    expect_error("pair id out of range", doctor("oor.h5", "pair out of range"), "pair 3", "outside /sentences");
    expect_error("decreasing offsets", doctor("dec.h5", "offsets decrease"), "/sentences/token_offsets", "decreases");
    expect_error("length mismatch", doctor("sl.h5", "short labels"), "/pairs/label", "3 elements (expected 4)");
    expect_error("2-d dataset", doctor("2d.h5", "2d tokens"), "/sentences/tokens", "2 dimensions");
    expect_error("missing attribute", doctor("kind.h5", "bad kind"), "label_kind", NULL);

    /* truncated copies of a valid file: every cut gives an error, never a crash */
    ag_dataset ds;
    build(&ds);
    const char *good = tmp("good.h5");
    ag_dataset_write(&ds, good);
    ag_dataset_free(&ds);
    long len;
    char *bytes = slurp(good, &len);
    int cuts = 0, errors = 0;
    for (long cut = 0; bytes && cut < len; cut += (cut < 1024 ? 97 : len / 23)) {
        const char *tp = tmp("trunc.h5");
        spit(tp, bytes, cut);
        ag_dataset t;
        cuts++;
        if (ag_dataset_read(tp, &t)) errors++;
        else ag_dataset_free(&t);
    }
    char what[128];
    snprintf(what, sizeof what, "truncated at %d points: all give errors (%d)", cuts, errors);
    check_true(what, cuts > 10 && errors == cuts);
    const char *tp = tmp("trunc.h5");
    spit(tp, bytes, len - 1);
    expect_error("truncated by one byte", tp, "truncated", NULL);
    free(bytes);
}

int main(void) {
    snprintf(dir, sizeof dir, "%s/test_dataset.tmp", ARGENT_BUILD_DIR);
    mkdir(dir, 0755);
    test_roundtrip();
    test_atomic();
    test_bad_files();
    return check_finish();
}
