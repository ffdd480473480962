/* The HDF5 dataset of sentences and pairs: builder, writer and validating reader; see
 * dataset.h for the layout and docs/formats.md for the meaning of every attribute.
 * HDF5's own error printing is switched off around every call; its innermost message is
 * appended to ours instead, so a user sees one line that names the file and the dataset. */
#include "io/dataset.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/error.h"

/* ---- small helpers ------------------------------------------------------------------ */

const char *ag_source_name(ag_source s) {
    return s == AG_SOURCE_SILVER ? "silver" : s == AG_SOURCE_UNLABELED ? "unlabeled" : "gold";
}

int ag_source_parse(const char *name, ag_source *out) {
    if (name && !strcmp(name, "gold")) { *out = AG_SOURCE_GOLD; return 0; }
    if (name && !strcmp(name, "silver")) { *out = AG_SOURCE_SILVER; return 0; }
    if (name && !strcmp(name, "unlabeled")) { *out = AG_SOURCE_UNLABELED; return 0; }
    return ag_err("unknown source '%s' (expected gold, silver or unlabeled)", name ? name : "");
}

static int grow(void **p, int64_t *cap, int64_t need, size_t elem) {
    if (need <= *cap) return 0;
    int64_t nc = *cap ? *cap : 64;
    while (nc < need) nc *= 2;
    void *q = realloc(*p, (size_t)nc * elem);
    if (!q) return ag_err("out of memory (%lld elements of %zu bytes)", (long long)nc, elem);
    *p = q;
    *cap = nc;
    return 0;
}

/* ---- the text -> id index (open addressing, FNV-1a) ---------------------------------- */

struct ag_dataset_index {
    int64_t cap;      /* slots, a power of two */
    int64_t used;
    int32_t *slot;    /* sentence id + 1, 0 = empty */
    int64_t nindexed; /* sentences [0, nindexed) are in the table */
};

static uint64_t fnv1a(const char *s, size_t n) {
    uint64_t h = 1469598103934665603ull;
    for (size_t i = 0; i < n; i++) { h ^= (unsigned char)s[i]; h *= 1099511628211ull; }
    return h;
}

static int index_insert(struct ag_dataset_index *ix, const ag_dataset *ds, int64_t id) {
    size_t len;
    const char *t = ag_dataset_text(ds, id, &len);
    uint64_t m = (uint64_t)ix->cap - 1, h = fnv1a(t, len) & m;
    while (ix->slot[h]) h = (h + 1) & m;
    ix->slot[h] = (int32_t)(id + 1);
    ix->used++;
    return 0;
}

static int index_rebuild(ag_dataset *ds, int64_t want) {
    struct ag_dataset_index *ix = ds->index;
    int64_t cap = 1024;
    while (cap < 2 * want) cap *= 2;
    int32_t *slot = calloc((size_t)cap, sizeof *slot);
    if (!slot) return ag_err("out of memory (sentence index of %lld slots)", (long long)cap);
    free(ix->slot);
    ix->slot = slot;
    ix->cap = cap;
    ix->used = 0;
    for (int64_t i = 0; i < ds->n_sentences; i++) index_insert(ix, ds, i);
    ix->nindexed = ds->n_sentences;
    return 0;
}

/* ---- dataset basics ------------------------------------------------------------------ */

void ag_dataset_init(ag_dataset *ds) {
    memset(ds, 0, sizeof *ds);
    ds->label_kind = AG_LABEL_NONE;
    ds->source = AG_SOURCE_UNLABELED;
}

static void attr_clear(ag_attr *a) {
    free(a->name);
    free(a->s);
    for (int k = 0; k < a->nstrs; k++) free(a->strs[k]);
    free(a->strs);
    memset(a, 0, sizeof *a);
}

void ag_dataset_free(ag_dataset *ds) {
    if (!ds) return;
    free(ds->text);
    free(ds->text_off);
    free(ds->tok_off);
    free(ds->tok);
    free(ds->a);
    free(ds->b);
    free(ds->label);
    free(ds->line);
    free(ds->label_map);
    for (int k = 0; k < ds->nattr; k++) attr_clear(&ds->attr[k]);
    free(ds->attr);
    if (ds->index) { free(ds->index->slot); free(ds->index); }
    ag_dataset_init(ds);
}

const char *ag_dataset_text(const ag_dataset *ds, int64_t i, size_t *len) {
    if (i < 0 || i >= ds->n_sentences) { if (len) *len = 0; return NULL; }
    if (len) *len = (size_t)(ds->text_off[i + 1] - ds->text_off[i] - 1);
    return ds->text + ds->text_off[i];
}

const int32_t *ag_dataset_tokens(const ag_dataset *ds, int64_t i, int *n) {
    if (!ds->tok_off || i < 0 || i >= ds->n_tokenized) { if (n) *n = 0; return NULL; }
    if (n) *n = (int)(ds->tok_off[i + 1] - ds->tok_off[i]);
    return ds->tok + ds->tok_off[i];
}

/* Appends a sentence without looking it up. */
static int64_t append_sentence(ag_dataset *ds, const char *text, size_t len) {
    if (ds->n_sentences >= INT32_MAX) return ag_err("more than %d sentences in one dataset", INT32_MAX);
    int64_t used = ds->n_sentences ? ds->text_off[ds->n_sentences] : 0;
    if (grow((void **)&ds->text_off, &ds->cap_sent, ds->n_sentences + 2, sizeof *ds->text_off)) return -1;
    if (grow((void **)&ds->text, &ds->cap_text, used + (int64_t)len + 1, 1)) return -1;
    ds->text_off[ds->n_sentences] = used;
    memcpy(ds->text + used, text, len);
    ds->text[used + (int64_t)len] = 0;
    ds->text_off[ds->n_sentences + 1] = used + (int64_t)len + 1;
    return ds->n_sentences++;
}

int64_t ag_dataset_intern(ag_dataset *ds, const char *text, size_t len) {
    if (!ds->index) {
        ds->index = calloc(1, sizeof *ds->index);
        if (!ds->index) return ag_err("out of memory");
    }
    struct ag_dataset_index *ix = ds->index;
    if (ix->nindexed != ds->n_sentences || 2 * (ds->n_sentences + 1) > ix->cap)
        if (index_rebuild(ds, ds->n_sentences + 1)) return -1;
    uint64_t m = (uint64_t)ix->cap - 1, h = fnv1a(text, len) & m;
    while (ix->slot[h]) {
        int64_t id = ix->slot[h] - 1;
        size_t l;
        const char *t = ag_dataset_text(ds, id, &l);
        if (l == len && !memcmp(t, text, len)) return id;
        h = (h + 1) & m;
    }
    int64_t id = append_sentence(ds, text, len);
    if (id < 0) return -1;
    ix->slot[h] = (int32_t)(id + 1);
    ix->used++;
    ix->nindexed = ds->n_sentences;
    return id;
}

int ag_dataset_add_pair(ag_dataset *ds, int32_t a, int32_t b, float label, int64_t line) {
    if (a < 0 || b < 0 || a >= ds->n_sentences || b >= ds->n_sentences)
        return ag_err("pair (%d, %d): sentence id out of range (the dataset has %lld sentences)", a, b,
                      (long long)ds->n_sentences);
    int64_t cap = ds->cap_pairs, n = ds->n_pairs + 1;
    if (grow((void **)&ds->a, &cap, n, sizeof *ds->a)) return -1;
    cap = ds->cap_pairs;
    if (grow((void **)&ds->b, &cap, n, sizeof *ds->b)) return -1;
    cap = ds->cap_pairs;
    if (grow((void **)&ds->label, &cap, n, sizeof *ds->label)) return -1;
    cap = ds->cap_pairs;
    if (grow((void **)&ds->line, &cap, n, sizeof *ds->line)) return -1;
    ds->cap_pairs = cap;
    ds->a[ds->n_pairs] = a;
    ds->b[ds->n_pairs] = b;
    ds->label[ds->n_pairs] = label;
    ds->line[ds->n_pairs] = line;
    ds->n_pairs = n;
    return 0;
}

void ag_dataset_set_tokens(ag_dataset *ds, int64_t *off, int32_t *ids) {
    free(ds->tok_off);
    free(ds->tok);
    ds->tok_off = off;
    ds->tok = ids;
    ds->n_tokenized = off ? ds->n_sentences : 0;
}

/* ---- attributes ---------------------------------------------------------------------- */

static const char *const reserved_attrs[] = {"argent_format", "schema_version", "vocab_sha256", "description"};

static ag_attr *attr_slot(ag_dataset *ds, const char *name) {
    for (size_t k = 0; k < sizeof reserved_attrs / sizeof *reserved_attrs; k++)
        if (!strcmp(name, reserved_attrs[k])) return ag_err("attribute '%s' is reserved by the schema", name), NULL;
    if (!*name || strchr(name, '/')) return ag_err("bad attribute name '%s'", name), NULL;
    for (int k = 0; k < ds->nattr; k++)
        if (!strcmp(ds->attr[k].name, name)) {
            char *keep = ds->attr[k].name;
            ds->attr[k].name = NULL;
            attr_clear(&ds->attr[k]);
            ds->attr[k].name = keep;
            return &ds->attr[k];
        }
    ag_attr *na = realloc(ds->attr, sizeof *na * (size_t)(ds->nattr + 1));
    if (!na) return ag_err("out of memory"), NULL;
    ds->attr = na;
    ag_attr *a = &ds->attr[ds->nattr];
    memset(a, 0, sizeof *a);
    if (!(a->name = strdup(name))) return ag_err("out of memory"), NULL;
    ds->nattr++;
    return a;
}

int ag_dataset_attr_str(ag_dataset *ds, const char *name, const char *value) {
    ag_attr *a = attr_slot(ds, name);
    if (!a) return -1;
    a->kind = AG_ATTR_STR;
    if (!(a->s = strdup(value ? value : ""))) return ag_err("out of memory");
    return 0;
}

int ag_dataset_attr_int(ag_dataset *ds, const char *name, int64_t value) {
    ag_attr *a = attr_slot(ds, name);
    if (!a) return -1;
    a->kind = AG_ATTR_INT;
    a->i = value;
    return 0;
}

int ag_dataset_attr_float(ag_dataset *ds, const char *name, double value) {
    ag_attr *a = attr_slot(ds, name);
    if (!a) return -1;
    a->kind = AG_ATTR_FLOAT;
    a->f = value;
    return 0;
}

int ag_dataset_attr_strs(ag_dataset *ds, const char *name, const char *const *values, int n) {
    ag_attr *a = attr_slot(ds, name);
    if (!a) return -1;
    a->kind = AG_ATTR_STRS;
    if (n > 0 && !(a->strs = calloc((size_t)n, sizeof *a->strs))) return ag_err("out of memory");
    for (int k = 0; k < n; k++) {
        if (!(a->strs[k] = strdup(values[k] ? values[k] : ""))) return ag_err("out of memory");
        a->nstrs = k + 1;
    }
    return 0;
}

const ag_attr *ag_dataset_attr_get(const ag_dataset *ds, const char *name) {
    for (int k = 0; k < ds->nattr; k++)
        if (!strcmp(ds->attr[k].name, name)) return &ds->attr[k];
    return NULL;
}

static int attr_copy(ag_dataset *dst, const ag_attr *a) {
    switch (a->kind) {
    case AG_ATTR_STR: return ag_dataset_attr_str(dst, a->name, a->s);
    case AG_ATTR_INT: return ag_dataset_attr_int(dst, a->name, a->i);
    case AG_ATTR_FLOAT: return ag_dataset_attr_float(dst, a->name, a->f);
    case AG_ATTR_STRS: return ag_dataset_attr_strs(dst, a->name, (const char *const *)a->strs, a->nstrs);
    }
    return 0;
}

/* ---- subset ---------------------------------------------------------------------------- */

int ag_dataset_subset(const ag_dataset *src, const int64_t *pairs, int64_t n, ag_dataset *dst) {
    ag_dataset_init(dst);
    int32_t *map = malloc(sizeof *map * (size_t)(src->n_sentences ? src->n_sentences : 1));
    if (!map) return ag_err("out of memory");
    for (int64_t i = 0; i < src->n_sentences; i++) map[i] = -1;
    int64_t ntok = 0;
    /* first pass: sentences in order of first use */
    for (int64_t k = 0; k < n; k++) {
        int64_t p = pairs[k];
        if (p < 0 || p >= src->n_pairs) {
            free(map);
            ag_dataset_free(dst);
            return ag_err("subset: pair %lld out of range (%lld pairs)", (long long)p, (long long)src->n_pairs);
        }
        int32_t ab[2] = {src->a[p], src->b[p]};
        for (int s = 0; s < 2; s++) {
            if (map[ab[s]] >= 0) continue;
            size_t len;
            const char *t = ag_dataset_text(src, ab[s], &len);
            int64_t id = append_sentence(dst, t, len);
            if (id < 0) goto fail;
            map[ab[s]] = (int32_t)id;
            if (src->tok_off && ab[s] < src->n_tokenized) ntok += src->tok_off[ab[s] + 1] - src->tok_off[ab[s]];
        }
    }
    if (src->tok_off && src->n_tokenized == src->n_sentences) {
        dst->tok_off = malloc(sizeof *dst->tok_off * (size_t)(dst->n_sentences + 1));
        dst->tok = malloc(sizeof *dst->tok * (size_t)(ntok ? ntok : 1));
        if (!dst->tok_off || !dst->tok) { ag_err("out of memory"); goto fail; }
        /* walk the source sentences in the new order: invert the map */
        int64_t *inv = malloc(sizeof *inv * (size_t)(dst->n_sentences ? dst->n_sentences : 1));
        if (!inv) { ag_err("out of memory"); goto fail; }
        for (int64_t i = 0; i < src->n_sentences; i++)
            if (map[i] >= 0) inv[map[i]] = i;
        int64_t o = 0;
        for (int64_t j = 0; j < dst->n_sentences; j++) {
            int nt;
            const int32_t *t = ag_dataset_tokens(src, inv[j], &nt);
            dst->tok_off[j] = o;
            if (nt) memcpy(dst->tok + o, t, sizeof *t * (size_t)nt);
            o += nt;
        }
        dst->tok_off[dst->n_sentences] = o;
        dst->n_tokenized = dst->n_sentences;
        free(inv);
    }
    for (int64_t k = 0; k < n; k++) {
        int64_t p = pairs[k];
        if (ag_dataset_add_pair(dst, map[src->a[p]], map[src->b[p]], src->label[p], src->line ? src->line[p] : 0))
            goto fail;
    }
    free(map);
    dst->label_kind = src->label_kind;
    dst->source = src->source;
    dst->num_classes = src->num_classes;
    memcpy(dst->vocab_sha256, src->vocab_sha256, sizeof dst->vocab_sha256);
    if (src->label_map && !(dst->label_map = strdup(src->label_map))) return ag_dataset_free(dst), ag_err("out of memory");
    for (int k = 0; k < src->nattr; k++)
        if (attr_copy(dst, &src->attr[k])) return ag_dataset_free(dst), -1;
    return 0;
fail:
    free(map);
    ag_dataset_free(dst);
    return -1;
}

/* ---- HDF5 plumbing ------------------------------------------------------------------------ */

typedef struct {
    H5E_auto2_t fn;
    void *data;
} h5quiet;

static void quiet_on(h5quiet *q) {
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}

static void quiet_off(h5quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->fn, q->data); }

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    if (n == 0 && e->desc) snprintf(data, 256, "%s", e->desc);
    return 0;
}

/* HDF5's innermost error message (or ""), for the end of ours. */
static const char *h5detail(void) {
    static _Thread_local char buf[300];
    char d[256] = "";
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_UPWARD, walk_cb, d);
    if (d[0]) snprintf(buf, sizeof buf, " (HDF5: %s)", d);
    else buf[0] = 0;
    return buf;
}

static void h5close(hid_t *id, herr_t (*fn)(hid_t)) {
    if (*id >= 0) fn(*id);
    *id = -1;
}

static hid_t str_type(void) {
    hid_t t = H5Tcopy(H5T_C_S1);
    if (t < 0) return t;
    H5Tset_size(t, H5T_VARIABLE);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static int put_attr(hid_t obj, const char *name, hid_t ftype, hid_t mtype, hsize_t n, int scalar, const void *val) {
    hid_t sp = scalar ? H5Screate(H5S_SCALAR) : H5Screate_simple(1, &n, NULL);
    hid_t at = sp >= 0 ? H5Acreate2(obj, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT) : -1;
    int rc = (at >= 0 && (n == 0 || H5Awrite(at, mtype, val) >= 0)) ? 0 : -1;
    if (rc) ag_err("cannot write attribute '%s'%s", name, h5detail());
    h5close(&at, H5Aclose);
    h5close(&sp, H5Sclose);
    return rc;
}

static int put_attr_str(hid_t obj, const char *name, const char *val) {
    hid_t t = str_type();
    int rc = put_attr(obj, name, t, t, 1, 1, &val);
    H5Tclose(t);
    return rc;
}

static int put_attr_i64(hid_t obj, const char *name, int64_t v) {
    return put_attr(obj, name, H5T_STD_I64LE, H5T_NATIVE_INT64, 1, 1, &v);
}

static int put_1d(hid_t loc, const char *name, hid_t ftype, hid_t mtype, hid_t dcpl, int64_t n, const void *data,
                  const char *desc) {
    hsize_t dims = (hsize_t)n;
    hid_t sp = H5Screate_simple(1, &dims, NULL);
    hid_t d = sp >= 0 ? H5Dcreate2(loc, name, ftype, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT) : -1;
    int rc = (d >= 0 && (n == 0 || H5Dwrite(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, data) >= 0)) ? 0 : -1;
    if (rc) ag_err("cannot write dataset '%s'%s", name, h5detail());
    if (!rc && desc) rc = put_attr_str(d, "description", desc);
    h5close(&d, H5Dclose);
    h5close(&sp, H5Sclose);
    return rc;
}

static hid_t file_access(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
#if (H5_VERS_MAJOR == 1 && H5_VERS_MINOR == 10 && H5_VERS_RELEASE >= 7) || H5_VERSION_GE(1, 12, 1)
    /* locks fail on NFS and Lustre; outputs are written to private temporary names anyway */
    if (fapl >= 0) H5Pset_file_locking(fapl, 0, 1);
#endif
    return fapl;
}

static int fsync_path(const char *path, int dir) {
    int fd = open(path, dir ? (O_RDONLY | O_DIRECTORY) : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

/* ---- write ------------------------------------------------------------------------------ */

static int validate_for_write(const ag_dataset *ds) {
    if (!ds->tok_off || !ds->tok || ds->n_tokenized != ds->n_sentences)
        return ag_err("%lld of %lld sentences have word pieces (tokenise all before writing)",
                      (long long)(ds->tok_off ? ds->n_tokenized : 0), (long long)ds->n_sentences);
    if (ds->n_sentences > 0 && !ds->text) return ag_err("the dataset has no texts");
    if (ds->tok_off[0] != 0) return ag_err("token_offsets[0] is %lld (expected 0)", (long long)ds->tok_off[0]);
    for (int64_t i = 0; i < ds->n_sentences; i++)
        if (ds->tok_off[i + 1] < ds->tok_off[i]) return ag_err("token_offsets decrease at sentence %lld", (long long)i);
    for (int64_t p = 0; p < ds->n_pairs; p++)
        if (ds->a[p] < 0 || ds->a[p] >= ds->n_sentences || ds->b[p] < 0 || ds->b[p] >= ds->n_sentences)
            return ag_err("pair %lld refers to a sentence out of range", (long long)p);
    if (ds->label_kind == AG_LABEL_CLASS)
        for (int64_t p = 0; p < ds->n_pairs; p++)
            if (!isnan(ds->label[p]) && !(ds->label[p] >= 0 && ds->label[p] < ds->num_classes))
                return ag_err("pair %lld: class label %g outside [0, num_classes=%d)", (long long)p, ds->label[p],
                              ds->num_classes);
    return 0;
}

static int cmp_attr(const void *x, const void *y) {
    return strcmp((*(const ag_attr *const *)x)->name, (*(const ag_attr *const *)y)->name);
}

static int write_body(const ag_dataset *ds, hid_t f) {
    int rc = -1;
    hid_t gcpl = -1, dcpl = -1, gs = -1, gp = -1, st = -1, root = -1;
    char **ptrs = NULL;
    const ag_attr **order = NULL;
    /* no modification times in object headers: equal content gives equal bytes */
    gcpl = H5Pcreate(H5P_GROUP_CREATE);
    dcpl = H5Pcreate(H5P_DATASET_CREATE);
    if (gcpl < 0 || dcpl < 0 || H5Pset_obj_track_times(gcpl, 0) < 0 || H5Pset_obj_track_times(dcpl, 0) < 0) {
        ag_err("cannot set up property lists%s", h5detail());
        goto out;
    }
    root = H5Gopen2(f, "/", H5P_DEFAULT);
    if (root < 0) { ag_err("cannot open the root group%s", h5detail()); goto out; }
    if (put_attr_str(root, "argent_format", AG_DATASET_FORMAT) || put_attr_i64(root, "schema_version", AG_DATASET_SCHEMA) ||
        put_attr_str(root, "vocab_sha256", ds->vocab_sha256) ||
        put_attr_str(root, "description",
                     "argent dataset: unique sentences with their WordPiece ids (sentences/), and pairs of "
                     "sentence ids with labels (pairs/); see argent docs/formats.md"))
        goto out;
    /* in name order, the order a reader meets them in: read + write keeps the bytes */
    order = malloc(sizeof *order * (size_t)(ds->nattr ? ds->nattr : 1));
    if (!order) { ag_err("out of memory"); goto out; }
    for (int k = 0; k < ds->nattr; k++) order[k] = &ds->attr[k];
    qsort(order, (size_t)ds->nattr, sizeof *order, cmp_attr);
    for (int k = 0; k < ds->nattr; k++) {
        const ag_attr *a = order[k];
        int e = 0;
        if (a->kind == AG_ATTR_STR) e = put_attr_str(root, a->name, a->s);
        else if (a->kind == AG_ATTR_INT) e = put_attr_i64(root, a->name, a->i);
        else if (a->kind == AG_ATTR_FLOAT) e = put_attr(root, a->name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, 1, 1, &a->f);
        else {
            hid_t t = str_type();
            e = put_attr(root, a->name, t, t, (hsize_t)a->nstrs, 0, a->strs);
            H5Tclose(t);
        }
        if (e) goto out;
    }

    gs = H5Gcreate2(f, "sentences", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (gs < 0) { ag_err("cannot create group 'sentences'%s", h5detail()); goto out; }
    ptrs = malloc(sizeof *ptrs * (size_t)(ds->n_sentences ? ds->n_sentences : 1));
    if (!ptrs) { ag_err("out of memory"); goto out; }
    for (int64_t i = 0; i < ds->n_sentences; i++) ptrs[i] = ds->text + ds->text_off[i];
    st = str_type();
    if (put_1d(gs, "text", st, st, dcpl, ds->n_sentences, ptrs, "unique sentence texts, UTF-8, as read (not cleaned)") ||
        put_1d(gs, "token_offsets", H5T_STD_I64LE, H5T_NATIVE_INT64, dcpl, ds->n_sentences + 1, ds->tok_off,
               "word pieces of sentence i are tokens[token_offsets[i]:token_offsets[i+1]]") ||
        put_1d(gs, "tokens", H5T_STD_I32LE, H5T_NATIVE_INT32, dcpl, ds->tok_off[ds->n_sentences], ds->tok,
               "WordPiece ids (vocab with sha256 vocab_sha256), untruncated, without [CLS]/[SEP]"))
        goto out;

    gp = H5Gcreate2(f, "pairs", H5P_DEFAULT, gcpl, H5P_DEFAULT);
    if (gp < 0) { ag_err("cannot create group 'pairs'%s", h5detail()); goto out; }
    const char *ldesc = ds->label_kind == AG_LABEL_CLASS ? "class id (see label_map), NaN = no label"
                        : ds->label_kind == AG_LABEL_SCORE ? "similarity score (scaled, see score_scale), NaN = no label"
                                                           : "no labels (all NaN)";
    if (put_1d(gp, "a", H5T_STD_I32LE, H5T_NATIVE_INT32, dcpl, ds->n_pairs, ds->a, "first sentence: index into sentences/") ||
        put_1d(gp, "b", H5T_STD_I32LE, H5T_NATIVE_INT32, dcpl, ds->n_pairs, ds->b, "second sentence: index into sentences/") ||
        put_1d(gp, "label", H5T_IEEE_F32LE, H5T_NATIVE_FLOAT, dcpl, ds->n_pairs, ds->label, ldesc) ||
        put_1d(gp, "line", H5T_STD_I64LE, H5T_NATIVE_INT64, dcpl, ds->n_pairs, ds->line,
               "1-based line of the pair in its source file (0 = unknown)") ||
        put_attr_str(gp, "label_kind", ag_label_kind_name(ds->label_kind)) ||
        put_attr_str(gp, "source", ag_source_name(ds->source)) || put_attr_i64(gp, "num_classes", ds->num_classes) ||
        put_attr_str(gp, "label_map", ds->label_map ? ds->label_map : ""))
        goto out;
    rc = 0;
out:
    free(ptrs);
    free(order);
    h5close(&st, H5Tclose);
    h5close(&gp, H5Gclose);
    h5close(&gs, H5Gclose);
    h5close(&root, H5Gclose);
    h5close(&dcpl, H5Pclose);
    h5close(&gcpl, H5Pclose);
    return rc;
}

int ag_dataset_write(const ag_dataset *ds, const char *path) {
    if (validate_for_write(ds)) return ag_err_ctx("%s: cannot write dataset", path);
    size_t tl = strlen(path) + 32;
    char *tmp = malloc(tl);
    if (!tmp) return ag_err("out of memory");
    snprintf(tmp, tl, "%s.tmp.%ld", path, (long)getpid());
    h5quiet q;
    quiet_on(&q);
    int rc = -1;
    hid_t fapl = file_access(), fcpl = H5Pcreate(H5P_FILE_CREATE), f = -1;
    if (fcpl >= 0) H5Pset_obj_track_times(fcpl, 0);   /* the root group's header too */
    f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
    if (f < 0) {
        ag_err("%s: cannot create%s: %s", tmp, h5detail(), strerror(errno));
        goto out;
    }
    if (write_body(ds, f)) {
        ag_err_ctx("%s: writing dataset", path);
        goto out;
    }
    if (H5Fclose(f) < 0) {
        f = -1;
        ag_err("%s: cannot close (disk full?)%s", tmp, h5detail());
        goto out;
    }
    f = -1;
    if (fsync_path(tmp, 0)) { ag_err("%s: fsync failed: %s", tmp, strerror(errno)); goto out; }
    if (rename(tmp, path)) { ag_err("cannot rename %s to %s: %s", tmp, path, strerror(errno)); goto out; }
    {
        /* make the rename itself durable */
        char *dir = strdup(path);
        if (dir) {
            char *s = strrchr(dir, '/');
            if (s) { if (s == dir) s[1] = 0; else *s = 0; }
            fsync_path(s ? dir : ".", 1);
            free(dir);
        }
    }
    rc = 0;
out:
    if (f >= 0) H5Fclose(f);
    if (rc) unlink(tmp);
    h5close(&fcpl, H5Pclose);
    h5close(&fapl, H5Pclose);
    quiet_off(&q);
    free(tmp);
    return rc;
}

/* ---- read ------------------------------------------------------------------------------- */

/* A 1-d dataset "group/name" of the given type class, converted to mtype. want >= 0: its
 * length must be that. Out: *n elements in a malloc'd *out (at least one element allocated). */
static int get_1d(hid_t f, const char *file, const char *name, H5T_class_t cls, hid_t mtype, size_t esize,
                  int64_t want, int64_t *n, void **out) {
    *out = NULL;
    hid_t d = -1, sp = -1, t = -1;
    int rc = -1;
    htri_t ex = H5Lexists(f, name, H5P_DEFAULT);
    if (ex <= 0) { ag_err("%s: dataset /%s is missing%s", file, name, ex < 0 ? h5detail() : ""); goto out; }
    d = H5Dopen2(f, name, H5P_DEFAULT);
    if (d < 0) { ag_err("%s: cannot open dataset /%s%s", file, name, h5detail()); goto out; }
    t = H5Dget_type(d);
    if (t < 0 || H5Tget_class(t) != cls) {
        ag_err("%s: dataset /%s has the wrong type (expected %s)", file, name,
               cls == H5T_INTEGER ? "integers" : cls == H5T_FLOAT ? "floats" : "variable-length strings");
        goto out;
    }
    if (cls == H5T_STRING && H5Tis_variable_str(t) <= 0) {
        ag_err("%s: dataset /%s holds fixed-length strings (expected variable-length UTF-8 strings)", file, name);
        goto out;
    }
    sp = H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    int nd = sp >= 0 ? H5Sget_simple_extent_ndims(sp) : -1;
    if (nd != 1 || H5Sget_simple_extent_dims(sp, dims, NULL) != 1) {
        ag_err("%s: dataset /%s has %d dimensions (expected 1)", file, name, nd);
        goto out;
    }
    if (want >= 0 && (int64_t)dims[0] != want) {
        ag_err("%s: dataset /%s has %llu elements (expected %lld)", file, name, (unsigned long long)dims[0],
               (long long)want);
        goto out;
    }
    if (dims[0] > ((hsize_t)1 << 40) / esize) {
        ag_err("%s: dataset /%s claims %llu elements (corrupt file?)", file, name, (unsigned long long)dims[0]);
        goto out;
    }
    *n = (int64_t)dims[0];
    *out = calloc(dims[0] ? dims[0] : 1, esize);
    if (!*out) { ag_err("%s: dataset /%s: out of memory for %llu elements", file, name, (unsigned long long)dims[0]); goto out; }
    if (dims[0] && H5Dread(d, mtype, H5S_ALL, H5S_ALL, H5P_DEFAULT, *out) < 0) {
        ag_err("%s: cannot read dataset /%s (truncated or corrupt file?)%s", file, name, h5detail());
        if (cls == H5T_STRING) H5Dvlen_reclaim(mtype, sp, H5P_DEFAULT, *out);
        goto out;
    }
    rc = 0;
out:
    if (rc) { free(*out); *out = NULL; }
    h5close(&t, H5Tclose);
    h5close(&sp, H5Sclose);
    h5close(&d, H5Dclose);
    return rc;
}

/* A scalar string attribute (variable or fixed length) into a malloc'd string. */
static int get_attr_str(hid_t obj, const char *name, char **out) {
    *out = NULL;
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int rc = -1;
    if (t >= 0 && H5Tget_class(t) == H5T_STRING && sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1) {
        if (H5Tis_variable_str(t) > 0) {
            hid_t m = str_type();
            char *s = NULL;
            if (H5Aread(a, m, &s) >= 0 && s) {
                *out = strdup(s);
                rc = *out ? 0 : -1;
            }
            if (s) H5free_memory(s);
            H5Tclose(m);
        } else {
            size_t sz = H5Tget_size(t);
            char *s = calloc(sz + 1, 1);
            hid_t m = H5Tcopy(H5T_C_S1);
            H5Tset_size(m, sz);
            if (s && H5Aread(a, m, s) >= 0) { *out = s; rc = 0; }
            else free(s);
            H5Tclose(m);
        }
    }
    h5close(&t, H5Tclose);
    h5close(&sp, H5Sclose);
    H5Aclose(a);
    return rc;
}

static int get_attr_i64(hid_t obj, const char *name, int64_t *v) {
    hid_t a = H5Aopen(obj, name, H5P_DEFAULT);
    if (a < 0) return -1;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    int rc = -1;
    if (t >= 0 && H5Tget_class(t) == H5T_INTEGER && sp >= 0 && H5Sget_simple_extent_npoints(sp) == 1)
        rc = H5Aread(a, H5T_NATIVE_INT64, v) >= 0 ? 0 : -1;
    h5close(&t, H5Tclose);
    h5close(&sp, H5Sclose);
    H5Aclose(a);
    return rc;
}

/* Root attributes other than the schema's become provenance attributes. */
static herr_t attr_iter(hid_t loc, const char *name, const H5A_info_t *info, void *data) {
    (void)info;
    ag_dataset *ds = data;
    for (size_t k = 0; k < sizeof reserved_attrs / sizeof *reserved_attrs; k++)
        if (!strcmp(name, reserved_attrs[k])) return 0;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return 0;
    hid_t t = H5Aget_type(a), sp = H5Aget_space(a);
    H5T_class_t cls = t >= 0 ? H5Tget_class(t) : H5T_NO_CLASS;
    hssize_t np = sp >= 0 ? H5Sget_simple_extent_npoints(sp) : -1;
    int scalar = sp >= 0 && H5Sget_simple_extent_type(sp) == H5S_SCALAR;
    int err = 0;
    if (cls == H5T_INTEGER && np == 1) {
        int64_t v;
        if (H5Aread(a, H5T_NATIVE_INT64, &v) >= 0) err = ag_dataset_attr_int(ds, name, v);
    } else if (cls == H5T_FLOAT && np == 1) {
        double v;
        if (H5Aread(a, H5T_NATIVE_DOUBLE, &v) >= 0) err = ag_dataset_attr_float(ds, name, v);
    } else if (cls == H5T_STRING && scalar) {
        char *s;
        if (!get_attr_str(loc, name, &s)) { err = ag_dataset_attr_str(ds, name, s); free(s); }
    } else if (cls == H5T_STRING && H5Tis_variable_str(t) > 0 && np >= 0 && np < 1000000) {
        char **v = calloc((size_t)(np ? np : 1), sizeof *v);
        hid_t m = str_type();
        if (v && H5Aread(a, m, v) >= 0) {
            err = ag_dataset_attr_strs(ds, name, (const char *const *)v, (int)np);
            H5Dvlen_reclaim(m, sp, H5P_DEFAULT, v);
        }
        H5Tclose(m);
        free(v);
    }
    h5close(&t, H5Tclose);
    h5close(&sp, H5Sclose);
    H5Aclose(a);
    return err ? -1 : 0;
}

static int read_body(hid_t f, const char *path, ag_dataset *ds) {
    char *s = NULL;
    int64_t v, n;
    /* the schema first: a clear "this is not an argent dataset" beats a missing-dataset error */
    if (get_attr_str(f, "argent_format", &s) || strcmp(s, AG_DATASET_FORMAT)) {
        free(s);
        return ag_err("%s: not an argent dataset (root attribute argent_format is missing or is not \"%s\")", path,
                      AG_DATASET_FORMAT);
    }
    free(s);
    if (get_attr_i64(f, "schema_version", &v)) return ag_err("%s: root attribute schema_version is missing or not an integer", path);
    if (v != AG_DATASET_SCHEMA)
        return ag_err("%s: dataset schema version %lld, this argent reads version %d", path, (long long)v, AG_DATASET_SCHEMA);
    if (!get_attr_str(f, "vocab_sha256", &s)) {
        snprintf(ds->vocab_sha256, sizeof ds->vocab_sha256, "%s", s);
        free(s);
    }
    if (H5Aiterate2(f, H5_INDEX_NAME, H5_ITER_INC, NULL, attr_iter, ds) < 0)
        return ag_err("%s: cannot read the root attributes%s", path, h5detail());

    htri_t gs = H5Lexists(f, "sentences", H5P_DEFAULT), gp = H5Lexists(f, "pairs", H5P_DEFAULT);
    if (gs <= 0) return ag_err("%s: group /sentences is missing", path);
    if (gp <= 0) return ag_err("%s: group /pairs is missing", path);

    /* sentences */
    char **ptr = NULL;
    int64_t S;
    hid_t st = str_type();
    int rc = get_1d(f, path, "sentences/text", H5T_STRING, st, sizeof(char *), -1, &S, (void **)&ptr);
    if (rc) { H5Tclose(st); return -1; }
    if (S >= INT32_MAX) { rc = ag_err("%s: /sentences/text has %lld entries (at most %d)", path, (long long)S, INT32_MAX - 1); }
    size_t total = 0;
    for (int64_t i = 0; !rc && i < S; i++) {
        if (!ptr[i]) { rc = ag_err("%s: /sentences/text[%lld] is null (expected a string)", path, (long long)i); break; }
        size_t l = strlen(ptr[i]), bad;
        if (!ag_utf8_valid(ptr[i], l, &bad))
            rc = ag_err("%s: /sentences/text[%lld] is not valid UTF-8 (byte %zu)", path, (long long)i, bad);
        total += l + 1;
    }
    if (!rc) {
        ds->text = malloc(total ? total : 1);
        ds->text_off = malloc(sizeof *ds->text_off * (size_t)(S + 1));
        if (!ds->text || !ds->text_off) rc = ag_err("%s: out of memory for %lld sentences", path, (long long)S);
    }
    if (!rc) {
        int64_t o = 0;
        for (int64_t i = 0; i < S; i++) {
            size_t l = strlen(ptr[i]);
            ds->text_off[i] = o;
            memcpy(ds->text + o, ptr[i], l + 1);
            o += (int64_t)l + 1;
        }
        ds->text_off[S] = o;
        ds->n_sentences = S;
        ds->cap_sent = S + 1;
        ds->cap_text = o ? o : 1;
    }
    if (S > 0) {
        hsize_t d = (hsize_t)S;
        hid_t sp = H5Screate_simple(1, &d, NULL);
        H5Dvlen_reclaim(st, sp, H5P_DEFAULT, ptr);
        H5Sclose(sp);
    }
    free(ptr);
    H5Tclose(st);
    if (rc) return -1;

    if (get_1d(f, path, "sentences/token_offsets", H5T_INTEGER, H5T_NATIVE_INT64, 8, S + 1, &n, (void **)&ds->tok_off))
        return -1;
    if (ds->tok_off[0] != 0) return ag_err("%s: /sentences/token_offsets[0] is %lld (expected 0)", path, (long long)ds->tok_off[0]);
    for (int64_t i = 0; i < S; i++)
        if (ds->tok_off[i + 1] < ds->tok_off[i])
            return ag_err("%s: /sentences/token_offsets decreases at %lld (expected non-decreasing offsets)", path, (long long)i);
    if (get_1d(f, path, "sentences/tokens", H5T_INTEGER, H5T_NATIVE_INT32, 4, ds->tok_off[S], &n, (void **)&ds->tok))
        return -1;
    ds->n_tokenized = S;
    for (int64_t i = 0; i < n; i++)
        if (ds->tok[i] < 0) return ag_err("%s: /sentences/tokens[%lld] = %d (expected an id >= 0)", path, (long long)i, ds->tok[i]);

    /* pairs */
    int64_t P;
    if (get_1d(f, path, "pairs/a", H5T_INTEGER, H5T_NATIVE_INT32, 4, -1, &P, (void **)&ds->a) ||
        get_1d(f, path, "pairs/b", H5T_INTEGER, H5T_NATIVE_INT32, 4, P, &n, (void **)&ds->b) ||
        get_1d(f, path, "pairs/label", H5T_FLOAT, H5T_NATIVE_FLOAT, 4, P, &n, (void **)&ds->label) ||
        get_1d(f, path, "pairs/line", H5T_INTEGER, H5T_NATIVE_INT64, 8, P, &n, (void **)&ds->line))
        return -1;
    ds->n_pairs = P;
    ds->cap_pairs = P ? P : 1;
    for (int64_t p = 0; p < P; p++)
        if (ds->a[p] < 0 || ds->a[p] >= S || ds->b[p] < 0 || ds->b[p] >= S)
            return ag_err("%s: pair %lld refers to sentence %d/%d, outside /sentences (%lld sentences)", path, (long long)p,
                          ds->a[p], ds->b[p], (long long)S);

    hid_t g = H5Gopen2(f, "pairs", H5P_DEFAULT);
    if (g < 0) return ag_err("%s: cannot open group /pairs%s", path, h5detail());
    rc = 0;
    if (get_attr_str(g, "label_kind", &s) || ag_label_kind_parse(s, &ds->label_kind))
        rc = ag_err("%s: /pairs attribute label_kind is missing or not score, class or none", path);
    free(s);
    s = NULL;
    if (!rc && (get_attr_str(g, "source", &s) || ag_source_parse(s, &ds->source)))
        rc = ag_err("%s: /pairs attribute source is missing or not gold, silver or unlabeled", path);
    free(s);
    s = NULL;
    if (!rc && get_attr_i64(g, "num_classes", &v)) rc = ag_err("%s: /pairs attribute num_classes is missing", path);
    if (!rc) ds->num_classes = (int)v;
    if (!rc && !get_attr_str(g, "label_map", &s)) {
        if (s[0]) ds->label_map = s;
        else free(s);
    }
    H5Gclose(g);
    if (rc) return -1;
    if (ds->label_kind == AG_LABEL_CLASS)
        for (int64_t p = 0; p < P; p++)
            if (!isnan(ds->label[p]) && !(ds->label[p] >= 0 && ds->label[p] < ds->num_classes && ds->label[p] == floorf(ds->label[p])))
                return ag_err("%s: /pairs/label[%lld] = %g is not a class id in [0, %d)", path, (long long)p, ds->label[p],
                              ds->num_classes);
    return 0;
}

int ag_dataset_read(const char *path, ag_dataset *ds) {
    ag_dataset_init(ds);
    struct stat sb;
    if (stat(path, &sb)) return ag_err("%s: cannot open: %s", path, strerror(errno));
    if (!S_ISREG(sb.st_mode)) return ag_err("%s: not a regular file", path);
    if (sb.st_size == 0) return ag_err("%s: the file is empty (expected an argent HDF5 dataset)", path);
    h5quiet q;
    quiet_on(&q);
    int rc = -1;
    hid_t fapl = file_access(), f = -1;
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        ag_err("%s: not an HDF5 file, or truncated or corrupt (expected an argent HDF5 dataset)%s", path, h5detail());
        goto out;
    }
    f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (f < 0) {
        ag_err("%s: cannot open as HDF5 (truncated or corrupt?)%s", path, h5detail());
        goto out;
    }
    rc = read_body(f, path, ds);
out:
    if (f >= 0) H5Fclose(f);
    h5close(&fapl, H5Pclose);
    quiet_off(&q);
    if (rc) {
        char keep[2048];
        snprintf(keep, sizeof keep, "%s", ag_errmsg());
        ag_dataset_free(ds);
        ag_err("%s", keep);
    }
    return rc;
}
