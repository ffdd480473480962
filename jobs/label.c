/* `argent label`: silver labels for a pair dataset from a cross-encoder checkpoint, across
 * ranks through the chunked work engine (dist/chunks.h).
 *
 * The pairs are put in one global order, longest first (tokens after truncation, ties by
 * index: it depends on the data and --max-length alone), so that every batch pads little
 * and the dynamic hand-out of chunks gives the longest work first. That order is cut into
 * chunks of --chunk-size (by default about N/32, 64..2048: enough chunks to balance the
 * ranks, independent of the rank count); a chunk is predicted in batches and written as one
 * part file in the work directory, so a killed or preempted run, rerun at any rank count,
 * computes only the missing chunks, and every chunk's numbers depend on the chunk alone.
 * At the end rank 0 merges the parts back into the pairs' order:
 *   OUT.scores.h5   dataset "scores" [P, 2L+1]: L logits, L probabilities (sigmoid for one
 *                   label, softmax for more), then the label written to OUT; attributes
 *                   name the columns and carry the provenance
 *   OUT             the input pair dataset (io/dataset.h) with those labels, source
 *                   "silver", and provenance attributes (label_checkpoint + sha256, the
 *                   input + sha256, settings, time), which train-bi reads like gold.
 * The time is SOURCE_DATE_EPOCH when set (reproducible outputs), else now. Nothing in either
 * file depends on the rank count or on interruptions: they are byte-identical to those of
 * an uninterrupted single-rank run.
 *
 * Job arrays: with --array-task I --array-count N a run labels only the chunks c with
 * c % N == I and does not merge; the tasks may run at once on the same work directory, and a
 * later run without these options finds every chunk done and merges (slurm/submit adds it).
 *
 * A work directory remembers which run it belongs to (label.json: model and input sha256,
 * settings); parts of another run are refused rather than mixed. Every input is checked
 * before anything is written, so a bad input leaves existing outputs as they were. */

#include "dist/chunks.h"

#include <errno.h>
#include <hdf5.h>
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include "dist/comm.h"
#include "dist/signals.h"
#include "io/dataset.h"
#include "io/readers.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "jobs/crossenc.h"
#include "jobs/device.h"
#include "jobs/runsetup.h"
#include "nn/error.h"

#define PATH_CAP 4096

enum { RULE_ARGMAX = 0, RULE_THRESHOLD = 1, RULE_PROB = 2 };
static const char *const rule_names[] = {"argmax", "threshold", "prob", NULL};

static const ag_cli_opt label_opts[] = {
    {"model", "CKPT", "cross-encoder checkpoint, or a train-cross run directory (its model.h5)", NULL, 1},
    {"data", "PAIRS.h5", "pair dataset to label (argent prepare, tokenised with the model's vocab)", NULL, 1},
    {"out", "SILVER.h5", "labelled pair dataset (source silver); scores go to SILVER.scores.h5", NULL, 1},
    {"work", "DIR", "part files, one per chunk (default: SILVER.h5.parts); a rerun resumes there", NULL, 0},
    {"chunk-size", "N", "pairs per chunk: the unit of work, output and resume (default: about N/32, "
                        "within 64..2048)", NULL, 0},
    {"batch", "N", "pairs per forward pass (the pairs are sorted by length, longest first)", "64", 0},
    {"max-length", "N", "tokens per pair, longest_first truncation (default: the model's max_seq_length)", NULL, 0},
    {"label", "RULE", "argmax (class = highest logit), threshold (1 when the positive probability >= "
                      "--threshold) or prob (that probability as a score); default argmax for >= 2 labels, "
                      "prob for 1", NULL, 0},
    {"threshold", "X", "threshold of --label threshold", "0.5", 0},
    {"positive", "K", "the positive class of threshold/prob for a model with >= 2 labels", "1", 0},
    {"array-task", "I", "one task of a job array: label only the chunks c with c % --array-count == I, and do "
                        "not merge (a later run without these options merges)", NULL, 0},
    {"array-count", "N", "the number of tasks of the job array (with --array-task)", NULL, 0},
    {"quiet", NULL, "no summary on stdout", NULL, 0},
    AG_DEVICE_CLI_OPTS,
    {0}};

typedef struct {
    const char *model_arg, *data, *out;
    char work[PATH_CAP], scores[PATH_CAP], model_file[PATH_CAP], data_real[PATH_CAP];
    long chunk_size, batch, max_len, positive, array_task, array_count;
    double threshold;
    int rule, quiet;
} label_cfg;

typedef struct {
    ag_cross *x;
    const ag_dataset *ds;
    const label_cfg *c;
    int L;
    const int64_t *order;   /* position -> pair index, longest pair first */
} label_ctx;

/* ---- per chunk ----------------------------------------------------------------------- */

/* Chunk [begin, end) of the length order: [n, 2L+1] rows of logits, probabilities, label. */
static int label_chunk(int64_t chunk, int64_t begin, int64_t end, void *vctx, float **out, int *out_cols) {
    (void)chunk;
    label_ctx *lc = vctx;
    int L = lc->L, cols = 2 * L + 1;
    int64_t n = end - begin;
    if (n < 1) return ag_err("empty chunk [%lld, %lld)", (long long)begin, (long long)end);
    int64_t *pairs = malloc((size_t)n * sizeof *pairs);
    float *logits = malloc((size_t)n * (size_t)L * sizeof *logits);
    float *res = malloc((size_t)n * (size_t)cols * sizeof *res);
    float *prob = malloc((size_t)L * sizeof *prob);
    if (!pairs || !logits || !res || !prob) {
        free(pairs);
        free(logits);
        free(res);
        free(prob);
        return ag_err("out of memory for a chunk of %lld pairs", (long long)n);
    }
    for (int64_t i = 0; i < n; i++) pairs[i] = lc->order[begin + i];
    int rc = ag_cross_predict(lc->x, lc->ds, pairs, n, (int)lc->c->batch, logits);
    for (int64_t i = 0; !rc && i < n; i++) {
        const float *lg = logits + (size_t)i * L;
        float *row = res + (size_t)i * cols;
        /* CrossEncoder.predict: sigmoid for one label, softmax (apply_softmax) for more. */
        ag_xhead_predict(&lc->x->head, lg, 1, 1, prob);
        memcpy(row, lg, (size_t)L * sizeof *row);
        memcpy(row + L, prob, (size_t)L * sizeof *row);
        float p_pos = L == 1 ? prob[0] : prob[lc->c->positive];
        float lab;
        if (lc->c->rule == RULE_ARGMAX) {
            int best = 0;
            for (int k = 1; k < L; k++)
                if (lg[k] > lg[best]) best = k;
            lab = (float)best;
        } else if (lc->c->rule == RULE_THRESHOLD) {
            lab = p_pos >= (float)lc->c->threshold ? 1.0f : 0.0f;
        } else {
            lab = p_pos;
        }
        if (!isfinite(lg[0])) rc = ag_err("pair %lld: the model's output is not finite", (long long)pairs[i]);
        row[2 * L] = lab;
    }
    free(pairs);
    free(logits);
    free(prob);
    if (rc) {
        free(res);
        return -1;
    }
    *out = res;
    *out_cols = cols;
    return 0;
}

/* ---- helpers ------------------------------------------------------------------------- */

/* Default chunk size: about N/32 chunks' worth, at least 64 pairs (a batch) and at most 2048;
 * it depends on N alone, so a rerun at another rank count finds the same chunks. */
static long default_chunk_size(int64_t n) {
    int64_t k = (n + 31) / 32;
    return k < 64 ? 64 : k > 2048 ? 2048 : (long)k;
}

/* Any rank failed? Every rank calls it at the same place; the lowest failing rank prints
 * its message (all ranks usually fail alike on a bad input: one message, not np). */
static int agree_fail(int failed, MPI_Comm comm, int rank, const char *prog) {
    int who = failed ? rank : INT_MAX, first = INT_MAX;
    MPI_Allreduce(&who, &first, 1, MPI_INT, MPI_MIN, comm);
    if (first == INT_MAX) return 0;
    if (rank == first) fprintf(stderr, "%s: %s\n", prog, ag_errmsg());
    return 1;
}

static void iso_time(char *buf, size_t n) {
    const char *sde = getenv("SOURCE_DATE_EPOCH");
    time_t t = time(NULL);
    if (sde && *sde) {
        char *end;
        long long v = strtoll(sde, &end, 10);
        if (!*end && v >= 0) t = (time_t)v;
    }
    struct tm tm;
    gmtime_r(&t, &tm);
    strftime(buf, n, "%Y-%m-%dT%H:%M:%SZ", &tm);
}

static int same_file(const char *a, const char *b) {
    struct stat sa, sb;
    return !stat(a, &sa) && !stat(b, &sb) && sa.st_dev == sb.st_dev && sa.st_ino == sb.st_ino;
}

/* The directory part of path must exist, so that the outputs can be written there. */
static int check_out_dir(const char *path, const char *opt) {
    char dir[PATH_CAP];
    const char *slash = strrchr(path, '/');
    if (!slash) snprintf(dir, sizeof dir, ".");
    else if (slash == path) snprintf(dir, sizeof dir, "/");
    else snprintf(dir, sizeof dir, "%.*s", (int)(slash - path), path);
    struct stat st;
    if (stat(dir, &st) || !S_ISDIR(st.st_mode))
        return ag_err("%s %s: the directory %s does not exist", opt, path, dir);
    if (!stat(path, &st) && S_ISDIR(st.st_mode)) return ag_err("%s %s: is a directory, expected a file name", opt, path);
    return 0;
}

/* Write text to path atomically (temporary name, fsync, rename). The temporary name is the
 * process's own: the tasks of a job array may write the same file at the same moment. */
static int write_text_atomic(const char *path, const char *text) {
    char tmp[PATH_CAP + 64];
    snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
    FILE *f = fopen(tmp, "wb");
    if (!f) return ag_err("%s: cannot create: %s", tmp, strerror(errno));
    int bad = fputs(text, f) < 0;
    bad |= fflush(f) != 0;
    bad |= fsync(fileno(f)) != 0;
    bad |= fclose(f) != 0;
    if (bad || rename(tmp, path)) {
        unlink(tmp);
        return ag_err("%s: cannot write: %s", path, strerror(errno));
    }
    return 0;
}

/* The work directory: created if missing; if it holds label.json it must be this run's.
 * A directory with part files but no label.json is not ours to mix into. */
static int prepare_work(const char *work, const char *ident) {
    struct stat st;
    char path[PATH_CAP + 32];
    snprintf(path, sizeof path, "%s/label.json", work);
    if (!stat(work, &st)) {
        if (!S_ISDIR(st.st_mode)) return ag_err("--work %s: exists and is not a directory", work);
        FILE *f = fopen(path, "rb");
        if (f) {
            char buf[8192];
            size_t k = fread(buf, 1, sizeof buf - 1, f);
            buf[k] = 0;
            fclose(f);
            if (strcmp(buf, ident))
                return ag_err("--work %s: holds the parts of another labeling run (its label.json differs: other "
                              "model, data or settings); delete the directory or choose another --work", work);
            return 0;
        }
        char part[PATH_CAP + 32];
        snprintf(part, sizeof part, "%s/part-000000.h5", work);
        if (!stat(part, &st))
            return ag_err("--work %s: holds part files without label.json (not argent label's); delete it or choose "
                          "another --work", work);
    } else if (mkdir(work, 0777) && errno != EEXIST) {
        return ag_err("--work %s: cannot create: %s", work, strerror(errno));
    }
    return write_text_atomic(path, ident);
}

/* Read the merged [P, cols] scores back (rank 0, after the merge). */
static int read_scores(const char *path, int64_t P, int cols, float *out) {
    H5E_auto2_t fn;
    void *fd;
    H5Eget_auto2(H5E_DEFAULT, &fn, &fd);
    H5Eset_auto2(H5E_DEFAULT, NULL, NULL);
    int rc = 0;
    hid_t f = H5Fopen(path, H5F_ACC_RDONLY, H5P_DEFAULT);
    hid_t d = f < 0 ? -1 : H5Dopen2(f, "scores", H5P_DEFAULT);
    hid_t sp = d < 0 ? -1 : H5Dget_space(d);
    hsize_t dims[2] = {0, 0};
    if (sp < 0 || H5Sget_simple_extent_ndims(sp) != 2 || H5Sget_simple_extent_dims(sp, dims, NULL) < 0 ||
        (int64_t)dims[0] != P || (int64_t)dims[1] != cols)
        rc = ag_err("%s: dataset 'scores' is not [%lld, %d]", path, (long long)P, cols);
    else if (H5Dread(d, H5T_NATIVE_FLOAT, H5S_ALL, H5S_ALL, H5P_DEFAULT, out) < 0)
        rc = ag_err("%s: cannot read dataset 'scores'", path);
    if (sp >= 0) H5Sclose(sp);
    if (d >= 0) H5Dclose(d);
    if (f >= 0) H5Fclose(f);
    H5Eset_auto2(H5E_DEFAULT, fn, fd);
    return rc;
}

/* Rank 0 after a complete run: merge the parts into OUT.scores.h5, then write OUT. */
static int write_outputs(const label_cfg *c, const ag_chunks_config *cc, ag_cross *x, ag_dataset *ds,
                         const char *model_sha, const char *data_sha, const char *settings, const char *when) {
    int L = ag_cross_labels(x), cols = 2 * L + 1;
    /* Column names and the label rule for readers of the scores file. */
    char colnames[4096];
    size_t o = 0;
    for (int k = 0; k < L; k++) o += (size_t)snprintf(colnames + o, sizeof colnames - o, "logit_%d,", k);
    for (int k = 0; k < L; k++) o += (size_t)snprintf(colnames + o, sizeof colnames - o, "prob_%d,", k);
    snprintf(colnames + o, sizeof colnames - o, "label");
    const ag_chunk_attr attrs[] = {
        {"columns", colnames},          {"label_program", "argent label"}, {"label_checkpoint", c->model_file},
        {"label_checkpoint_sha256", model_sha}, {"label_input", c->data_real}, {"label_input_sha256", data_sha},
        {"label_settings", settings},   {"label_time", when}};
    if (ag_chunks_merge(cc, c->scores, AG_MERGE_REAL, attrs, (int)(sizeof attrs / sizeof *attrs))) return -1;

    float *sc = malloc((size_t)ds->n_pairs * (size_t)cols * sizeof *sc);
    if (!sc) return ag_err("out of memory for %lld x %d scores", (long long)ds->n_pairs, cols);
    if (read_scores(c->scores, ds->n_pairs, cols, sc)) {
        free(sc);
        return -1;
    }
    for (int64_t i = 0; i < ds->n_pairs; i++) ds->label[i] = sc[(size_t)i * cols + 2 * L];
    free(sc);
    ds->source = AG_SOURCE_SILVER;
    free(ds->label_map);
    ds->label_map = NULL;
    if (c->rule == RULE_PROB) {
        ds->label_kind = AG_LABEL_SCORE;
        ds->num_classes = 0;
    } else {
        ds->label_kind = AG_LABEL_CLASS;
        char map[AG_MAX_LABELS * (AG_LABEL_MAX + 8) + 64];
        o = 0;
        if (c->rule == RULE_ARGMAX) {
            ds->num_classes = L;
            for (int k = 0; k < L; k++)
                o += (size_t)snprintf(map + o, sizeof map - o, "%s%s=%d", k ? "," : "", x->md.id2label[k], k);
        } else {
            ds->num_classes = 2;
            const char *pos = x->md.id2label[L == 1 ? 0 : c->positive];
            snprintf(map, sizeof map, "not_%s=0,%s=1", pos, pos);
        }
        ds->label_map = strdup(map);
        if (!ds->label_map) return ag_err("out of memory");
    }
    char scores_name[PATH_CAP];
    const char *slash = strrchr(c->scores, '/');
    snprintf(scores_name, sizeof scores_name, "%s", slash ? slash + 1 : c->scores);
    if (ag_dataset_attr_str(ds, "label_program", "argent label") ||
        ag_dataset_attr_str(ds, "label_checkpoint", c->model_file) ||
        ag_dataset_attr_str(ds, "label_checkpoint_sha256", model_sha) ||
        ag_dataset_attr_str(ds, "label_input", c->data_real) || ag_dataset_attr_str(ds, "label_input_sha256", data_sha) ||
        ag_dataset_attr_str(ds, "label_settings", settings) || ag_dataset_attr_str(ds, "label_time", when) ||
        ag_dataset_attr_str(ds, "label_scores", scores_name))
        return -1;
    return ag_dataset_write(ds, c->out);
}

/* ---- options ------------------------------------------------------------------------- */

static int parse_opts(ag_cli *cli, label_cfg *c) {
    memset(c, 0, sizeof *c);
    c->model_arg = ag_cli_str(cli, "model");
    c->data = ag_cli_str(cli, "data");
    c->out = ag_cli_str(cli, "out");
    c->max_len = 0;
    c->rule = -1;
    if (ag_cli_long(cli, "chunk-size", &c->chunk_size) || ag_cli_long(cli, "batch", &c->batch) ||
        ag_cli_long(cli, "max-length", &c->max_len) || ag_cli_long(cli, "positive", &c->positive) ||
        ag_cli_double(cli, "threshold", &c->threshold))
        return -1;
    if (ag_cli_given(cli, "label") && ag_cli_choice(cli, "label", rule_names, &c->rule)) return -1;
    if (ag_cli_long(cli, "array-task", &c->array_task) || ag_cli_long(cli, "array-count", &c->array_count)) return -1;
    if (ag_cli_given(cli, "array-task") != ag_cli_given(cli, "array-count"))
        return ag_err("--array-task and --array-count go together (this task's index and the number of tasks)");
    if (ag_cli_given(cli, "array-count") && (c->array_count < 1 || c->array_task < 0 || c->array_task >= c->array_count))
        return ag_err("--array-task %ld --array-count %ld: expected 0 <= task < count", c->array_task, c->array_count);
    if (ag_cli_given(cli, "chunk-size") && c->chunk_size < 1)
        return ag_err("--chunk-size: expected a positive number of pairs, got %ld", c->chunk_size);
    if (c->batch < 1 || c->batch > 1 << 20) return ag_err("--batch: expected 1..%d pairs, got %ld", 1 << 20, c->batch);
    if (ag_cli_given(cli, "max-length") && c->max_len < 3)
        return ag_err("--max-length: a pair needs at least 3 tokens, got %ld", c->max_len);
    if (!(c->threshold >= 0 && c->threshold <= 1)) return ag_err("--threshold: expected a probability in [0, 1]");
    if (c->positive < 0) return ag_err("--positive: expected a class id >= 0, got %ld", c->positive);
    c->quiet = ag_cli_flag(cli, "quiet");
    const char *w = ag_cli_str(cli, "work");
    if ((size_t)snprintf(c->work, sizeof c->work, "%s", w ? w : c->out) >= sizeof c->work - 16)
        return ag_err("--work / --out: path too long");
    if (!w) strcat(c->work, ".parts");
    size_t n = strlen(c->out);
    if (n > 3 && !strcmp(c->out + n - 3, ".h5")) snprintf(c->scores, sizeof c->scores, "%.*s.scores.h5", (int)(n - 3), c->out);
    else snprintf(c->scores, sizeof c->scores, "%s.scores.h5", c->out);
    return 0;
}

/* ---- the command ----------------------------------------------------------------------- */

int ag_cmd_label(int argc, char **argv) {
    const char *prog = "argent label";
    ag_cli cli;
    int early = ag_run_parse(&cli, prog,
                            "Silver-label a pair dataset with a cross-encoder, in resumable chunks over the MPI ranks.\n"
                            "Writes SILVER.h5 (the pairs with their new labels, source silver) and SILVER.scores.h5\n"
                            "(logits, probabilities and labels). Run again on the same --out to resume.",
                            label_opts, argc, argv);
    if (early >= 0) return early;
    label_cfg c;
    int rc = parse_opts(&cli, &c);
    if (!rc && cli.npos) rc = ag_err("unexpected argument '%s' (all inputs are options; see --help)", cli.pos[0]);
    early = ag_run_begin(&cli, prog, rc, &argc, &argv);
    if (early >= 0) return early;
    const ag_comm *cm = ag_comm_get();
    MPI_Comm comm = cm->world;
    int rank = cm->rank;
    int exit_code = AG_EXIT_FAIL;

    /* Inputs, on every rank (each needs the model and the pairs). Nothing is written yet. */
    ag_cross x;
    ag_dataset ds;
    ag_device dv;
    memset(&x, 0, sizeof x);
    ag_dataset_init(&ds);
    int have_model = 0, failed = 0;
    if (ag_device_open(&dv, ag_cli_str(&cli, "device"), ag_cli_str(&cli, "precision"), cm->local_rank)) failed = 1;
    else if (check_out_dir(c.out, "--out")) failed = 1;
    else if (ag_cross_load(&x, c.model_arg, c.model_file, sizeof c.model_file)) failed = 1;
    else have_model = 1;
    if (!failed && ag_dataset_read(c.data, &ds)) failed = 1;
    if (!failed && ag_cross_check_data(&x, &ds, c.data)) failed = 1;
    if (!failed && (same_file(c.out, c.data) || same_file(c.out, c.model_file) || same_file(c.scores, c.data) ||
                    same_file(c.scores, c.model_file)))
        failed = ag_err("--out %s: would overwrite an input (the model or the data)", c.out) != 0;
    int L = have_model ? ag_cross_labels(&x) : 0;
    if (!failed) {
        if (c.rule < 0) c.rule = L >= 2 ? RULE_ARGMAX : RULE_PROB;
        if (c.rule == RULE_ARGMAX && L < 2)
            failed = ag_err("--label argmax: the model has one label (a sigmoid score); use --label prob or "
                            "--label threshold") != 0;
        else if (L >= 2 && c.positive >= L)
            failed = ag_err("--positive %ld: the model has %d labels (0..%d)", c.positive, L, L - 1) != 0;
        else if (c.max_len && ag_cross_set_max_len(&x, (int)c.max_len))
            failed = ag_err_ctx("--max-length") != 0;
    }
    if (!failed) failed = ag_run_cross_on_device(&x, &dv) != 0;
    int64_t *order = NULL;
    if (!failed) {
        if (c.chunk_size < 1) c.chunk_size = default_chunk_size(ds.n_pairs);
        /* The processing order: every pair, longest first (ties by index). */
        order = malloc((size_t)ds.n_pairs * sizeof *order);
        if (!order) failed = ag_err("out of memory for the order of %lld pairs", (long long)ds.n_pairs) != 0;
        else failed = ag_cross_longest_first(&x, &ds, NULL, ds.n_pairs, order) != 0;
    }
    if (agree_fail(failed, comm, rank, prog)) goto done;
    ag_device_say(&dv, "label");

    /* Identity of this run: model and input bytes, settings. Rank 0 hashes, all agree. */
    char model_sha[65] = "", data_sha[65] = "", settings[512], ident[2048], when[64];
    /* Provenance names the files by absolute path (the run may have used relative ones). */
    char real[PATH_MAX];
    if (realpath(c.model_file, real)) snprintf(c.model_file, sizeof c.model_file, "%s", real);
    if (realpath(c.data, real)) snprintf(c.data_real, sizeof c.data_real, "%s", real);
    else snprintf(c.data_real, sizeof c.data_real, "%s", c.data);
    failed = 0;
    if (rank == 0) failed = ag_file_sha256(c.model_file, model_sha) || ag_file_sha256(c.data, data_sha);
    if (agree_fail(failed, comm, rank, prog)) goto done;
    MPI_Bcast(model_sha, 65, MPI_CHAR, 0, comm);
    MPI_Bcast(data_sha, 65, MPI_CHAR, 0, comm);
    snprintf(settings, sizeof settings,
             "num_labels=%d max_length=%d batch=%ld chunk_size=%ld order=longest_first label=%s threshold=%g positive=%ld",
             L, x.max_len, c.batch, c.chunk_size, rule_names[c.rule], c.threshold, L >= 2 ? c.positive : 0L);
    snprintf(ident, sizeof ident,
             "{\"model_sha256\": \"%s\", \"data_sha256\": \"%s\", \"n_pairs\": %lld, \"settings\": \"%s\"}\n",
             model_sha, data_sha, (long long)ds.n_pairs, settings);
    iso_time(when, sizeof when);
    MPI_Bcast(when, sizeof when, MPI_CHAR, 0, comm);
    failed = rank == 0 ? prepare_work(c.work, ident) != 0 : 0;
    if (agree_fail(failed, comm, rank, prog)) goto done;

    label_ctx lc = {&x, &ds, &c, L, order};
    ag_chunks_config cc;
    ag_chunks_config_default(&cc);
    cc.dir = c.work;
    cc.dataset = "scores";
    cc.n_items = ds.n_pairs;
    cc.chunk_size = c.chunk_size;
    cc.process = label_chunk;
    cc.ctx = &lc;
    cc.order = order;
    cc.share_count = c.array_count;
    cc.share_index = c.array_task;
    ag_chunks_stats st;
    /* CPU time of the labeling too: on a shared machine it says what the work cost when the
     * wall time says mostly how busy the machine was. */
    struct timespec c0, c1;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c0);
    int run_rc = ag_chunks_run(&cc, comm, &st);
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &c1);
    double cpu = (double)(c1.tv_sec - c0.tv_sec) + 1e-9 * (double)(c1.tv_nsec - c0.tv_nsec);
    if (run_rc) {
        fprintf(stderr, "%s: rank %d: %s\n", prog, rank, ag_errmsg());
        goto done;
    }
    double secs = st.seconds;
    MPI_Allreduce(MPI_IN_PLACE, &secs, 1, MPI_DOUBLE, MPI_MAX, comm);
    int64_t items_all = st.items;
    MPI_Allreduce(MPI_IN_PLACE, &items_all, 1, MPI_INT64_T, MPI_SUM, comm);
    MPI_Allreduce(MPI_IN_PLACE, &cpu, 1, MPI_DOUBLE, MPI_SUM, comm);
    if (st.stopped) {
        if (rank == 0)
            fprintf(stderr, "%s: stopped by a signal after %lld of %lld chunks; run the same command again to "
                    "finish (exit %d)\n", prog, (long long)(st.done_before + st.processed_all),
                    (long long)st.n_chunks, AG_EXIT_REQUEUE);
        exit_code = AG_EXIT_REQUEUE;
        goto done;
    }
    if (c.array_count > 0) {
        /* A job array's task: its share is done; the merge is a later plain run's. */
        if (!st.share_complete) {
            if (rank == 0) fprintf(stderr, "%s: array task %ld: its chunks are not all done; run it again\n", prog,
                                   c.array_task);
            goto done;
        }
        if (rank == 0 && !c.quiet) {
            printf("array task %ld of %ld: %lld chunk%s computed now (%lld of %lld chunks done in all); run label "
                   "without --array-task to merge\n", c.array_task, c.array_count, (long long)st.processed_all,
                   st.processed_all == 1 ? "" : "s", (long long)(st.done_before + st.processed_all),
                   (long long)st.n_chunks);
            fflush(stdout);
        }
        exit_code = AG_EXIT_OK;
        goto done;
    }
    if (!st.complete) {
        if (rank == 0) fprintf(stderr, "%s: %lld of %lld chunks done; run again to finish\n", prog,
                               (long long)(st.done_before + st.processed_all), (long long)st.n_chunks);
        goto done;
    }
    failed = rank == 0 ? write_outputs(&c, &cc, &x, &ds, model_sha, data_sha, settings, when) != 0 : 0;
    if (agree_fail(failed, comm, rank, prog)) goto done;
    if (rank == 0 && !c.quiet) {
        printf("labelled %lld pairs with %s (%d label%s, rule %s) -> %s, scores %s\n", (long long)ds.n_pairs,
               c.model_file, L, L == 1 ? "" : "s", rule_names[c.rule], c.out, c.scores);
        printf("chunks: %lld in all, %lld done before, %lld computed now by %d rank%s x %d thread%s: "
               "%lld pairs in %.3f s = %.1f pairs/s (cpu %.3f s = %.1f pairs per cpu-second)\n",
               (long long)st.n_chunks, (long long)st.done_before, (long long)st.processed_all, cm->size,
               cm->size == 1 ? "" : "s", cm->threads, cm->threads == 1 ? "" : "s", (long long)items_all, secs,
               secs > 0 ? (double)items_all / secs : 0.0, cpu, cpu > 0 ? (double)items_all / cpu : 0.0);
        fflush(stdout);
    }
    exit_code = AG_EXIT_OK;
done:
    free(order);
    if (have_model) ag_cross_free(&x);
    ag_device_close(&dv);
    ag_dataset_free(&ds);
    ag_cli_free(&cli);
    ag_comm_finalize();
    return exit_code;
}
