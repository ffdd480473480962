/* Safetensors reader (strict) and F32 writer; see safetensors.h for the format and rules. */
#include "io/safetensors.h"

#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "nn/error.h"

static const struct { const char *name; ag_st_dtype d; size_t size; } dtypes[] = {
    {"F32", AG_ST_F32, 4}, {"F16", AG_ST_F16, 2}, {"BF16", AG_ST_BF16, 2},
    {"F64", AG_ST_F64, 8}, {"I64", AG_ST_I64, 8}, {"I32", AG_ST_I32, 4},
    {"I16", AG_ST_I16, 2}, {"I8", AG_ST_I8, 1}, {"U8", AG_ST_U8, 1}, {"BOOL", AG_ST_BOOL, 1},
    {"U16", AG_ST_U16, 2}, {"U32", AG_ST_U32, 4}, {"U64", AG_ST_U64, 8},
    {"F8_E4M3", AG_ST_F8_E4M3, 1}, {"F8_E5M2", AG_ST_F8_E5M2, 1},
};
#define N_DTYPES (sizeof dtypes / sizeof dtypes[0])

const char *ag_st_dtype_name(ag_st_dtype d) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].d == d) return dtypes[i].name;
    return "?";
}

static size_t dtype_size(ag_st_dtype d) {
    for (size_t i = 0; i < N_DTYPES; i++)
        if (dtypes[i].d == d) return dtypes[i].size;
    return 0;
}

/* ag_f16_to_f32 / ag_bf16_to_f32 (exact widening) come from nn/amp.c. */

static void st_free(ag_st_file *f) {
    for (int i = 0; i < f->n; i++) free(f->t[i].name);
    free(f->t);
    free(f->format);
    if (f->map) munmap((void *)f->map, f->size);
    char path[sizeof f->path];
    memcpy(path, f->path, sizeof path);
    memset(f, 0, sizeof *f);
    memcpy(f->path, path, sizeof path);
}

void ag_st_close(ag_st_file *f) {
    st_free(f);
    f->path[0] = 0;
}

static int cmp_begin(const void *a, const void *b) {
    const ag_st_tensor *x = *(const ag_st_tensor *const *)a, *y = *(const ag_st_tensor *const *)b;
    if (x->begin != y->begin) return x->begin < y->begin ? -1 : 1;
    return x->end < y->end ? -1 : x->end > y->end;
}

/* Parse one header entry into t. The caller has set t->name. */
static int parse_entry(const char *path, const char *name, json_t *v, ag_st_tensor *t, size_t data_size) {
    if (!json_is_object(v))
        return ag_err("%s: tensor '%s': header entry is not a JSON object", path, name);
    json_t *jd = json_object_get(v, "dtype"), *js = json_object_get(v, "shape"),
           *jo = json_object_get(v, "data_offsets");
    if (!json_is_string(jd))
        return ag_err("%s: tensor '%s': missing or non-string \"dtype\"", path, name);
    const char *ds = json_string_value(jd);
    size_t k = 0;
    while (k < N_DTYPES && strcmp(dtypes[k].name, ds)) k++;
    if (k == N_DTYPES)
        return ag_err("%s: tensor '%s': unknown dtype \"%s\" (expected F32, F16 or BF16)", path, name, ds);
    t->dtype = dtypes[k].d;
    if (!json_is_array(js))
        return ag_err("%s: tensor '%s': missing or non-array \"shape\"", path, name);
    size_t nd = json_array_size(js);
    if (nd > AG_ST_MAX_DIMS)
        return ag_err("%s: tensor '%s': %zu dimensions (at most %d supported)", path, name, nd, AG_ST_MAX_DIMS);
    t->ndim = (int)nd;
    t->numel = 1;
    for (size_t d = 0; d < nd; d++) {
        json_t *x = json_array_get(js, d);
        if (!json_is_integer(x) || json_integer_value(x) < 0)
            return ag_err("%s: tensor '%s': shape[%zu] is not a non-negative integer", path, name, d);
        int64_t s = json_integer_value(x);
        t->shape[d] = s;
        /* Overflow-safe product: a shape whose bytes exceed the file cannot be valid anyway. */
        if (s != 0 && t->numel > (SIZE_MAX / 8) / (size_t)s)
            return ag_err("%s: tensor '%s': shape is too large (element count overflows)", path, name);
        t->numel *= (size_t)s;
    }
    if (!json_is_array(jo) || json_array_size(jo) != 2 ||
        !json_is_integer(json_array_get(jo, 0)) || !json_is_integer(json_array_get(jo, 1)))
        return ag_err("%s: tensor '%s': \"data_offsets\" must be [begin, end] integers", path, name);
    json_int_t b = json_integer_value(json_array_get(jo, 0)), e = json_integer_value(json_array_get(jo, 1));
    if (b < 0 || e < b)
        return ag_err("%s: tensor '%s': data_offsets [%lld, %lld] are not an increasing non-negative range",
                      path, name, (long long)b, (long long)e);
    if ((uint64_t)e > data_size)
        return ag_err("%s: tensor '%s': data_offsets [%lld, %lld] end outside the data section (%zu bytes; "
                      "file truncated?)", path, name, (long long)b, (long long)e, data_size);
    t->begin = (size_t)b;
    t->end = (size_t)e;
    size_t want = t->numel * dtype_size(t->dtype);
    if (want != t->end - t->begin)
        return ag_err("%s: tensor '%s': %s x %zu elements needs %zu bytes but data_offsets [%zu, %zu] hold %zu",
                      path, name, ds, t->numel, want, t->begin, t->end, t->end - t->begin);
    return 0;
}

static int st_parse(ag_st_file *f) {
    const char *path = f->path;
    if (f->size < 8)
        return ag_err("%s: not a safetensors file: %zu bytes, too short for the 8-byte header length%s",
                      path, f->size, f->size == 0 ? " (empty file)" : "");
    uint64_t n = 0;
    for (int i = 7; i >= 0; i--) n = (n << 8) | f->map[i];  /* little-endian on any host */
    if (n > AG_ST_MAX_HEADER)
        return ag_err("%s: header length %llu exceeds the maximum %llu (not a safetensors file?)", path,
                      (unsigned long long)n, (unsigned long long)AG_ST_MAX_HEADER);
    if (n > f->size - 8)
        return ag_err("%s: header length %llu runs past the end of the file (%zu bytes; truncated?)", path,
                      (unsigned long long)n, f->size);
    if (n < 2 || f->map[8] != '{')
        return ag_err("%s: header is not a JSON object (must start with '{')", path);
    f->data_start = 8 + (size_t)n;
    size_t data_size = f->size - f->data_start;

    json_error_t je;
    json_t *root = json_loadb((const char *)f->map + 8, (size_t)n, JSON_REJECT_DUPLICATES, &je);
    if (!root)
        return ag_err("%s: header JSON is invalid at byte %d of the header: %s", path, je.position, je.text);
    int rc = 0;
    if (!json_is_object(root)) { rc = ag_err("%s: header JSON is not an object", path); goto out; }
    size_t cnt = json_object_size(root);
    f->t = calloc(cnt ? cnt : 1, sizeof *f->t);
    if (!f->t) { rc = ag_err("%s: out of memory for %zu header entries", path, cnt); goto out; }
    const char *key;
    json_t *v;
    json_object_foreach(root, key, v) {
        if (!strcmp(key, "__metadata__")) {
            if (!json_is_object(v)) { rc = ag_err("%s: \"__metadata__\" is not an object", path); goto out; }
            const char *mk;
            json_t *mv;
            json_object_foreach(v, mk, mv) {
                if (!json_is_string(mv)) {
                    rc = ag_err("%s: \"__metadata__\" value for '%s' is not a string", path, mk);
                    goto out;
                }
            }
            json_t *fmt = json_object_get(v, "format");
            if (fmt && !(f->format = strdup(json_string_value(fmt)))) { rc = ag_err("%s: out of memory", path); goto out; }
            continue;
        }
        ag_st_tensor *t = &f->t[f->n];
        if (!(t->name = strdup(key))) { rc = ag_err("%s: out of memory", path); goto out; }
        f->n++;
        if ((rc = parse_entry(path, key, v, t, data_size))) goto out;
    }
    /* Ranges must tile the data section exactly: sort by begin and walk. */
    ag_st_tensor **order = malloc((size_t)(f->n ? f->n : 1) * sizeof *order);
    if (!order) { rc = ag_err("%s: out of memory", path); goto out; }
    for (int i = 0; i < f->n; i++) order[i] = &f->t[i];
    qsort(order, (size_t)f->n, sizeof *order, cmp_begin);
    size_t pos = 0;
    for (int i = 0; i < f->n && !rc; i++) {
        const ag_st_tensor *t = order[i];
        if (t->begin < pos) {
            rc = ag_err("%s: tensor '%s': data_offsets [%zu, %zu] overlap tensor '%s' [%zu, %zu]", path, t->name,
                        t->begin, t->end, order[i - 1]->name, order[i - 1]->begin, order[i - 1]->end);
        } else if (t->begin > pos) {
            rc = ag_err("%s: tensor '%s': data_offsets [%zu, %zu] leave a gap of %zu unused bytes before it",
                        path, t->name, t->begin, t->end, t->begin - pos);
        }
        pos = t->end;
    }
    if (!rc && pos != data_size)
        rc = ag_err("%s: data section has %zu bytes but the tensors cover only %zu (trailing bytes)", path,
                    data_size, pos);
    free(order);
out:
    json_decref(root);
    return rc;
}

int ag_st_open(ag_st_file *f, const char *path) {
    memset(f, 0, sizeof *f);
    snprintf(f->path, sizeof f->path, "%s", path);
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) return ag_err("%s: cannot open: %s", path, strerror(errno));
    struct stat st;
    if (fstat(fd, &st) != 0) {
        int e = errno;
        close(fd);
        return ag_err("%s: cannot stat: %s", path, strerror(e));
    }
    if (!S_ISREG(st.st_mode)) {
        close(fd);
        return ag_err("%s: not a regular file", path);
    }
    f->size = (size_t)st.st_size;
    if (f->size > 0) {
        void *m = mmap(NULL, f->size, PROT_READ, MAP_PRIVATE, fd, 0);
        if (m == MAP_FAILED) {
            int e = errno;
            close(fd);
            f->size = 0;
            return ag_err("%s: cannot map %zu bytes: %s", path, (size_t)st.st_size, strerror(e));
        }
        f->map = m;
    }
    close(fd);  /* the mapping stays valid */
    if (st_parse(f)) {
        st_free(f);
        return -1;
    }
    return 0;
}

int ag_st_find(const ag_st_file *f, const char *name) {
    for (int i = 0; i < f->n; i++)
        if (!strcmp(f->t[i].name, name)) return i;
    return -1;
}

int ag_st_read_f32(const ag_st_file *f, int i, float *out, size_t numel) {
    if (i < 0 || i >= f->n) return ag_err("%s: tensor index %d out of range (%d tensors)", f->path, i, f->n);
    const ag_st_tensor *t = &f->t[i];
    if (numel != t->numel)
        return ag_err("%s: tensor '%s': has %zu elements, caller expected %zu", f->path, t->name, t->numel, numel);
    const unsigned char *src = f->map + f->data_start + t->begin;
    switch (t->dtype) {
    case AG_ST_F32:
        for (size_t k = 0; k < numel; k++) {
            uint32_t b = (uint32_t)src[4 * k] | (uint32_t)src[4 * k + 1] << 8 |
                         (uint32_t)src[4 * k + 2] << 16 | (uint32_t)src[4 * k + 3] << 24;
            memcpy(&out[k], &b, 4);
        }
        return 0;
    case AG_ST_F16:
        for (size_t k = 0; k < numel; k++) out[k] = ag_f16_to_f32((uint16_t)(src[2 * k] | src[2 * k + 1] << 8));
        return 0;
    case AG_ST_BF16:
        for (size_t k = 0; k < numel; k++) out[k] = ag_bf16_to_f32((uint16_t)(src[2 * k] | src[2 * k + 1] << 8));
        return 0;
    default:
        return ag_err("%s: tensor '%s': dtype %s cannot be read as float (expected F32, F16 or BF16)", f->path,
                      t->name, ag_st_dtype_name(t->dtype));
    }
}

/* ---- writer ---- */

static int cmp_entry(const void *a, const void *b) {
    return strcmp((*(const ag_st_entry *const *)a)->name, (*(const ag_st_entry *const *)b)->name);
}

static int write_all(int fd, const void *p, size_t n) {
    const char *c = p;
    while (n) {
        ssize_t w = write(fd, c, n > (1u << 30) ? (1u << 30) : n);
        if (w < 0) {
            if (errno == EINTR) continue;
            return -1;
        }
        c += w;
        n -= (size_t)w;
    }
    return 0;
}

/* fsync the directory holding path, so a rename into it survives a crash. */
static int fsync_parent(const char *path) {
    char dir[4096];
    snprintf(dir, sizeof dir, "%s", path);
    char *slash = strrchr(dir, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == dir) dir[1] = 0;
    else *slash = 0;
    int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

int ag_st_write(const char *path, const ag_st_entry *e, int n, const char *format) {
    if (n < 0) return ag_err("%s: negative tensor count", path);
    const ag_st_entry **ord = malloc((size_t)(n ? n : 1) * sizeof *ord);
    if (!ord) return ag_err("%s: out of memory", path);
    for (int i = 0; i < n; i++) ord[i] = &e[i];
    qsort(ord, (size_t)n, sizeof *ord, cmp_entry);

    int rc = 0, fd = -1;
    char *hdr = NULL, tmp[4096] = "";
    unsigned char *buf = NULL;
    json_t *root = json_object();
    if (!root) { rc = ag_err("%s: out of memory", path); goto out; }
    /* The Python writer puts __metadata__ first, then tensors in data order. jansson keeps
     * insertion order, so inserting in that order reproduces the layout. */
    if (format) {
        json_t *meta = json_object();
        json_object_set_new(meta, "format", json_string(format));
        json_object_set_new(root, "__metadata__", meta);
    }
    size_t off = 0;
    for (int i = 0; i < n; i++) {
        const ag_st_entry *x = ord[i];
        if (!x->name || !x->name[0] || !strcmp(x->name, "__metadata__")) {
            rc = ag_err("%s: entry %d has an empty or reserved name", path, i);
            goto out;
        }
        if (i > 0 && !strcmp(ord[i - 1]->name, x->name)) {
            rc = ag_err("%s: tensor '%s' given twice", path, x->name);
            goto out;
        }
        if (x->ndim < 0 || x->ndim > AG_ST_MAX_DIMS) {
            rc = ag_err("%s: tensor '%s': %d dimensions", path, x->name, x->ndim);
            goto out;
        }
        json_t *shape = json_array();
        size_t numel = 1;
        for (int d = 0; d < x->ndim; d++) {
            if (x->shape[d] < 0) { json_decref(shape); rc = ag_err("%s: tensor '%s': negative dim", path, x->name); goto out; }
            json_array_append_new(shape, json_integer(x->shape[d]));
            numel *= (size_t)x->shape[d];
        }
        json_t *ent = json_object(), *offs = json_array();
        json_object_set_new(ent, "dtype", json_string("F32"));
        json_object_set_new(ent, "shape", shape);
        json_array_append_new(offs, json_integer((json_int_t)off));
        json_array_append_new(offs, json_integer((json_int_t)(off + 4 * numel)));
        json_object_set_new(ent, "data_offsets", offs);
        if (json_object_set_new(root, x->name, ent)) { rc = ag_err("%s: out of memory", path); goto out; }
        off += 4 * numel;
    }
    hdr = json_dumps(root, JSON_COMPACT | JSON_PRESERVE_ORDER);
    if (!hdr) { rc = ag_err("%s: cannot serialise the header", path); goto out; }
    size_t hl = strlen(hdr), padded = (hl + 7) & ~(size_t)7;  /* pad with spaces to 8 bytes */
    unsigned char lenb[8];
    for (int k = 0; k < 8; k++) lenb[k] = (unsigned char)((uint64_t)padded >> (8 * k));

    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) { rc = ag_err("%s: path too long", path); goto out; }
    fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) { rc = ag_err("%s: cannot create: %s", tmp, strerror(errno)); goto out; }
    static const char spaces[8] = "        ";
    if (write_all(fd, lenb, 8) || write_all(fd, hdr, hl) || write_all(fd, spaces, padded - hl)) goto werr;
    /* Data little-endian; stage through a buffer so big-endian hosts would also be right. */
    size_t chunk = 1 << 20;
    buf = malloc(4 * chunk);
    if (!buf) { rc = ag_err("%s: out of memory", path); goto out; }
    for (int i = 0; i < n; i++) {
        const ag_st_entry *x = ord[i];
        size_t numel = 1;
        for (int d = 0; d < x->ndim; d++) numel *= (size_t)x->shape[d];
        if (numel && !x->data) { rc = ag_err("%s: tensor '%s' has no data", path, x->name); goto out; }
        for (size_t s = 0; s < numel; s += chunk) {
            size_t m = numel - s < chunk ? numel - s : chunk;
            for (size_t k = 0; k < m; k++) {
                uint32_t b;
                memcpy(&b, &x->data[s + k], 4);
                for (int q = 0; q < 4; q++) buf[4 * k + q] = (unsigned char)(b >> (8 * q));
            }
            if (write_all(fd, buf, 4 * m)) goto werr;
        }
    }
    if (fsync(fd)) goto werr;
    if (close(fd)) { fd = -1; goto werr; }
    fd = -1;
    if (rename(tmp, path)) { rc = ag_err("%s: cannot rename %s into place: %s", path, tmp, strerror(errno)); goto out; }
    fsync_parent(path);
    goto out;
werr:
    rc = ag_err("%s: write failed: %s", tmp, strerror(errno));
out:
    if (fd >= 0) close(fd);
    if (rc && tmp[0]) unlink(tmp);
    free(buf);
    free(hdr);
    json_decref(root);
    free(ord);
    return rc;
}
