/* Atomic HDF5 checkpoints; see checkpoint.h for the layout and the write protocol. */
#include "io/checkpoint.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "nn/error.h"

#define PATH_CAP 4096
#define CKPT_FORMAT "argent-checkpoint"

void (*ag_ckpt_fault_hook)(const char *tmp_path);

void ag_train_state_init(ag_train_state *ts) {
    memset(ts, 0, sizeof *ts);
    ts->world_size = 1;
    ts->beta1 = 0.9;
    ts->beta2 = 0.999;
    ts->eps = 1e-8;
    ts->weight_decay = 0.01;
}

/* ---- HDF5 plumbing ---- */

/* HDF5 prints its error stack to stderr by default; argent reports its own message and
 * appends the innermost HDF5 reason instead. */
static void h5_quiet(void) { H5Eset_auto2(H5E_DEFAULT, NULL, NULL); }

static herr_t walk_cb(unsigned n, const H5E_error2_t *e, void *data) {
    (void)n;
    /* Keep the last (innermost) description: the most specific reason. */
    if (e->desc && e->desc[0]) snprintf(data, 256, "%s", e->desc);
    return 0;
}

/* The current HDF5 error's most specific description (or "unknown"), then clear it. */
static const char *h5_reason(char buf[256]) {
    buf[0] = 0;
    H5Ewalk2(H5E_DEFAULT, H5E_WALK_DOWNWARD, walk_cb, buf);
    H5Eclear2(H5E_DEFAULT);
    if (!buf[0]) snprintf(buf, 256, "unknown HDF5 error");
    return buf;
}

static hid_t make_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    /* Closing the file closes every object still open in it: error paths stay simple. */
    H5Pset_fclose_degree(fapl, H5F_CLOSE_STRONG);
#if H5_VERSION_GE(1, 10, 7)
    /* Locking fails on NFS/Lustre (hpc-notes.md); checkpoints are single-writer anyway. */
    H5Pset_file_locking(fapl, 0, 1);
#endif
    return fapl;
}

static hid_t str_type(size_t len) {
    hid_t t = H5Tcopy(H5T_C_S1);
    H5Tset_size(t, len ? len : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    H5Tset_cset(t, H5T_CSET_UTF8);
    return t;
}

static int put_attr(hid_t loc, const char *name, hid_t ftype, hid_t mtype, const void *v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, ftype, sp, H5P_DEFAULT, H5P_DEFAULT);
    int rc = (a < 0 || H5Awrite(a, mtype, v) < 0) ? -1 : 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc;
}

static int put_i64(hid_t loc, const char *name, int64_t v) {
    return put_attr(loc, name, H5T_STD_I64LE, H5T_NATIVE_INT64, &v);
}
static int put_u64(hid_t loc, const char *name, uint64_t v) {
    return put_attr(loc, name, H5T_STD_U64LE, H5T_NATIVE_UINT64, &v);
}
static int put_f64(hid_t loc, const char *name, double v) {
    return put_attr(loc, name, H5T_IEEE_F64LE, H5T_NATIVE_DOUBLE, &v);
}
static int put_str(hid_t loc, const char *name, const char *s) {
    hid_t t = str_type(strlen(s));
    int rc = put_attr(loc, name, t, t, s);
    H5Tclose(t);
    return rc;
}

/* Attribute readers: the error names the file, the object and the attribute. */
typedef struct { const char *path; const char *obj; } where;

static int get_attr(where w, hid_t loc, const char *name, hid_t mtype, void *v) {
    char why[256];
    if (H5Aexists(loc, name) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return ag_err("%s: attribute %s:%s is missing (not an argent checkpoint, or a newer schema?)", w.path,
                      w.obj, name);
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return ag_err("%s: cannot open attribute %s:%s (%s)", w.path, w.obj, name, h5_reason(why));
    hid_t sp = H5Aget_space(a);
    int scalar = H5Sget_simple_extent_npoints(sp) == 1;
    H5Sclose(sp);
    int rc = 0;
    if (!scalar) rc = ag_err("%s: attribute %s:%s is not a single value", w.path, w.obj, name);
    else if (H5Aread(a, mtype, v) < 0)
        rc = ag_err("%s: cannot read attribute %s:%s as the expected type (%s)", w.path, w.obj, name, h5_reason(why));
    H5Aclose(a);
    return rc;
}

static int get_i64(where w, hid_t loc, const char *name, int64_t *v) { return get_attr(w, loc, name, H5T_NATIVE_INT64, v); }
static int get_int(where w, hid_t loc, const char *name, int *v) {
    int64_t x;
    if (get_i64(w, loc, name, &x)) return -1;
    if (x < -2147483647 || x > 2147483647) return ag_err("%s: attribute %s:%s = %lld is out of range", w.path, w.obj, name, (long long)x);
    *v = (int)x;
    return 0;
}
static int get_u64(where w, hid_t loc, const char *name, uint64_t *v) { return get_attr(w, loc, name, H5T_NATIVE_UINT64, v); }
static int get_f64(where w, hid_t loc, const char *name, double *v) { return get_attr(w, loc, name, H5T_NATIVE_DOUBLE, v); }

/* Fixed-length string attribute into buf (cap bytes, NUL-terminated). */
static int get_str(where w, hid_t loc, const char *name, char *buf, size_t cap) {
    char why[256];
    if (H5Aexists(loc, name) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        return ag_err("%s: attribute %s:%s is missing", w.path, w.obj, name);
    }
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return ag_err("%s: cannot open attribute %s:%s (%s)", w.path, w.obj, name, h5_reason(why));
    hid_t ft = H5Aget_type(a);
    int rc = 0;
    if (H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) > 0) {
        rc = ag_err("%s: attribute %s:%s is not a fixed-length string", w.path, w.obj, name);
    } else {
        size_t n = H5Tget_size(ft);
        if (n >= cap) {
            rc = ag_err("%s: attribute %s:%s is %zu bytes (at most %zu expected)", w.path, w.obj, name, n, cap - 1);
        } else {
            hid_t mt = str_type(n);
            memset(buf, 0, cap);
            if (H5Aread(a, mt, buf) < 0) rc = ag_err("%s: cannot read attribute %s:%s (%s)", w.path, w.obj, name, h5_reason(why));
            H5Tclose(mt);
        }
    }
    H5Tclose(ft);
    H5Aclose(a);
    return rc;
}

static int write_tensor(hid_t g, const char *path, const char *grp, const ag_tensor_info *t, const float *x) {
    char why[256];
    if (strchr(t->name, '/') || !t->name[0])
        return ag_err("%s: tensor name '%s' is empty or contains '/'", path, t->name);
    hsize_t dims[AG_MAX_DIMS];
    for (int d = 0; d < t->ndim; d++) dims[d] = (hsize_t)t->shape[d];
    hid_t sp = H5Screate_simple(t->ndim, dims, NULL);
    hid_t ds = H5Dcreate2(g, t->name, H5T_IEEE_F32LE, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    int rc = 0;
    if (ds < 0 || H5Dwrite(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, x) < 0)
        rc = ag_err("%s: cannot write dataset %s/%s (%s)", path, grp, t->name, h5_reason(why));
    if (ds >= 0) H5Dclose(ds);
    H5Sclose(sp);
    return rc;
}

static int fsync_path(const char *path, int dir) {
    int fd = open(path, (dir ? O_RDONLY | O_DIRECTORY : O_RDWR) | O_CLOEXEC);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    close(fd);
    return rc;
}

static void parent_dir(const char *path, char *out, size_t cap) {
    snprintf(out, cap, "%s", path);
    char *s = strrchr(out, '/');
    if (!s) snprintf(out, cap, ".");
    else if (s == out) out[1] = 0;
    else *s = 0;
}

static int write_meta(hid_t f, const char *path, const ag_model_desc *md, const ag_train_state *ts, int has_optim) {
    char now[64];
    time_t t = time(NULL);
    struct tm tmv;
    strftime(now, sizeof now, "%Y-%m-%dT%H:%M:%SZ", gmtime_r(&t, &tmv));
    int e = 0;
    e |= put_str(f, "format", CKPT_FORMAT);
    e |= put_i64(f, "schema_version", AG_CKPT_SCHEMA);
    e |= put_str(f, "model_kind", ag_model_kind_name(md->kind));
    e |= put_i64(f, "step", ts->step);
    e |= put_i64(f, "world_size", ts->world_size);
    e |= put_u64(f, "rng_seed", ts->rng_seed);
    e |= put_i64(f, "epoch", ts->epoch);
    e |= put_i64(f, "sample_index", ts->sample_index);
    e |= put_i64(f, "has_optimizer", has_optim);
    e |= put_str(f, "created", now);
    if (ts->loss_scale > 0) {
        e |= put_f64(f, "loss_scale", ts->loss_scale);
        e |= put_i64(f, "loss_scale_growth_tracker", ts->loss_scale_tracker);
    }

    hid_t g = H5Gcreate2(f, "schedule", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    e |= g < 0;
    if (g >= 0) {
        e |= put_str(g, "kind", ts->schedule);
        e |= put_f64(g, "peak_lr", ts->peak_lr);
        e |= put_f64(g, "last_lr", ts->last_lr);
        e |= put_i64(g, "warmup_steps", ts->warmup_steps);
        e |= put_i64(g, "total_steps", ts->total_steps);
        H5Gclose(g);
    }
    g = H5Gcreate2(f, "config", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    e |= g < 0;
    if (g >= 0) {
        e |= put_i64(g, "vocab_size", md->vocab_size);
        e |= put_i64(g, "hidden_size", md->hidden_size);
        e |= put_i64(g, "num_hidden_layers", md->num_hidden_layers);
        e |= put_i64(g, "num_attention_heads", md->num_attention_heads);
        e |= put_i64(g, "intermediate_size", md->intermediate_size);
        e |= put_i64(g, "max_position_embeddings", md->max_position_embeddings);
        e |= put_i64(g, "type_vocab_size", md->type_vocab_size);
        e |= put_i64(g, "pad_token_id", md->pad_token_id);
        e |= put_f64(g, "layer_norm_eps", md->layer_norm_eps);
        e |= put_f64(g, "hidden_dropout_prob", md->hidden_dropout_prob);
        e |= put_f64(g, "attention_probs_dropout_prob", md->attention_probs_dropout_prob);
        e |= put_f64(g, "initializer_range", md->initializer_range);
        e |= put_str(g, "hidden_act", md->hidden_act);
        e |= put_str(g, "architecture", md->architecture);
        e |= put_i64(g, "has_pooler", md->has_pooler);
        e |= put_i64(g, "num_labels", md->num_labels);
        /* Labels as one newline-separated string: readable, and no variable-length types. */
        char labels[AG_MAX_LABELS * AG_LABEL_MAX + AG_MAX_LABELS] = "";
        for (int k = 0; k < md->num_labels && k < AG_MAX_LABELS; k++) {
            if (strchr(md->id2label[k], '\n')) { e = 1; ag_err("%s: label %d contains a newline", path, k); }
            strcat(labels, md->id2label[k]);
            if (k + 1 < md->num_labels) strcat(labels, "\n");
        }
        e |= put_str(g, "id2label", labels);
        e |= put_str(g, "pooling", ag_pool_mode_name(md->pooling));
        e |= put_i64(g, "normalize", md->normalize);
        e |= put_i64(g, "max_seq_length", md->max_seq_length);
        H5Gclose(g);
    }
    g = H5Gcreate2(f, "tokenizer", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
    e |= g < 0;
    if (g >= 0) {
        e |= put_i64(g, "do_lower_case", md->do_lower_case);
        e |= put_i64(g, "st_lower_case", md->st_lower_case);
        e |= put_i64(g, "max_seq_length", md->max_seq_length);
        if (md->vocab) {
            /* One fixed-length string: h5dump shows the text, h5py gives the bytes. */
            hid_t st = str_type(md->vocab_len), sp = H5Screate(H5S_SCALAR);
            hid_t ds = H5Dcreate2(g, "vocab", st, sp, H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
            e |= ds < 0 || H5Dwrite(ds, st, H5S_ALL, H5S_ALL, H5P_DEFAULT, md->vocab_len ? md->vocab : "") < 0;
            if (ds >= 0) H5Dclose(ds);
            H5Sclose(sp);
            H5Tclose(st);
        }
        H5Gclose(g);
    }
    if (e) {
        char why[256];
        return ag_err("%s: cannot write checkpoint metadata (%s)", path, h5_reason(why));
    }
    return 0;
}

int ag_ckpt_write(const char *path, const ag_model_desc *md, const ag_train_state *ts,
                  const ag_params *p, const float *m, const float *v) {
    h5_quiet();
    char tmp[PATH_CAP], why[256];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", path) >= (int)sizeof tmp) return ag_err("%s: path too long", path);
    if (!p->data) return ag_err("%s: the parameter table is not allocated", path);
    if ((m == NULL) != (v == NULL)) return ag_err("%s: give both AdamW moments or neither", path);
    if (ag_model_desc_check(md)) return ag_err_ctx("%s", path);
    hid_t fapl = make_fapl();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    if (f < 0) h5_reason(why);  /* before H5Pclose, which clears the error stack */
    H5Pclose(fapl);
    if (f < 0) return ag_err("%s: cannot create (%s)", tmp, why);
    int rc = write_meta(f, tmp, md, ts, m != NULL);
    hid_t g = -1;
    if (!rc && (g = H5Gcreate2(f, "params", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT)) < 0)
        rc = ag_err("%s: cannot create group params (%s)", tmp, h5_reason(why));
    for (int i = 0; i < p->n && !rc; i++) rc = write_tensor(g, tmp, "params", &p->t[i], ag_params_data(p, i));
    if (g >= 0) H5Gclose(g);
    if (!rc && m) {
        hid_t go = H5Gcreate2(f, "optim", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT);
        hid_t gm = go >= 0 ? H5Gcreate2(go, "m", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
        hid_t gv = go >= 0 ? H5Gcreate2(go, "v", H5P_DEFAULT, H5P_DEFAULT, H5P_DEFAULT) : -1;
        if (go < 0 || gm < 0 || gv < 0 || put_f64(go, "beta1", ts->beta1) || put_f64(go, "beta2", ts->beta2) ||
            put_f64(go, "eps", ts->eps) || put_f64(go, "weight_decay", ts->weight_decay))
            rc = ag_err("%s: cannot create group optim (%s)", tmp, h5_reason(why));
        for (int i = 0; i < p->n && !rc; i++) {
            rc = write_tensor(gm, tmp, "optim/m", &p->t[i], m + p->t[i].offset);
            if (!rc) rc = write_tensor(gv, tmp, "optim/v", &p->t[i], v + p->t[i].offset);
        }
        if (gv >= 0) H5Gclose(gv);
        if (gm >= 0) H5Gclose(gm);
        if (go >= 0) H5Gclose(go);
    }
    if (!rc && H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) rc = ag_err("%s: flush failed (%s)", tmp, h5_reason(why));
    /* The close writes the last metadata, so it must succeed before the data is trusted. */
    if (H5Fclose(f) < 0 && !rc) rc = ag_err("%s: close failed (%s)", tmp, h5_reason(why));
    if (!rc && fsync_path(tmp, 0)) rc = ag_err("%s: fsync failed: %s", tmp, strerror(errno));
    if (rc) {
        unlink(tmp);
        return -1;
    }
    if (ag_ckpt_fault_hook) ag_ckpt_fault_hook(tmp);
    if (rename(tmp, path)) {
        int e = errno;
        unlink(tmp);
        return ag_err("%s: cannot rename %s into place: %s", path, tmp, strerror(e));
    }
    char dir[PATH_CAP];
    parent_dir(path, dir, sizeof dir);
    if (fsync_path(dir, 1)) return ag_err("%s: fsync of directory %s failed: %s", path, dir, strerror(errno));
    return 0;
}

/* ---- reading ---- */

/* Open for reading with clear messages for the usual failures. */
static hid_t open_ckpt(const char *path) {
    h5_quiet();
    char why[256];
    struct stat st;
    if (stat(path, &st) != 0) { ag_err("%s: cannot open checkpoint: %s", path, strerror(errno)); return -1; }
    if (!S_ISREG(st.st_mode)) { ag_err("%s: not a regular file", path); return -1; }
    if (st.st_size == 0) { ag_err("%s: empty file (0 bytes), not a checkpoint", path); return -1; }
    htri_t is = H5Fis_hdf5(path);
    if (is <= 0) {
        H5Eclear2(H5E_DEFAULT);
        ag_err("%s: not an HDF5 file (%lld bytes, no HDF5 signature); corrupt or not a checkpoint", path,
               (long long)st.st_size);
        return -1;
    }
    hid_t fapl = make_fapl();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    if (f < 0) h5_reason(why);  /* before H5Pclose, which clears the error stack */
    H5Pclose(fapl);
    if (f < 0) {
        ag_err("%s: cannot open checkpoint: corrupt or truncated (HDF5: %s)", path, why);
        return -1;
    }
    where w = {path, "/"};
    char fmt[64];
    int64_t ver;
    if (get_str(w, f, "format", fmt, sizeof fmt) || strcmp(fmt, CKPT_FORMAT)) {
        ag_err("%s: not an argent checkpoint (root attribute format is missing or not \"%s\")", path, CKPT_FORMAT);
        H5Fclose(f);
        return -1;
    }
    if (get_i64(w, f, "schema_version", &ver)) { H5Fclose(f); return -1; }
    if (ver < 1 || ver > AG_CKPT_SCHEMA) {
        ag_err("%s: checkpoint schema version %lld, this argent reads 1..%d", path, (long long)ver, AG_CKPT_SCHEMA);
        H5Fclose(f);
        return -1;
    }
    return f;
}

static hid_t open_group(const char *path, hid_t f, const char *name) {
    char why[256];
    if (H5Lexists(f, name, H5P_DEFAULT) <= 0) {
        H5Eclear2(H5E_DEFAULT);
        ag_err("%s: group /%s is missing (incomplete checkpoint)", path, name);
        return -1;
    }
    hid_t g = H5Gopen2(f, name, H5P_DEFAULT);
    if (g < 0) ag_err("%s: cannot open group /%s (%s)", path, name, h5_reason(why));
    return g;
}

static int read_meta(hid_t f, const char *path, ag_model_desc *md, ag_train_state *ts, int *has_optim) {
    where w = {path, "/"};
    char kind[32], pool[32], labels[AG_MAX_LABELS * AG_LABEL_MAX + AG_MAX_LABELS];
    int64_t ho;
    ag_model_desc_free(md);
    ag_model_desc_init(md);
    ag_train_state_init(ts);
    if (get_str(w, f, "model_kind", kind, sizeof kind) || ag_model_kind_parse(kind, &md->kind) ||
        get_i64(w, f, "step", &ts->step) || get_int(w, f, "world_size", &ts->world_size) ||
        get_u64(w, f, "rng_seed", &ts->rng_seed) || get_i64(w, f, "epoch", &ts->epoch) ||
        get_i64(w, f, "sample_index", &ts->sample_index) || get_i64(w, f, "has_optimizer", &ho))
        return ag_err_ctx("%s", path), -1;
    /* Optional (fp16 runs; absent in older checkpoints). */
    if (H5Aexists(f, "loss_scale") > 0 &&
        (get_f64(w, f, "loss_scale", &ts->loss_scale) ||
         get_i64(w, f, "loss_scale_growth_tracker", &ts->loss_scale_tracker)))
        return ag_err_ctx("%s", path), -1;
    if (!(ts->loss_scale >= 0) || !isfinite(ts->loss_scale) || ts->loss_scale_tracker < 0)
        return ag_err("%s: /:loss_scale %g / loss_scale_growth_tracker %lld: expected a finite scale >= 0 and a "
                      "tracker >= 0", path, ts->loss_scale, (long long)ts->loss_scale_tracker);
    *has_optim = ho != 0;
    hid_t g = open_group(path, f, "schedule");
    if (g < 0) return -1;
    w.obj = "/schedule";
    int rc = get_str(w, g, "kind", ts->schedule, sizeof ts->schedule) || get_f64(w, g, "peak_lr", &ts->peak_lr) ||
             get_f64(w, g, "last_lr", &ts->last_lr) || get_i64(w, g, "warmup_steps", &ts->warmup_steps) ||
             get_i64(w, g, "total_steps", &ts->total_steps);
    H5Gclose(g);
    if (rc) return -1;
    if ((g = open_group(path, f, "config")) < 0) return -1;
    w.obj = "/config";
    rc = get_int(w, g, "vocab_size", &md->vocab_size) || get_int(w, g, "hidden_size", &md->hidden_size) ||
         get_int(w, g, "num_hidden_layers", &md->num_hidden_layers) ||
         get_int(w, g, "num_attention_heads", &md->num_attention_heads) ||
         get_int(w, g, "intermediate_size", &md->intermediate_size) ||
         get_int(w, g, "max_position_embeddings", &md->max_position_embeddings) ||
         get_int(w, g, "type_vocab_size", &md->type_vocab_size) || get_int(w, g, "pad_token_id", &md->pad_token_id) ||
         get_f64(w, g, "layer_norm_eps", &md->layer_norm_eps) ||
         get_f64(w, g, "hidden_dropout_prob", &md->hidden_dropout_prob) ||
         get_f64(w, g, "attention_probs_dropout_prob", &md->attention_probs_dropout_prob) ||
         get_f64(w, g, "initializer_range", &md->initializer_range) ||
         get_str(w, g, "hidden_act", md->hidden_act, sizeof md->hidden_act) ||
         get_str(w, g, "architecture", md->architecture, sizeof md->architecture) ||
         get_int(w, g, "has_pooler", &md->has_pooler) || get_int(w, g, "num_labels", &md->num_labels) ||
         get_str(w, g, "id2label", labels, sizeof labels) || get_str(w, g, "pooling", pool, sizeof pool) ||
         get_int(w, g, "normalize", &md->normalize) || get_int(w, g, "max_seq_length", &md->max_seq_length);
    H5Gclose(g);
    if (rc) return -1;
    if (ag_pool_mode_parse(pool, &md->pooling)) return ag_err_ctx("%s: /config:pooling", path);
    if (md->num_labels < 1 || md->num_labels > AG_MAX_LABELS)
        return ag_err("%s: /config:num_labels %d outside 1..%d", path, md->num_labels, AG_MAX_LABELS);
    char *s = labels;
    for (int k = 0; k < md->num_labels; k++) {
        char *nl = strchr(s, '\n');
        if (nl) *nl = 0;
        size_t L = strlen(s);
        if (L >= AG_LABEL_MAX) return ag_err("%s: /config:id2label label %d is longer than %d bytes", path, k, AG_LABEL_MAX - 1);
        memcpy(md->id2label[k], s, L + 1);
        s = nl ? nl + 1 : s + L;
    }
    if ((g = open_group(path, f, "tokenizer")) < 0) return -1;
    w.obj = "/tokenizer";
    rc = get_int(w, g, "do_lower_case", &md->do_lower_case) || get_int(w, g, "st_lower_case", &md->st_lower_case);
    if (!rc && H5Lexists(g, "vocab", H5P_DEFAULT) > 0) {
        char why[256];
        hid_t ds = H5Dopen2(g, "vocab", H5P_DEFAULT);
        hid_t ft = ds >= 0 ? H5Dget_type(ds) : -1;
        if (ft < 0 || H5Tget_class(ft) != H5T_STRING || H5Tis_variable_str(ft) > 0) {
            rc = ag_err("%s: /tokenizer/vocab is not a fixed-length string", path);
        } else {
            size_t n = H5Tget_size(ft);
            md->vocab = malloc(n + 1);
            hid_t mt = str_type(n);
            if (!md->vocab) rc = ag_err("%s: out of memory for a %zu-byte vocab", path, n);
            else if (H5Dread(ds, mt, H5S_ALL, H5S_ALL, H5P_DEFAULT, md->vocab) < 0)
                rc = ag_err("%s: cannot read /tokenizer/vocab (%s)", path, h5_reason(why));
            H5Tclose(mt);
            if (!rc) {
                md->vocab[n] = 0;
                md->vocab_len = strlen(md->vocab);  /* NULLPAD: a 1-byte empty vocab reads as "" */
            }
        }
        if (ft >= 0) H5Tclose(ft);
        if (ds >= 0) H5Dclose(ds);
    }
    H5Eclear2(H5E_DEFAULT);
    H5Gclose(g);
    if (rc) return -1;
    if (ag_model_desc_check(md)) return ag_err_ctx("%s: stored config", path);
    return 0;
}

int ag_ckpt_read_info(const char *path, ag_model_desc *md, ag_train_state *ts, int *has_optim) {
    hid_t f = open_ckpt(path);
    if (f < 0) return -1;
    ag_train_state tsl;
    int ho;
    int rc = read_meta(f, path, md, ts ? ts : &tsl, &ho);
    if (!rc && has_optim) *has_optim = ho;
    H5Fclose(f);
    return rc;
}

/* Compare one group's datasets with the table: every mismatch into the message list. */
typedef struct { char *s; size_t len; int lines, dropped; } mlist;

static void ml_add(mlist *l, const char *fmt, ...) __attribute__((format(printf, 2, 3)));
static void ml_add(mlist *l, const char *fmt, ...) {
    char line[400];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(line, sizeof line, fmt, ap);
    va_end(ap);
    size_t n = strlen(line);
    /* Keep the whole list inside ag_err's 2 KB buffer. */
    if (l->len + n + 2 > 1600) { l->dropped++; return; }
    char *s = realloc(l->s, l->len + n + 2);
    if (!s) { l->dropped++; return; }
    l->s = s;
    memcpy(l->s + l->len, line, n);
    l->len += n;
    l->s[l->len++] = '\n';
    l->s[l->len] = 0;
    l->lines++;
}

static void shape_str(char *buf, size_t cap, int nd, const int64_t *dims) {
    buf[0] = 0;
    for (int d = 0; d < nd; d++) snprintf(buf + strlen(buf), cap - strlen(buf), "%s%lld", d ? ", " : "", (long long)dims[d]);
}

typedef struct { const ag_params *p; mlist *ml; const char *grp; } iter_ctx;

static herr_t unexpected_cb(hid_t g, const char *name, const H5L_info_t *info, void *data) {
    (void)g; (void)info;
    iter_ctx *c = data;
    if (ag_params_find(c->p, name) < 0) ml_add(c->ml, "  %s/%s: in the file but not in the model", c->grp, name);
    return 0;
}

static int check_group(hid_t g, const char *grp, const ag_params *p, mlist *ml, int allow_extra) {
    for (int i = 0; i < p->n; i++) {
        const ag_tensor_info *t = &p->t[i];
        if (strchr(t->name, '/') || H5Lexists(g, t->name, H5P_DEFAULT) <= 0) {
            H5Eclear2(H5E_DEFAULT);
            ml_add(ml, "  %s/%s: missing from the file", grp, t->name);
            continue;
        }
        hid_t ds = H5Dopen2(g, t->name, H5P_DEFAULT);
        if (ds < 0) {
            H5Eclear2(H5E_DEFAULT);
            ml_add(ml, "  %s/%s: not a readable dataset", grp, t->name);
            continue;
        }
        hid_t ty = H5Dget_type(ds), sp = H5Dget_space(ds);
        if (H5Tget_class(ty) != H5T_FLOAT || H5Tget_size(ty) != 4)
            ml_add(ml, "  %s/%s: dtype is not float32 (class %d, %zu bytes)", grp, t->name, (int)H5Tget_class(ty),
                   H5Tget_size(ty));
        int nd = H5Sget_simple_extent_ndims(sp);
        hsize_t hd[H5S_MAX_RANK];
        int64_t fd[H5S_MAX_RANK];
        if (nd >= 0 && nd <= H5S_MAX_RANK) H5Sget_simple_extent_dims(sp, hd, NULL);
        int same = nd == t->ndim;
        for (int d = 0; d < nd && d < H5S_MAX_RANK; d++) {
            fd[d] = (int64_t)hd[d];
            if (same && fd[d] != t->shape[d]) same = 0;
        }
        if (!same) {
            char a[128], b[128];
            shape_str(a, sizeof a, nd < 0 ? 0 : nd, fd);
            shape_str(b, sizeof b, t->ndim, t->shape);
            ml_add(ml, "  %s/%s: shape [%s] in the file, the model expects [%s]", grp, t->name, a, b);
        }
        H5Sclose(sp);
        H5Tclose(ty);
        H5Dclose(ds);
    }
    if (!allow_extra) {
        iter_ctx c = {p, ml, grp};
        hsize_t idx = 0;
        H5Literate(g, H5_INDEX_NAME, H5_ITER_NATIVE, &idx, unexpected_cb, &c);
    }
    H5Eclear2(H5E_DEFAULT);
    return 0;
}

static int read_group(hid_t g, const char *path, const char *grp, const ag_params *p, float *base) {
    char why[256];
    for (int i = 0; i < p->n; i++) {
        hid_t ds = H5Dopen2(g, p->t[i].name, H5P_DEFAULT);
        int bad = ds < 0 || H5Dread(ds, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, base + p->t[i].offset) < 0;
        if (ds >= 0) H5Dclose(ds);
        if (bad) return ag_err("%s: cannot read %s/%s: corrupt data? (HDF5: %s)", path, grp, p->t[i].name, h5_reason(why));
    }
    return 0;
}

static int load(const char *path, const ag_model_desc *expect, const ag_params *p, float *m, float *v,
                int allow_extra) {
    if (!p->data) return ag_err("%s: the parameter table is not allocated", path);
    if ((m == NULL) != (v == NULL)) return ag_err("%s: ask for both AdamW moments or neither", path);
    hid_t f = open_ckpt(path);
    if (f < 0) return -1;
    ag_model_desc md;
    ag_train_state ts;
    int has_optim = 0, rc = 0;
    ag_model_desc_init(&md);
    if (read_meta(f, path, &md, &ts, &has_optim)) { rc = -1; goto out; }
    mlist ml = {0};
    if (expect && ag_model_desc_diff(expect, &md)) ml_add(&ml, "%s", ag_errmsg());
    hid_t gp = open_group(path, f, "params");
    if (gp < 0) { rc = -1; free(ml.s); goto out; }
    check_group(gp, "params", p, &ml, allow_extra);
    hid_t gm = -1, gv = -1;
    if (m && !has_optim) {
        ml_add(&ml, "  the file has no optimizer state (saved without AdamW moments, e.g. by import)");
    } else if (m) {
        if ((gm = open_group(path, f, "optim/m")) < 0 || (gv = open_group(path, f, "optim/v")) < 0) {
            ml_add(&ml, "  %s", ag_errmsg());
        } else {
            check_group(gm, "optim/m", p, &ml, allow_extra);
            check_group(gv, "optim/v", p, &ml, allow_extra);
        }
    }
    if (ml.lines || ml.dropped) {
        if (ml.len && ml.s[ml.len - 1] == '\n') ml.s[--ml.len] = 0;
        if (ml.dropped) ag_err("%s: does not match the model:\n%s\n  (and %d more)", path, ml.s, ml.dropped);
        else ag_err("%s: does not match the model:\n%s", path, ml.s);
        rc = -1;
    } else {
        rc = read_group(gp, path, "params", p, p->data);
        if (!rc && m) rc = read_group(gm, path, "optim/m", p, m);
        if (!rc && m) rc = read_group(gv, path, "optim/v", p, v);
    }
    free(ml.s);
out:
    ag_model_desc_free(&md);
    H5Fclose(f);  /* strong close degree: groups and datasets go with it */
    return rc;
}

int ag_ckpt_load(const char *path, const ag_model_desc *expect, const ag_params *p, float *m, float *v) {
    return load(path, expect, p, m, v, 0);
}

int ag_ckpt_load_partial(const char *path, const ag_params *p) {
    return load(path, NULL, p, NULL, NULL, 1);
}

int ag_ckpt_load_model(const char *path, ag_model_desc *md, ag_bert *m, ag_xhead *head, ag_params *p,
                       ag_train_state *ts) {
    memset(m, 0, sizeof *m);
    ag_params_init(p);
    if (ag_ckpt_read_info(path, md, ts, NULL)) return -1;
    ag_model_desc enc = *md;
    if (md->kind == AG_MODEL_TSDAE) enc.kind = AG_MODEL_BI_ENCODER;
    if (ag_model_register(&enc, m, p, head)) {
        ag_err_ctx("%s: building the model it describes", path);
        goto fail;
    }
    if (ag_params_alloc(p)) {
        ag_err("%s: out of memory for %zu parameters", path, p->total);
        goto fail;
    }
    if (md->kind == AG_MODEL_TSDAE ? ag_ckpt_load_partial(path, p) : ag_ckpt_load(path, md, p, NULL, NULL)) goto fail;
    return 0;
fail:
    ag_bert_free(m);
    ag_params_free(p);
    return -1;
}

/* ---- run directories ---- */

int ag_ckpt_path(char *out, size_t cap, const char *dir, int64_t step) {
    if (step < 0) return ag_err("checkpoint step %lld is negative", (long long)step);
    int k = snprintf(out, cap, "%s/ckpt-%06lld.h5", dir, (long long)step);
    if (k < 0 || (size_t)k >= cap) return ag_err("%s: checkpoint path too long", dir);
    return 0;
}

/* "ckpt-<digits>.h5" exactly -> step; -1 for anything else (.tmp files included). */
static int64_t parse_name(const char *name) {
    if (strncmp(name, "ckpt-", 5)) return -1;
    const char *s = name + 5;
    int64_t v = 0;
    int nd = 0;
    while (*s >= '0' && *s <= '9') {
        if (v > (INT64_MAX - 9) / 10) return -1;
        v = v * 10 + (*s++ - '0');
        nd++;
    }
    return nd && !strcmp(s, ".h5") ? v : -1;
}

static int cmp_desc(const void *a, const void *b) {
    int64_t x = *(const int64_t *)a, y = *(const int64_t *)b;
    return x < y ? 1 : x > y ? -1 : 0;
}

/* Steps of the complete checkpoints in dir, newest first. 0 with *n = 0 if dir is absent. */
static int list_steps(const char *dir, int64_t **steps, int *n) {
    *steps = NULL;
    *n = 0;
    DIR *d = opendir(dir);
    if (!d) {
        if (errno == ENOENT) return 0;
        return ag_err("%s: cannot list checkpoint directory: %s", dir, strerror(errno));
    }
    int cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        int64_t s = parse_name(e->d_name);
        if (s < 0) continue;
        if (*n == cap) {
            cap = cap ? 2 * cap : 16;
            int64_t *ns = realloc(*steps, (size_t)cap * sizeof *ns);
            if (!ns) { closedir(d); free(*steps); *steps = NULL; *n = 0; return ag_err("out of memory"); }
            *steps = ns;
        }
        (*steps)[(*n)++] = s;
    }
    closedir(d);
    if (*n > 1) qsort(*steps, (size_t)*n, sizeof **steps, cmp_desc);  /* qsort(NULL, 0) is UB */
    return 0;
}

static int mkdir_p(const char *dir) {
    char tmp[PATH_CAP];
    if (snprintf(tmp, sizeof tmp, "%s", dir) >= (int)sizeof tmp) return ag_err("%s: path too long", dir);
    for (char *s = tmp + 1; *s; s++) {
        if (*s != '/') continue;
        *s = 0;
        if (mkdir(tmp, 0755) && errno != EEXIST) return ag_err("%s: cannot create directory: %s", tmp, strerror(errno));
        *s = '/';
    }
    if (mkdir(tmp, 0755) && errno != EEXIST) return ag_err("%s: cannot create directory: %s", tmp, strerror(errno));
    return 0;
}

int ag_ckpt_save_dir(const char *dir, int keep, const ag_model_desc *md, const ag_train_state *ts,
                     const ag_params *p, const float *m, const float *v) {
    char path[PATH_CAP];
    if (mkdir_p(dir) || ag_ckpt_path(path, sizeof path, dir, ts->step)) return -1;
    if (ag_ckpt_write(path, md, ts, p, m, v)) return -1;
    /* Prune only after the new file is in place: a failure above leaves every old one. */
    DIR *d = opendir(dir);
    if (d) {
        struct dirent *e;
        while ((e = readdir(d))) {
            size_t l = strlen(e->d_name);
            if (!strncmp(e->d_name, "ckpt-", 5) && l > 7 && !strcmp(e->d_name + l - 7, ".h5.tmp")) {
                char stale[PATH_CAP];
                if (snprintf(stale, sizeof stale, "%s/%s", dir, e->d_name) < (int)sizeof stale) unlink(stale);
            }
        }
        closedir(d);
    }
    if (keep <= 0) return 0;
    int64_t *steps;
    int n;
    if (list_steps(dir, &steps, &n)) return -1;
    for (int i = keep; i < n; i++) {
        if (steps[i] == ts->step) continue;
        char old[PATH_CAP];
        if (!ag_ckpt_path(old, sizeof old, dir, steps[i]) && unlink(old) && errno != ENOENT) {
            ag_err("%s: cannot remove old checkpoint: %s", old, strerror(errno));
            free(steps);
            return -1;
        }
    }
    free(steps);
    return 0;
}

int ag_ckpt_latest(const char *dir, char *out, size_t cap) {
    int64_t *steps;
    int n;
    if (list_steps(dir, &steps, &n)) return -1;
    if (n == 0) { free(steps); return 0; }
    char path[PATH_CAP];
    int rc = ag_ckpt_path(path, sizeof path, dir, steps[0]);
    if (!rc) {
        hid_t f = open_ckpt(path);
        if (f < 0) {
            /* Do not fall back silently: a renamed checkpoint is complete by construction, so
             * an unreadable one means damage the operator should know about. */
            char why[2048];
            snprintf(why, sizeof why, "%s", ag_errmsg());
            rc = -1;
            if (n > 1) {
                char prev[PATH_CAP];
                ag_ckpt_path(prev, sizeof prev, dir, steps[1]);
                ag_err("newest checkpoint is unreadable: %s\n(to resume from the previous checkpoint %s, move the "
                       "broken file aside)", why, prev);
            } else {
                ag_err("the only checkpoint in %s is unreadable: %s", dir, why);
            }
        } else {
            H5Fclose(f);
            if (strlen(path) >= cap) rc = ag_err("%s: path does not fit the caller's buffer", path);
            else { snprintf(out, cap, "%s", path); rc = 1; }
        }
    }
    free(steps);
    return rc;
}
