/* The chunked work engine: done-map from part files, dynamic hand-out of missing chunks
 * through an MPI atomic counter, atomic part files, and the merge into one dataset; see
 * chunks.h. */
#include "dist/chunks.h"

#include "dist/signals.h"
#include "nn/error.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <hdf5.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#define PART_SCHEMA "argent.part.v1"
#define MERGED_SCHEMA "argent.merged.v1"
#define PATH_LEN 4096

/* Added to the shared counter to stop every rank: larger than any chunk count, small
 * enough that later increments cannot overflow. */
#define STOP_BIAS ((int64_t)1 << 60)

void ag_chunks_config_default(ag_chunks_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->dataset = "out";
    cfg->deflate = 4;
}

int64_t ag_chunks_count(int64_t n_items, int64_t chunk_size) {
    if (n_items < 1 || chunk_size < 1) return 0;
    return (n_items + chunk_size - 1) / chunk_size;
}

void ag_chunk_range(const ag_chunks_config *cfg, int64_t chunk, int64_t *begin, int64_t *end) {
    *begin = chunk * cfg->chunk_size;
    *end = *begin + cfg->chunk_size < cfg->n_items ? *begin + cfg->chunk_size : cfg->n_items;
}

int ag_chunk_part_path(char *buf, size_t size, const char *dir, int64_t chunk) {
    int k = snprintf(buf, size, "%s/part-%06lld.h5", dir, (long long)chunk);
    return k < 0 || (size_t)k >= size ? -1 : 0;
}

static const char *dset_name(const ag_chunks_config *cfg) {
    return cfg->dataset && *cfg->dataset ? cfg->dataset : "out";
}

static int check_config(const ag_chunks_config *cfg, const char *who) {
    if (!cfg->dir || !*cfg->dir) return ag_err("%s: no output directory given", who);
    if (cfg->n_items < 1 || cfg->chunk_size < 1)
        return ag_err("%s: n_items %lld and chunk_size %lld must both be >= 1", who,
                      (long long)cfg->n_items, (long long)cfg->chunk_size);
    if (cfg->deflate < 0 || cfg->deflate > 9)
        return ag_err("%s: deflate level %d outside 0..9", who, cfg->deflate);
    if (strlen(cfg->dir) > PATH_LEN - 64) return ag_err("%s: directory path too long", who);
    if (cfg->share_count < 0 || (cfg->share_count > 0 && (cfg->share_index < 0 || cfg->share_index >= cfg->share_count)))
        return ag_err("%s: share %lld of %lld: expected 0 <= index < count", who, (long long)cfg->share_index,
                      (long long)cfg->share_count);
    return 0;
}

/* ---- HDF5 helpers ---- */

/* HDF5 prints its own error stack on every failure; argent reports errors itself, so the
 * automatic printing is off while the engine's HDF5 calls run. */
typedef struct { H5E_auto2_t fn; void *data; } h5_quiet;
static void h5_quiet_on(h5_quiet *q) {
    H5Eget_auto2(H5E_DEFAULT, &q->fn, &q->data);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
}
static void h5_quiet_off(const h5_quiet *q) { H5Eset_auto2(H5E_DEFAULT, q->fn, q->data); }

/* Serial file access without file locks (they fail on NFS and Lustre). */
static hid_t serial_fapl(void) {
    hid_t fapl = H5Pcreate(H5P_FILE_ACCESS);
    if (fapl < 0) return fapl;
    H5Pset_fapl_sec2(fapl);
#if H5_VERSION_GE(1, 10, 7)
    H5Pset_file_locking(fapl, 0, 1);
#endif
    return fapl;
}

static int attr_put_i64(hid_t loc, const char *name, int64_t v) {
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, H5T_STD_I64LE, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, H5T_NATIVE_INT64, &v);
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    return rc < 0 ? -1 : 0;
}

static int attr_put_str(hid_t loc, const char *name, const char *s) {
    hid_t t = H5Tcopy(H5T_C_S1);
    size_t n = strlen(s);
    H5Tset_size(t, n ? n : 1);
    H5Tset_strpad(t, H5T_STR_NULLPAD);
    hid_t sp = H5Screate(H5S_SCALAR);
    hid_t a = H5Acreate2(loc, name, t, sp, H5P_DEFAULT, H5P_DEFAULT);
    herr_t rc = a < 0 ? -1 : H5Awrite(a, t, n ? s : "");
    if (a >= 0) H5Aclose(a);
    H5Sclose(sp);
    H5Tclose(t);
    return rc < 0 ? -1 : 0;
}

static int attr_get_i64(hid_t loc, const char *name, int64_t *v) {
    if (H5Aexists(loc, name) <= 0) return -1;
    hid_t a = H5Aopen(loc, name, H5P_DEFAULT);
    if (a < 0) return -1;
    herr_t rc = H5Aread(a, H5T_NATIVE_INT64, v);
    H5Aclose(a);
    return rc < 0 ? -1 : 0;
}

/* Dataset creation properties: chunked (about 1 MiB per chunk), optionally gzip, and no
 * object timestamps, so equal data gives byte-identical files on every run. */
static hid_t data_dcpl(int64_t rows, int cols, int deflate, int64_t *chunk_rows) {
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    int64_t cr = ((int64_t)1 << 18) / cols;
    if (cr < 1) cr = 1;
    if (cr > rows) cr = rows;
    hsize_t cdims[2] = { (hsize_t)cr, (hsize_t)cols };
    H5Pset_chunk(dcpl, 2, cdims);
    if (deflate > 0 && H5Zfilter_avail(H5Z_FILTER_DEFLATE) > 0) {
        H5Pset_shuffle(dcpl);
        H5Pset_deflate(dcpl, (unsigned)deflate);
    }
    H5Pset_obj_track_times(dcpl, 0);
    if (chunk_rows) *chunk_rows = cr;
    return dcpl;
}

/* fsync a file or directory by path; 0 or -1 (errno). */
static int fsync_path(const char *path, int is_dir) {
    int fd = open(path, is_dir ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return -1;
    int rc = fsync(fd);
    /* Some file systems refuse fsync on a directory; the rename is still in place. */
    if (rc && is_dir && (errno == EINVAL || errno == EBADF)) rc = 0;
    close(fd);
    return rc;
}

/* ---- part files ---- */

typedef struct {
    int64_t chunk, begin, end, n_items, chunk_size, cols;
    int64_t rows;  /* of the dataset */
} part_meta;

/* Open a part and read its attributes and dataset shape. Returns the file id (>= 0) with
 * *dset open, or -1 with a message naming the file. */
static hid_t part_open(const ag_chunks_config *cfg, const char *path, part_meta *m, hid_t *dset) {
    hid_t fapl = serial_fapl();
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, fapl);
    H5Pclose(fapl);
    if (f < 0)
        return ag_err("%s: cannot be opened as an HDF5 part file (damaged?); delete it and rerun to "
                      "recompute that chunk", path);
    int bad = attr_get_i64(f, "chunk", &m->chunk) || attr_get_i64(f, "begin", &m->begin) ||
              attr_get_i64(f, "end", &m->end) || attr_get_i64(f, "n_items", &m->n_items) ||
              attr_get_i64(f, "chunk_size", &m->chunk_size) || attr_get_i64(f, "cols", &m->cols);
    if (bad) {
        H5Fclose(f);
        return ag_err("%s: lacks the attributes of an argent part file (chunk, begin, end, n_items, "
                      "chunk_size, cols)", path);
    }
    hid_t d = H5Dopen2(f, dset_name(cfg), H5P_DEFAULT);
    hsize_t dims[2] = { 0, 0 };
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    int nd = sp < 0 ? -1 : H5Sget_simple_extent_ndims(sp);
    if (nd == 2) H5Sget_simple_extent_dims(sp, dims, NULL);
    if (sp >= 0) H5Sclose(sp);
    if (nd != 2 || (int64_t)dims[1] != m->cols) {
        if (d >= 0) H5Dclose(d);
        H5Fclose(f);
        return ag_err("%s: no 2-D dataset '%s' of %lld columns", path, dset_name(cfg), (long long)m->cols);
    }
    m->rows = (int64_t)dims[0];
    *dset = d;
    return f;
}

/* A part's metadata must match the chunk it is named for under this run's settings. */
static int part_check(const ag_chunks_config *cfg, const char *path, int64_t chunk, const part_meta *m) {
    int64_t b, e;
    ag_chunk_range(cfg, chunk, &b, &e);
    if (m->n_items != cfg->n_items || m->chunk_size != cfg->chunk_size)
        return ag_err("%s was written by a run with n_items %lld, chunk_size %lld; this run has n_items "
                      "%lld, chunk_size %lld: use a new output directory or the same settings",
                      path, (long long)m->n_items, (long long)m->chunk_size,
                      (long long)cfg->n_items, (long long)cfg->chunk_size);
    if (m->chunk != chunk || m->begin != b || m->end != e || m->rows != e - b)
        return ag_err("%s: holds chunk %lld items [%lld, %lld) with %lld rows, expected chunk %lld items "
                      "[%lld, %lld)", path, (long long)m->chunk, (long long)m->begin, (long long)m->end,
                      (long long)m->rows, (long long)chunk, (long long)b, (long long)e);
    return 0;
}

/* Write chunk c's outputs: temporary name, flush, fsync, fault point, rename, fsync dir. */
static int part_write(const ag_chunks_config *cfg, int64_t chunk, int64_t begin, int64_t end,
                      const float *out, int cols) {
    char path[PATH_LEN], tmp[PATH_LEN + 8];
    if (ag_chunk_part_path(path, sizeof path, cfg->dir, chunk)) return ag_err("part path too long");
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    int64_t rows = end - begin;
    hid_t fapl = serial_fapl();
    /* TRUNC: a *.tmp left by a crashed run is simply overwritten. */
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) return ag_err("%s: cannot create (is the directory writable?)", tmp);
    int bad = attr_put_str(f, "schema", PART_SCHEMA) || attr_put_i64(f, "chunk", chunk) ||
              attr_put_i64(f, "begin", begin) || attr_put_i64(f, "end", end) ||
              attr_put_i64(f, "n_items", cfg->n_items) || attr_put_i64(f, "chunk_size", cfg->chunk_size) ||
              attr_put_i64(f, "cols", cols);
    hsize_t dims[2] = { (hsize_t)rows, (hsize_t)cols };
    hid_t sp = H5Screate_simple(2, dims, NULL);
    hid_t dcpl = data_dcpl(rows, cols, cfg->deflate, NULL);
    hid_t d = bad ? -1 : H5Dcreate2(f, dset_name(cfg), H5T_IEEE_F32LE, sp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (d < 0 || H5Dwrite(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0) bad = 1;
    if (d >= 0) H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(sp);
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0) bad = 1;
    if (H5Fclose(f) < 0) bad = 1;
    if (bad) { unlink(tmp); return ag_err("%s: writing the part file failed (disk full?)", tmp); }
    if (fsync_path(tmp, 0)) return ag_err("%s: fsync failed: %s", tmp, strerror(errno));
    if (ag_fault_point("chunk_tmp", chunk)) return -1;
    if (rename(tmp, path)) return ag_err("rename %s -> %s failed: %s", tmp, path, strerror(errno));
    if (fsync_path(cfg->dir, 1)) return ag_err("%s: fsync of the directory failed: %s", cfg->dir, strerror(errno));
    return 0;
}

/* "part-<digits>.h5" -> chunk id; -1 for any other name (including *.h5.tmp). */
static int64_t parse_part_name(const char *name) {
    if (strncmp(name, "part-", 5)) return -1;
    const char *p = name + 5, *q = p;
    while (*q >= '0' && *q <= '9') q++;
    if (q == p || q - p > 18 || strcmp(q, ".h5")) return -1;
    return strtoll(p, NULL, 10);
}

int ag_chunks_donemap(const ag_chunks_config *cfg, uint8_t *done, int64_t *n_done, int *cols) {
    if (check_config(cfg, "ag_chunks_donemap")) return -1;
    int64_t nc = ag_chunks_count(cfg->n_items, cfg->chunk_size);
    memset(done, 0, (size_t)nc);
    *n_done = 0;
    *cols = 0;
    DIR *dp = opendir(cfg->dir);
    if (!dp) return ag_err("%s: cannot list the output directory: %s", cfg->dir, strerror(errno));
    h5_quiet q;
    h5_quiet_on(&q);
    int rc = 0;
    struct dirent *de;
    while (!rc && (de = readdir(dp))) {
        int64_t c = parse_part_name(de->d_name);
        if (c < 0) continue;
        char path[PATH_LEN];
        snprintf(path, sizeof path, "%s/%s", cfg->dir, de->d_name);
        if (c >= nc) {
            rc = ag_err("%s: chunk %lld is beyond the %lld chunks of this run (n_items %lld, chunk_size "
                        "%lld): the directory holds another run's output", path, (long long)c,
                        (long long)nc, (long long)cfg->n_items, (long long)cfg->chunk_size);
            break;
        }
        if (done[c]) {
            rc = ag_err("%s: a second part file for chunk %lld (names with different zero padding?)",
                        path, (long long)c);
            break;
        }
        part_meta m;
        hid_t d = -1, f = part_open(cfg, path, &m, &d);
        if (f < 0) { rc = -1; break; }
        H5Dclose(d);
        H5Fclose(f);
        if ((rc = part_check(cfg, path, c, &m))) break;
        if (*cols && m.cols != *cols) {
            rc = ag_err("%s: %lld columns, other parts have %d", path, (long long)m.cols, *cols);
            break;
        }
        *cols = (int)m.cols;
        done[c] = 1;
        ++*n_done;
    }
    closedir(dp);
    h5_quiet_off(&q);
    return rc;
}

/* ---- the collective run ---- */

static int make_dir(const char *dir) {
    struct stat sb;
    if (!stat(dir, &sb)) return S_ISDIR(sb.st_mode) ? 0 : ag_err("%s exists and is not a directory", dir);
    if (mkdir(dir, 0777) && errno != EEXIST)
        return ag_err("%s: cannot create the output directory: %s", dir, strerror(errno));
    return 0;
}

/* One chunk: fault points, callback, checks, part file. */
static int do_chunk(const ag_chunks_config *cfg, int64_t c, int64_t n_done_here, int *cols_known) {
    if (ag_fault_point("nchunk", n_done_here) || ag_fault_point("chunk", c)) return -1;
    int64_t b, e;
    ag_chunk_range(cfg, c, &b, &e);
    float *out = NULL;
    int cols = 0;
    if (cfg->process(c, b, e, cfg->ctx, &out, &cols)) {
        free(out);
        return ag_err_ctx("chunk %lld (items %lld..%lld)", (long long)c, (long long)b, (long long)e - 1);
    }
    int rc = 0;
    if (!out || cols < 1)
        rc = ag_err("chunk %lld: the process callback returned %s and %d columns", (long long)c,
                    out ? "a buffer" : "no buffer", cols);
    else if (*cols_known && cols != *cols_known)
        rc = ag_err("chunk %lld: the process callback returned %d columns, earlier chunks have %d",
                    (long long)c, cols, *cols_known);
    if (!rc) {
        h5_quiet q;
        h5_quiet_on(&q);
        rc = part_write(cfg, c, b, e, out, cols);
        h5_quiet_off(&q);
        *cols_known = cols;
    }
    free(out);
    return rc;
}

int ag_chunks_run(const ag_chunks_config *cfg, MPI_Comm comm, ag_chunks_stats *st) {
    memset(st, 0, sizeof *st);
    double t0 = MPI_Wtime();
    int rank = 0, size = 1;
    MPI_Comm_rank(comm, &rank);
    MPI_Comm_size(comm, &size);
    /* Every rank checks the same arguments, so all return here together. */
    if (check_config(cfg, "ag_chunks_run")) return -1;
    if (!cfg->process) return ag_err("ag_chunks_run: no process callback");
    int64_t nc = ag_chunks_count(cfg->n_items, cfg->chunk_size);
    st->n_chunks = nc;

    /* Rank 0 reads the directory once and tells the others (not every rank listing and
     * opening every part on a shared file system). */
    uint8_t *done = malloc((size_t)nc);
    int64_t hdr[3] = { 0, 0, 0 };   /* status, n_done, cols */
    if (rank == 0) {
        if (!done) hdr[0] = ag_err("ag_chunks_run: out of memory for %lld chunks", (long long)nc);
        else if (make_dir(cfg->dir)) hdr[0] = -1;
        else {
            int cols = 0;
            hdr[0] = ag_chunks_donemap(cfg, done, &hdr[1], &cols);
            hdr[2] = cols;
        }
    }
    MPI_Bcast(hdr, 3, MPI_INT64_T, 0, comm);
    int have = done != NULL, all_have = 0;
    MPI_Allreduce(&have, &all_have, 1, MPI_INT, MPI_MIN, comm);
    if (hdr[0] || !all_have) {
        free(done);
        if (rank == 0 || !have) return -1;
        return ag_err("ag_chunks_run: rank 0 could not prepare %s (see its message)", cfg->dir);
    }
    for (int64_t off = 0; off < nc; off += 1 << 30) {
        int64_t k = nc - off < (1 << 30) ? nc - off : (1 << 30);
        MPI_Bcast(done + off, (int)k, MPI_UINT8_T, 0, comm);
    }
    st->done_before = hdr[1];
    int cols_known = (int)hdr[2];

    /* The to-do list is the same on every rank; the counter indexes it. */
    int64_t ntodo = 0;
    int64_t *todo = malloc((size_t)(nc - hdr[1] + 1) * sizeof *todo);
    for (int64_t c = 0; todo && c < nc; c++) {
        if (cfg->share_count > 0 && c % cfg->share_count != cfg->share_index) continue;
        if (!done[c]) todo[ntodo++] = c;
    }
    free(done);

    MPI_Win win;
    int64_t *counter = NULL;
    MPI_Win_allocate(rank == 0 ? (MPI_Aint)sizeof(int64_t) : 0, sizeof(int64_t), MPI_INFO_NULL, comm,
                     &counter, &win);
    if (rank == 0) {
        MPI_Win_lock(MPI_LOCK_EXCLUSIVE, 0, 0, win);
        *counter = todo ? 0 : STOP_BIAS;
        MPI_Win_unlock(0, win);
    }
    MPI_Barrier(comm);   /* nobody fetches before the counter is set */
    MPI_Win_lock_all(MPI_MODE_NOCHECK, win);

    int failed = todo == NULL, stopped = 0;
    if (failed) ag_err("ag_chunks_run: out of memory for the to-do list");
    const int64_t one = 1, bias = STOP_BIAS;
    while (!failed) {
        int64_t k = 0;
        if (ag_signal_pending()) {
            /* Poison the counter: every rank's next fetch is past the end. */
            MPI_Fetch_and_op(&bias, &k, MPI_INT64_T, 0, 0, MPI_SUM, win);
            MPI_Win_flush(0, win);
            stopped = 1;
            break;
        }
        MPI_Fetch_and_op(&one, &k, MPI_INT64_T, 0, 0, MPI_SUM, win);
        MPI_Win_flush(0, win);
        if (k >= STOP_BIAS) { stopped = 1; break; }   /* another rank stopped or failed */
        if (k >= ntodo) break;
        if (do_chunk(cfg, todo[k], st->processed, &cols_known)) {
            failed = 1;
            MPI_Fetch_and_op(&bias, &k, MPI_INT64_T, 0, 0, MPI_SUM, win);
            MPI_Win_flush(0, win);
            break;
        }
        int64_t b, e;
        ag_chunk_range(cfg, todo[k], &b, &e);
        st->processed++;
        st->items += e - b;
    }
    MPI_Win_unlock_all(win);
    MPI_Win_free(&win);
    free(todo);

    /* Agree on the outcome (this is also the barrier after which all parts exist). */
    int64_t mine[3] = { failed ? rank + 1 : 0, stopped && !failed, 0 }, any[3];
    MPI_Allreduce(mine, any, 2, MPI_INT64_T, MPI_MAX, comm);
    MPI_Allreduce(&st->processed, &st->processed_all, 1, MPI_INT64_T, MPI_SUM, comm);
    st->seconds = MPI_Wtime() - t0;
    if (any[0]) {
        if (failed) return ag_err_ctx("rank %d", rank);
        return ag_err("ag_chunks_run: stopped because rank %lld failed (see its message)", (long long)any[0] - 1);
    }
    st->stopped = (int)any[1];
    st->complete = st->done_before + st->processed_all == nc;
    st->share_complete = st->processed_all == ntodo;
    return 0;
}

/* ---- merge ---- */

/* The directory part of a path ("." when there is none). */
static void dir_of(const char *path, char *out, size_t n) {
    const char *slash = strrchr(path, '/');
    if (!slash) { snprintf(out, n, "."); return; }
    if (slash == path) { snprintf(out, n, "/"); return; }
    snprintf(out, n, "%.*s", (int)(slash - path), path);
}

static int write_attrs(hid_t f, const ag_chunks_config *cfg, int64_t nc, int cols, const ag_chunk_attr *attrs,
                       int n_attrs) {
    if (attr_put_str(f, "schema", MERGED_SCHEMA) || attr_put_i64(f, "n_items", cfg->n_items) ||
        attr_put_i64(f, "chunk_size", cfg->chunk_size) || attr_put_i64(f, "n_chunks", nc) ||
        attr_put_i64(f, "cols", cols))
        return ag_err("ag_chunks_merge: cannot write the schema attributes");
    for (int i = 0; i < n_attrs; i++) {
        if (!attrs[i].key || !*attrs[i].key || !attrs[i].value)
            return ag_err("ag_chunks_merge: attribute %d has no key or no value", i);
        if (!strcmp(attrs[i].key, "schema") || !strcmp(attrs[i].key, "n_items") ||
            !strcmp(attrs[i].key, "chunk_size") || !strcmp(attrs[i].key, "n_chunks") ||
            !strcmp(attrs[i].key, "cols"))
            return ag_err("ag_chunks_merge: attribute '%s' is reserved", attrs[i].key);
        if (attr_put_str(f, attrs[i].key, attrs[i].value))
            return ag_err("ag_chunks_merge: cannot write attribute '%s' (a duplicate key?)", attrs[i].key);
    }
    return 0;
}

/* Write rows [row0, row0 + rows) of the [N, cols] dataset d (file space fsp) from buf. */
static int write_rows(hid_t d, hid_t fsp, int64_t row0, int64_t rows, int cols, const float *buf, const char *tmp) {
    hsize_t start[2] = { (hsize_t)row0, 0 }, count[2] = { (hsize_t)rows, (hsize_t)cols };
    hid_t msp = H5Screate_simple(2, count, NULL);
    H5Sselect_hyperslab(fsp, H5S_SELECT_SET, start, NULL, count, NULL);
    int rc = H5Dwrite(d, H5T_NATIVE_FLOAT, msp, fsp, H5P_DEFAULT, buf) < 0
                 ? ag_err("%s: writing rows %lld.. failed (disk full?)", tmp, (long long)row0)
                 : 0;
    H5Sclose(msp);
    return rc;
}

static int merge_real(const ag_chunks_config *cfg, const char *out_path, int64_t nc, int cols,
                      const ag_chunk_attr *attrs, int n_attrs) {
    char tmp[PATH_LEN + 8];
    if (snprintf(tmp, sizeof tmp, "%s.tmp", out_path) >= (int)sizeof tmp) return ag_err("%s: path too long", out_path);
    hid_t fapl = serial_fapl();
    hid_t f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
    H5Pclose(fapl);
    if (f < 0) return ag_err("%s: cannot create", tmp);
    int rc = write_attrs(f, cfg, nc, cols, attrs, n_attrs) ? ag_err_ctx("%s", out_path) : 0;
    int64_t N = cfg->n_items, chunk_rows = 0;
    hsize_t dims[2] = { (hsize_t)N, (hsize_t)cols };
    hid_t fsp = H5Screate_simple(2, dims, NULL);
    hid_t dcpl = data_dcpl(N, cols, cfg->deflate, &chunk_rows);
    hid_t d = rc ? -1 : H5Dcreate2(f, dset_name(cfg), H5T_IEEE_F32LE, fsp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
    if (!rc && d < 0) rc = ag_err("%s: cannot create dataset '%s' [%lld, %d]", tmp, dset_name(cfg), (long long)N, cols);
    /* Stage whole HDF5 chunks in memory so each compressed chunk is written exactly once. With
     * cfg->order the parts hold rows in that order: the whole output is assembled in memory
     * (row order[p] from position p) and written block by block at the end. */
    const int64_t *order = cfg->order;
    float *stage = rc ? NULL : malloc((order ? (size_t)N : (size_t)chunk_rows) * (size_t)cols * sizeof *stage);
    float *part = rc ? NULL : malloc((size_t)cfg->chunk_size * (size_t)cols * sizeof *part);
    if (!rc && (!stage || !part)) rc = ag_err("ag_chunks_merge: out of memory for %lld x %d rows",
                                              (long long)(order ? N : chunk_rows), cols);
    int64_t staged = 0, stage_row0 = 0;
    for (int64_t c = 0; c < nc && !rc; c++) {
        char path[PATH_LEN];
        ag_chunk_part_path(path, sizeof path, cfg->dir, c);
        part_meta m;
        hid_t pd = -1, pf = part_open(cfg, path, &m, &pd);
        if (pf < 0) { rc = -1; break; }
        if (!(rc = part_check(cfg, path, c, &m)) && m.cols != cols)
            rc = ag_err("%s: %lld columns, chunk 0 has %d", path, (long long)m.cols, cols);
        if (!rc && H5Dread(pd, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, part) < 0)
            rc = ag_err("%s: reading dataset '%s' failed", path, dset_name(cfg));
        H5Dclose(pd);
        H5Fclose(pf);
        if (order) {
            for (int64_t r = 0; !rc && r < m.rows; r++)
                memcpy(stage + (size_t)order[m.begin + r] * (size_t)cols, part + r * cols, (size_t)cols * sizeof *part);
            continue;
        }
        for (int64_t r = 0; !rc && r < m.rows;) {
            int64_t take = chunk_rows - staged < m.rows - r ? chunk_rows - staged : m.rows - r;
            memcpy(stage + staged * cols, part + r * cols, (size_t)(take * cols) * sizeof *part);
            staged += take;
            r += take;
            if (staged == chunk_rows || stage_row0 + staged == N) {
                rc = write_rows(d, fsp, stage_row0, staged, cols, stage, tmp);
                stage_row0 += staged;
                staged = 0;
            }
        }
    }
    for (int64_t r0 = 0; order && !rc && r0 < N; r0 += chunk_rows)
        rc = write_rows(d, fsp, r0, N - r0 < chunk_rows ? N - r0 : chunk_rows, cols, stage + (size_t)r0 * (size_t)cols, tmp);
    free(stage);
    free(part);
    if (d >= 0) H5Dclose(d);
    H5Pclose(dcpl);
    H5Sclose(fsp);
    if (H5Fflush(f, H5F_SCOPE_GLOBAL) < 0 && !rc) rc = ag_err("%s: flush failed", tmp);
    if (H5Fclose(f) < 0 && !rc) rc = ag_err("%s: close failed", tmp);
    if (!rc && fsync_path(tmp, 0)) rc = ag_err("%s: fsync failed: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, out_path)) rc = ag_err("rename %s -> %s failed: %s", tmp, out_path, strerror(errno));
    if (rc) { unlink(tmp); return -1; }
    char dir[PATH_LEN];
    dir_of(out_path, dir, sizeof dir);
    fsync_path(dir, 1);
    return 0;
}

static int merge_virtual(const ag_chunks_config *cfg, const char *out_path, int64_t nc, int cols,
                         const ag_chunk_attr *attrs, int n_attrs) {
    /* Parts are named relative to the virtual file when it sits in the parts' directory (the
     * pair can then be moved together); otherwise by absolute path. */
    char out_dir[PATH_LEN], real_out[PATH_MAX], real_parts[PATH_MAX], prefix[PATH_MAX + 2];
    dir_of(out_path, out_dir, sizeof out_dir);
    if (!realpath(out_dir, real_out)) return ag_err("%s: %s", out_dir, strerror(errno));
    if (!realpath(cfg->dir, real_parts)) return ag_err("%s: %s", cfg->dir, strerror(errno));
    if (!strcmp(real_out, real_parts)) prefix[0] = 0;
    else snprintf(prefix, sizeof prefix, "%s/", real_parts);

    hsize_t dims[2] = { (hsize_t)cfg->n_items, (hsize_t)cols };
    hid_t vsp = H5Screate_simple(2, dims, NULL);
    hid_t dcpl = H5Pcreate(H5P_DATASET_CREATE);
    H5Pset_obj_track_times(dcpl, 0);
    int rc = 0;
    for (int64_t c = 0; c < nc && !rc; c++) {
        char path[PATH_LEN], src[PATH_MAX + 64];
        ag_chunk_part_path(path, sizeof path, cfg->dir, c);
        part_meta m;
        hid_t pd = -1, pf = part_open(cfg, path, &m, &pd);
        if (pf < 0) { rc = -1; break; }
        H5Dclose(pd);
        H5Fclose(pf);
        if ((rc = part_check(cfg, path, c, &m))) break;
        if (m.cols != cols) { rc = ag_err("%s: %lld columns, chunk 0 has %d", path, (long long)m.cols, cols); break; }
        snprintf(src, sizeof src, "%spart-%06lld.h5", prefix, (long long)c);
        hsize_t sdims[2] = { (hsize_t)m.rows, (hsize_t)cols };
        hid_t ssp = H5Screate_simple(2, sdims, NULL);
        hsize_t start[2] = { (hsize_t)m.begin, 0 };
        H5Sselect_hyperslab(vsp, H5S_SELECT_SET, start, NULL, sdims, NULL);
        if (H5Pset_virtual(dcpl, vsp, src, dset_name(cfg), ssp) < 0)
            rc = ag_err("%s: H5Pset_virtual for chunk %lld failed", out_path, (long long)c);
        H5Sclose(ssp);
    }
    H5Sselect_all(vsp);
    char tmp[PATH_LEN + 8];
    snprintf(tmp, sizeof tmp, "%s.tmp", out_path);
    hid_t f = -1;
    if (!rc) {
        hid_t fapl = serial_fapl();
        f = H5Fcreate(tmp, H5F_ACC_TRUNC, H5P_DEFAULT, fapl);
        H5Pclose(fapl);
        if (f < 0) rc = ag_err("%s: cannot create", tmp);
    }
    if (!rc && write_attrs(f, cfg, nc, cols, attrs, n_attrs)) rc = ag_err_ctx("%s", out_path);
    if (!rc) {
        hid_t d = H5Dcreate2(f, dset_name(cfg), H5T_IEEE_F32LE, vsp, H5P_DEFAULT, dcpl, H5P_DEFAULT);
        if (d < 0) rc = ag_err("%s: cannot create the virtual dataset '%s'", tmp, dset_name(cfg));
        else H5Dclose(d);
    }
    H5Pclose(dcpl);
    H5Sclose(vsp);
    if (f >= 0 && H5Fclose(f) < 0 && !rc) rc = ag_err("%s: close failed", tmp);
    if (!rc && fsync_path(tmp, 0)) rc = ag_err("%s: fsync failed: %s", tmp, strerror(errno));
    if (!rc && rename(tmp, out_path)) rc = ag_err("rename %s -> %s failed: %s", tmp, out_path, strerror(errno));
    if (rc) { if (f >= 0) unlink(tmp); return -1; }
    fsync_path(out_dir, 1);
    return 0;
}

int ag_chunks_merge(const ag_chunks_config *cfg, const char *out_path, int kind, const ag_chunk_attr *attrs,
                    int n_attrs) {
    if (check_config(cfg, "ag_chunks_merge")) return -1;
    if (!out_path || !*out_path || strlen(out_path) > PATH_LEN - 16) return ag_err("ag_chunks_merge: bad output path");
    if (!(kind & (AG_MERGE_REAL | AG_MERGE_VIRTUAL)) || (kind & ~(AG_MERGE_REAL | AG_MERGE_VIRTUAL)))
        return ag_err("ag_chunks_merge: kind must be AG_MERGE_REAL or AG_MERGE_VIRTUAL");
    if (kind == (AG_MERGE_REAL | AG_MERGE_VIRTUAL))
        return ag_err("ag_chunks_merge: one kind per output file (call twice for both)");
    if (kind == AG_MERGE_VIRTUAL && cfg->order)
        return ag_err("ag_chunks_merge: a virtual dataset cannot present parts in a permuted order (merge a real file)");
    int64_t nc = ag_chunks_count(cfg->n_items, cfg->chunk_size);
    h5_quiet q;
    h5_quiet_on(&q);
    /* Every chunk must be there before anything is written; name the first missing one. */
    int cols = 0, rc = 0;
    for (int64_t c = 0; c < nc && !rc; c++) {
        char path[PATH_LEN];
        if (ag_chunk_part_path(path, sizeof path, cfg->dir, c)) { rc = ag_err("part path too long"); break; }
        if (access(path, R_OK)) {
            int64_t b, e;
            ag_chunk_range(cfg, c, &b, &e);
            rc = ag_err("%s is missing: chunk %lld (items %lld..%lld) was never completed; rerun the job "
                        "on this directory to finish it before merging", path, (long long)c, (long long)b,
                        (long long)e - 1);
            break;
        }
        if (c == 0) {
            part_meta m;
            hid_t pd = -1, pf = part_open(cfg, path, &m, &pd);
            if (pf < 0) { rc = -1; break; }
            H5Dclose(pd);
            H5Fclose(pf);
            cols = (int)m.cols;
        }
    }
    if (!rc) {
        rc = kind == AG_MERGE_REAL ? merge_real(cfg, out_path, nc, cols, attrs, n_attrs)
                                   : merge_virtual(cfg, out_path, nc, cols, attrs, n_attrs);
    }
    h5_quiet_off(&q);
    return rc;
}
