/* `argent encode`: sentences to an embeddings file with a bi-encoder, at any np; and the
 * length-sorted, rank-count-independent encoding that eval and train-bi share (encode.h). */
#include "jobs/encode.h"

#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dist/comm.h"
#include "io/checkpoint.h"
#include "io/readers.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "jobs/device.h"
#include "jobs/runsetup.h"
#include "nn/error.h"

int ag_vocab_special(const char *vocab, size_t len, int32_t *cls, int32_t *sep, int32_t *pad) {
    *cls = *sep = -1;
    *pad = 0;
    int found_pad = 0;
    int32_t id = 0;
    size_t i = 0;
    while (i < len) {
        size_t j = i;
        while (j < len && vocab[j] != '\n' && vocab[j] != '\r') j++;
        size_t n = j - i;
        if (n == 5 && !memcmp(vocab + i, "[CLS]", 5)) *cls = id;
        else if (n == 5 && !memcmp(vocab + i, "[SEP]", 5)) *sep = id;
        else if (n == 5 && !memcmp(vocab + i, "[PAD]", 5) && !found_pad) { *pad = id; found_pad = 1; }
        /* Lines end at \n, \r\n or \r, as Python's text mode reads vocab.txt. */
        if (j < len && vocab[j] == '\r' && j + 1 < len && vocab[j + 1] == '\n') j++;
        i = j + 1;
        id++;
    }
    if (*cls < 0 || *sep < 0) return ag_err("the model's vocab has no %s token", *cls < 0 ? "[CLS]" : "[SEP]");
    return 0;
}

int ag_encoder_init(ag_encoder *enc, ag_bert *m, const ag_params *p, const ag_model_desc *md, int max_len) {
    memset(enc, 0, sizeof *enc);
    if (!md->vocab) return ag_err("the model has no vocab (import it with argent import)");
    if (ag_vocab_special(md->vocab, md->vocab_len, &enc->cls, &enc->sep, &enc->pad)) return -1;
    enc->m = m;
    enc->p = p;
    enc->pool = md->pooling;
    enc->normalize = md->normalize;
    enc->max_len = max_len > 0 ? max_len : md->max_seq_length;
    if (enc->max_len > md->max_position_embeddings) enc->max_len = md->max_position_embeddings;
    if (enc->max_len < 2) return ag_err("max length %d: at least 2 tokens ([CLS] and [SEP]) needed", enc->max_len);
    enc->C = md->hidden_size;
    return 0;
}

int ag_encoder_input(const ag_encoder *enc, const int32_t *const *pieces, const int *lens, int n, int32_t *ids,
                     int32_t *mask) {
    return ag_encoder_input_pad(enc, pieces, lens, n, 2, ids, mask);
}

int ag_encoder_input_pad(const ag_encoder *enc, const int32_t *const *pieces, const int *lens, int n, int T_min,
                         int32_t *ids, int32_t *mask) {
    int T = T_min < 2 ? 2 : T_min > enc->max_len ? enc->max_len : T_min;
    for (int i = 0; i < n; i++) {
        int len = lens[i] + 2 > enc->max_len ? enc->max_len : lens[i] + 2;
        if (len > T) T = len;
    }
    for (int i = 0; i < n; i++) {
        int k = lens[i] + 2 > enc->max_len ? enc->max_len - 2 : lens[i];
        int32_t *row = ids + (size_t)i * T, *mr = mask + (size_t)i * T;
        row[0] = enc->cls;
        if (k) memcpy(row + 1, pieces[i], (size_t)k * sizeof(int32_t));
        row[k + 1] = enc->sep;
        for (int t = 0; t < T; t++) {
            mr[t] = t < k + 2;
            if (t >= k + 2) row[t] = enc->pad;
        }
    }
    return T;
}

int ag_load_bi_encoder(const char *path, ag_model_desc *md, ag_bert *m, ag_params *p) {
    char file[4200];
    struct stat st;
    if (stat(path, &st)) return ag_err("%s: no such model file or directory", path);
    snprintf(file, sizeof file, "%s", path);
    if (S_ISDIR(st.st_mode)) {
        snprintf(file, sizeof file, "%s/model.h5", path);
        if (stat(file, &st)) {
            char dir[4200];
            snprintf(dir, sizeof dir, "%s/checkpoints", path);
            int k = ag_ckpt_latest(dir, file, sizeof file);
            if (k < 0) return -1;
            if (k == 0) return ag_err("%s: a directory without model.h5 or checkpoints/ckpt-*.h5", path);
        }
    }
    if (ag_ckpt_load_model(file, md, m, NULL, p, NULL)) return -1;
    if (md->kind == AG_MODEL_CROSS_ENCODER) {
        ag_bert_free(m);
        ag_params_free(p);
        return ag_err("%s: is a cross-encoder; this needs a bi-encoder (train-bi, import of a "
                      "sentence-transformers model, or tsdae)", file);
    }
    return 0;
}

int ag_check_dataset_vocab(const ag_dataset *ds, const char *ds_path, const ag_model_desc *md) {
    if (!md->vocab) return ag_err("the model has no vocab");
    char hex[65];
    ag_sha256_hex(md->vocab, md->vocab_len, hex);
    if (!ds->vocab_sha256[0] || strcmp(hex, ds->vocab_sha256))
        return ag_err("%s: tokenised with another vocab (sha256 %.12s...) than the model's (%.12s...); "
                      "run argent prepare with the model's vocab.txt", ds_path,
                      ds->vocab_sha256[0] ? ds->vocab_sha256 : "none", hex);
    return 0;
}

/* Sort key: longest first, ties by position (stable). */
typedef struct { int len; int64_t i; } len_idx;
static int len_cmp(const void *a, const void *b) {
    const len_idx *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->i < y->i ? -1 : x->i > y->i;
}

/* One batch of sentences (their pieces), eval mode, into out[n, C]. hid: host room for the
 * hidden states [n, max_len, C] when the model runs on a device (NULL on the CPU). */
static int encode_batch(const ag_encoder *enc, const ag_dataset *ds, const int64_t *sent, int n, int32_t *ids,
                        int32_t *mask, const int32_t **pc, int *lens, int32_t *argmax, float *hid, float *out) {
    for (int i = 0; i < n; i++) {
        pc[i] = ag_dataset_tokens(ds, sent[i], &lens[i]);
        if (!pc[i] && lens[i] == 0) pc[i] = ids;  /* empty text: [CLS] [SEP] */
    }
    int T = ag_encoder_input(enc, pc, lens, n, ids, mask);
    ag_bert_batch in = {n, T, ids, NULL, mask, NULL};
    if (ag_bert_forward(enc->m, enc->p, &in, 0, 0, 0)) return -1;
    const float *h = ag_bert_hidden(enc->m);
    if (hid) {  /* pooling is host code: the hidden states come down (converted to fp32) */
        enc->m->ops->download_act(hid, h, (size_t)n * T * enc->C);
        h = hid;
    }
    if (ag_pool_forward(enc->pool, h, mask, n, T, enc->C, out, argmax)) return -1;
    if (enc->normalize) ag_l2norm_forward(out, n, enc->C, out, NULL);
    return 0;
}

int ag_encode(const ag_encoder *enc, const ag_dataset *ds, const int64_t *sent, int64_t n, int batch, MPI_Comm comm,
              float *out) {
    if (batch <= 0) return ag_err("--batch: must be positive, got %d", batch);
    int rank = 0, np = 1;
    if (comm != MPI_COMM_NULL) { MPI_Comm_rank(comm, &rank); MPI_Comm_size(comm, &np); }
    const int C = enc->C;
    if (n > 0 && (size_t)n * C > INT_MAX && np > 1)
        return ag_err("encode: %lld x %d floats exceed one MPI message; encode in parts", (long long)n, C);
    len_idx *ord = malloc((size_t)(n ? n : 1) * sizeof *ord);
    int64_t *sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
    int64_t nb = (n + batch - 1) / batch;
    int64_t my_rows = 0;
    for (int64_t b = rank; b < nb; b += np) my_rows += (b + 1) * batch > n ? n - b * batch : batch;
    float *mine = malloc((size_t)(my_rows ? my_rows : 1) * C * sizeof(float));
    int32_t *ids = malloc((size_t)batch * enc->max_len * sizeof(int32_t));
    int32_t *mask = malloc((size_t)batch * enc->max_len * sizeof(int32_t));
    int32_t *argmax = malloc((size_t)batch * C * sizeof(int32_t));
    const int32_t **pc = malloc((size_t)batch * sizeof *pc);
    int *lens = malloc((size_t)batch * sizeof *lens);
    int on_host = enc->m->ops == &ag_ops_cpu;
    float *hid = on_host ? NULL : malloc((size_t)batch * enc->max_len * C * sizeof(float));
    int rc = 0;
    if (!ord || !sorted || !mine || !ids || !mask || !argmax || !pc || !lens || (!on_host && !hid))
        rc = ag_err("encode: out of memory for %lld sentences", (long long)n);
    for (int64_t i = 0; i < n && !rc; i++) {
        if (sent[i] < 0 || sent[i] >= ds->n_sentences) {
            rc = ag_err("encode: sentence id %lld out of range (%lld sentences)", (long long)sent[i],
                        (long long)ds->n_sentences);
            break;
        }
        int len;
        ag_dataset_tokens(ds, sent[i], &len);
        ord[i] = (len_idx){len, i};
    }
    if (!rc) {
        qsort(ord, (size_t)n, sizeof *ord, len_cmp);
        for (int64_t i = 0; i < n; i++) sorted[i] = sent[ord[i].i];
    }
    int64_t at = 0;
    for (int64_t b = rank; b < nb && !rc; b += np) {
        int bn = (int)((b + 1) * batch > n ? n - b * batch : batch);
        rc = encode_batch(enc, ds, sorted + b * batch, bn, ids, mask, pc, lens, argmax, hid, mine + (size_t)at * C);
        at += bn;
    }
    if (comm != MPI_COMM_NULL && np > 1) {
        int bad = rc != 0, any = 0;
        MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
        if (any && !rc) rc = ag_err("encode: another rank failed (its message says why)");
    }
    if (!rc) {
        float *all = mine;
        if (np > 1) {
            int *counts = malloc((size_t)np * sizeof *counts), *displs = malloc((size_t)np * sizeof *displs);
            all = malloc((size_t)(n ? n : 1) * C * sizeof(float));
            if (!counts || !displs || !all) {
                /* Every rank has the same sizes, so they fail together and none waits. */
                free(counts); free(displs);
                if (all) free(all);
                all = NULL;
                rc = ag_err("encode: out of memory to gather %lld embeddings", (long long)n);
            } else {
                int off = 0;
                for (int r = 0; r < np; r++) {
                    int64_t rows = 0;
                    for (int64_t b = r; b < nb; b += np) rows += (b + 1) * batch > n ? n - b * batch : batch;
                    counts[r] = (int)(rows * C);
                    displs[r] = off;
                    off += counts[r];
                }
                MPI_Allgatherv(mine, counts[rank], MPI_FLOAT, all, counts, displs, MPI_FLOAT, comm);
                free(counts);
                free(displs);
            }
        }
        if (!rc) {
            /* Rows arrive rank by rank, each rank's batches in order: put them back. */
            int64_t row = 0;
            for (int r = 0; r < np; r++)
                for (int64_t b = r; b < nb; b += np) {
                    int64_t bn = (b + 1) * batch > n ? n - b * batch : batch;
                    for (int64_t k = 0; k < bn; k++, row++)
                        memcpy(out + (size_t)ord[b * batch + k].i * C, all + (size_t)row * C, (size_t)C * sizeof(float));
                }
            if (all != mine) free(all);
        }
    }
    free(ord); free(sorted); free(mine); free(ids); free(mask); free(argmax); free(pc); free(lens); free(hid);
    return rc;
}

/* ---- embeddings files ------------------------------------------------------------------ */

static int put_attr_str(hid_t loc, const char *name, const char *value) {
    hid_t t = H5Tcopy(H5T_C_S1), s = H5Screate(H5S_SCALAR);
    H5Tset_size(t, strlen(value) + 1);
    H5Tset_cset(t, H5T_CSET_UTF8);
    hid_t a = H5Acreate2(loc, name, t, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, t, value) < 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    H5Tclose(t);
    return rc;
}

static int put_attr_i64(hid_t loc, const char *name, int64_t v) {
    hid_t s = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, s, H5P_DEFAULT, H5P_DEFAULT);
    int rc = a < 0 || H5Awrite(a, H5T_NATIVE_INT64, &v) < 0;
    if (a >= 0) H5Aclose(a);
    H5Sclose(s);
    return rc;
}

int ag_embeddings_write(const char *path, const float *emb, int64_t n, int C, const char *model, const char *input,
                        const ag_encoder *enc) {
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    H5E_auto2_t func;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);
    /* No timestamps in object headers: equal embeddings give files with equal bytes. */
    hid_t fcpl = H5Pcreate(H5P_FILE_CREATE), dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(fcpl, 0);
    H5Pset_obj_track_times(dcpl, 0);
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, fcpl, fapl);
    int rc = 0;
    if (f < 0) rc = ag_err("%s: cannot create (directory missing or not writable?)", tmp);
    if (!rc) {
        hsize_t dims[2] = {(hsize_t)n, (hsize_t)C};
        hid_t sp = H5Screate_simple(2, dims, NULL);
        hid_t d = H5Dcreate2(f, "embeddings", H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d < 0 || (n > 0 && H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, emb) < 0))
            rc = ag_err("%s: cannot write /embeddings [%lld, %d] (disk full?)", tmp, (long long)n, C);
        if (d >= 0) H5Dclose(d);
        H5Sclose(sp);
        hid_t root = H5Gopen2(f, "/", H5P_DEFAULT);
        if (!rc && (put_attr_str(root, "argent_format", AG_EMB_FORMAT) || put_attr_i64(root, "schema_version", 1) ||
                    put_attr_str(root, "model", model ? model : "") || put_attr_str(root, "input", input ? input : "") ||
                    put_attr_str(root, "pooling", ag_pool_mode_name(enc->pool)) ||
                    put_attr_i64(root, "normalize", enc->normalize) || put_attr_i64(root, "max_seq_length", enc->max_len)))
            rc = ag_err("%s: cannot write attributes", tmp);
        H5Gclose(root);
        if (H5Fclose(f) < 0 && !rc) rc = ag_err("%s: cannot close (disk full?)", tmp);
    }
    H5Pclose(fapl);
    H5Pclose(fcpl);
    H5Pclose(dcpl);
    H5Eset_auto2(H5E_DEFAULT, func, data);
    if (!rc) {
        int fd = open(tmp, O_RDONLY);
        if (fd < 0 || fsync(fd)) rc = ag_err("%s: fsync failed: %s", tmp, strerror(errno));
        if (fd >= 0) close(fd);
    }
    if (!rc && rename(tmp, path)) rc = ag_err("%s: cannot rename into place: %s", path, strerror(errno));
    if (rc) unlink(tmp);
    return rc;
}

int ag_embeddings_read(const char *path, float **emb, int64_t *n, int *C) {
    *emb = NULL;
    H5E_auto2_t func;
    void *data;
    H5Eget_auto2(H5E_DEFAULT, &func, &data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    H5Pset_file_locking(fapl, 0, 1);
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    int rc = 0;
    hid_t d = -1, sp = -1;
    if (f < 0) rc = ag_err("%s: cannot open as HDF5 (missing or not an embeddings file)", path);
    if (!rc) {
        char fmt[64] = "";
        hid_t a = H5Aexists(f, "argent_format") > 0 ? H5Aopen(f, "argent_format", H5P_DEFAULT) : -1;
        if (a >= 0) {
            hid_t t = H5Aget_type(a);
            size_t sz = H5Tget_size(t);
            if (H5Tget_class(t) == H5T_STRING && !H5Tis_variable_str(t) && sz < sizeof fmt) H5Aread(a, t, fmt);
            H5Tclose(t);
            H5Aclose(a);
        }
        if (strcmp(fmt, AG_EMB_FORMAT)) rc = ag_err("%s: not an embeddings file (argent_format is not '%s')", path, AG_EMB_FORMAT);
    }
    if (!rc) {
        d = H5Dopen2(f, "embeddings", H5P_DEFAULT);
        sp = d >= 0 ? H5Dget_space(d) : -1;
        hsize_t dims[2];
        if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 2) rc = ag_err("%s: /embeddings missing or not 2-d", path);
        else {
            H5Sget_simple_extent_dims(sp, dims, NULL);
            *n = (int64_t)dims[0];
            *C = (int)dims[1];
            *emb = malloc((size_t)(dims[0] ? dims[0] : 1) * dims[1] * sizeof(float));
            if (!*emb) rc = ag_err("%s: out of memory", path);
            else if (dims[0] && H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, *emb) < 0)
                rc = ag_err("%s: cannot read /embeddings", path);
        }
    }
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    H5Pclose(fapl);
    H5Eset_auto2(H5E_DEFAULT, func, data);
    if (rc) { free(*emb); *emb = NULL; }
    return rc;
}

/* ---- the command ------------------------------------------------------------------------ */

static const ag_cli_opt encode_opts[] = {
    {"model", "CKPT", "bi-encoder checkpoint (file, or a train-bi run directory)", NULL, 1},
    {"input", "DATA.h5", "dataset from argent prepare (its sentences are encoded, in order)", NULL, 1},
    {"out", "FILE.h5", "embeddings file to write (replaced atomically)", NULL, 1},
    {"batch", "N", "sentences per batch", "32", 0},
    {"max-length", "N", "tokens per text incl. [CLS]/[SEP] (default: the model's max_seq_length)", NULL, 0},
    AG_DEVICE_CLI_OPTS,
    {0}};

int ag_cmd_encode(int argc, char **argv) {
    ag_cli c;
    int early = ag_run_parse(&c, "argent encode", "Encode every sentence of a dataset into an embeddings HDF5 file\n"
                            "(/embeddings [S, C]; length-sorted batches, original order; any number of ranks).",
                            encode_opts, argc, argv);
    if (early >= 0) return early;
    int rc = 0;
    long batch = 32, max_len = 0;
    if (c.npos) rc = ag_err("unexpected argument '%s' (see --help)", c.pos[0]);
    if (!rc) rc = ag_run_encode_opts(&c, &batch, &max_len);
    early = ag_run_begin(&c, "argent encode", rc, &argc, &argv);
    if (early >= 0) return early;
    const ag_comm *cm = ag_comm_get();
    const char *model = ag_cli_str(&c, "model"), *input = ag_cli_str(&c, "input"), *out = ag_cli_str(&c, "out");
    ag_bi_input in;
    ag_bi_input_init(&in);
    float *emb = NULL;
    ag_device dv;
    rc = ag_device_open(&dv, ag_cli_str(&c, "device"), ag_cli_str(&c, "precision"), cm->local_rank);
    if (!rc) rc = ag_bi_input_open(&in, model, input, (int)max_len, NULL);
    /* On the GPU the forward runs on a device copy of the weights; pooling stays on the host. */
    if (!rc) rc = ag_device_mirror(&dv, &in.p);
    if (!rc) {
        in.m.ops = dv.ops;
        in.enc.p = ag_device_params(&dv, &in.p);
    }
    int bad = rc != 0, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, cm->world);
    if (!any) ag_device_say(&dv, "encode");
    int64_t S = in.ds.n_sentences;
    if (!any) {
        int64_t *ids = malloc((size_t)(S ? S : 1) * sizeof *ids);
        emb = malloc((size_t)(S ? S : 1) * in.md.hidden_size * sizeof(float));
        if (!ids || !emb) rc = ag_err("out of memory for %lld embeddings", (long long)S);
        for (int64_t i = 0; i < S && ids; i++) ids[i] = i;
        double t0 = MPI_Wtime();
        if (!rc) rc = ag_encode(&in.enc, &in.ds, ids, S, (int)batch, cm->world, emb);
        double dt = MPI_Wtime() - t0;
        if (!rc && cm->rank == 0) {
            rc = ag_embeddings_write(out, emb, S, in.md.hidden_size, model, input, &in.enc);
            if (!rc)
                printf("encoded %lld sentences (%s pooling%s, max length %d) in %.2f s on %d rank%s -> %s\n",
                       (long long)S, ag_pool_mode_name(in.enc.pool), in.enc.normalize ? ", normalized" : "",
                       in.enc.max_len, dt, cm->size, cm->size == 1 ? "" : "s", out);
        }
        free(ids);
        bad = rc != 0;
        MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, cm->world);
    }
    if (rc) fprintf(stderr, "argent encode: %s\n", ag_errmsg());
    else if (any && cm->rank != 0) { /* rank 0 said why */ }
    free(emb);
    ag_bi_input_free(&in);
    ag_device_close(&dv);
    ag_cli_free(&c);
    ag_comm_finalize();
    return any ? 1 : 0;
}
