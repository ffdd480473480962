/* The data-parallel training loop shared by the training stages; see engine.h for what it
 * guarantees and the task contract. */
#include "jobs/engine.h"

#include <errno.h>
#include <dirent.h>
#include <fcntl.h>
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "dist/comm.h"
#include "dist/signals.h"
#include "io/checkpoint.h"
#include "jobs/device.h"
#include "jobs/metrics.h"
#include "nn/error.h"
#include "nn/rng.h"

#define PATH_CAP 4200

struct ag_engine {
    ag_engine_config cfg;
    char out_dir[PATH_CAP], ckpt_dir[PATH_CAP];
    char fingerprint[1024];
    ag_engine_task task;
    ag_params *p;
    int n_model;
    const ag_model_desc *md;
    MPI_Comm comm;
    int rank, nranks;
    ag_ar *ar;
    ag_adamw opt;
    ag_schedule sched;
    int64_t total;           /* steps of the whole run */
    int64_t step, epoch, pos;/* data position: steps done, epoch, next position in it */
    int64_t *perm;           /* [N] permutation of perm_epoch */
    int64_t perm_epoch;
    int64_t *sample, *key;   /* [G] the current global batch */
    ag_metrics *mx;
    double last_loss, last_lr, last_norm;
    int64_t last_global;     /* samples in the last step's global batch */
    double t_compute, t_exposed;
    int has_best;
    double best;
    int64_t best_step, last_eval_step, last_ckpt_step;
    ag_device *dev;          /* GPU training (NULL: CPU) */
    int resident;            /* dev with the optimiser on the device (ag_device_resident) */
    int nccl;                /* resident: the device gradient is reduced with NCCL */
    int stale_data, stale_moments; /* resident: p->data / opt.m, opt.v behind the device's */
    int grad_zero;           /* p->grad is all zeros (AdamW zeroed it as it read it) */
    int part_t;              /* ag_engine_request_part's tensor (-1: none) */
    float *part;             /* its share's buffer when the allreduce keeps one (else NULL) */
};

void ag_eval_add(ag_eval_result *r, const char *name, double value) {
    if (r->n >= AG_EVAL_MAX_METRICS) return;
    snprintf(r->m[r->n].name, sizeof r->m[r->n].name, "%s", name);
    r->m[r->n].value = value;
    r->n++;
}

void ag_engine_config_default(ag_engine_config *cfg) {
    memset(cfg, 0, sizeof *cfg);
    cfg->global_batch = 32;
    cfg->epochs = 1;
    cfg->seed = 42;
    cfg->lr = 2e-5;
    cfg->weight_decay = 0.01;
    cfg->max_grad_norm = 1.0;
    cfg->schedule = AG_SCHED_LINEAR;
    ag_ar_config_default(&cfg->ar);
    cfg->check_every = 50;
    cfg->ckpt_every = 500;
    cfg->keep_ckpts = 2;
    cfg->log_every = 10;
    cfg->resume = 1;
    cfg->stage = "train";
    cfg->tty = -1;
}

/* ---- agreement on errors -------------------------------------------------------------- */

/* Collective: 0 when rc == 0 on every rank; otherwise -1 on every rank, and the ranks that
 * did not fail get the message of the lowest failing rank (they would otherwise only know
 * that "something" failed). */
static int agree(const ag_engine *e, int rc) {
    int bad = rc != 0, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, e->comm);
    if (!any) return 0;
    int me = bad ? e->rank : e->nranks, who = 0;
    MPI_Allreduce(&me, &who, 1, MPI_INT, MPI_MIN, e->comm);
    char msg[2048] = {0};
    if (e->rank == who) snprintf(msg, sizeof msg, "%s", ag_errmsg());
    MPI_Bcast(msg, sizeof msg, MPI_CHAR, who, e->comm);
    if (e->rank != who) ag_err("rank %d: %s", who, msg);
    return -1;
}

/* ---- files ---------------------------------------------------------------------------- */

static int mkdir_one(const char *path) {
    if (mkdir(path, 0777) && errno != EEXIST) return ag_err("%s: cannot create directory: %s", path, strerror(errno));
    struct stat st;
    if (stat(path, &st) || !S_ISDIR(st.st_mode)) return ag_err("%s: exists and is not a directory", path);
    return 0;
}

static int mkdir_p(const char *dir) {
    char buf[PATH_CAP];
    snprintf(buf, sizeof buf, "%s", dir);
    for (char *s = buf + 1; *s; s++)
        if (*s == '/') {
            *s = 0;
            if (mkdir(buf, 0777) && errno != EEXIST) return ag_err("%s: cannot create directory: %s", buf, strerror(errno));
            *s = '/';
        }
    return mkdir_one(buf);
}

/* Replace path with the given bytes atomically (temporary name, fsync, rename). */
static int write_atomic(const char *path, const void *data, size_t n) {
    char tmp[PATH_CAP + 32];
    snprintf(tmp, sizeof tmp, "%s.tmp.%d", path, (int)getpid());
    int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0666);
    if (fd < 0) return ag_err("%s: cannot create: %s", tmp, strerror(errno));
    const char *p = data;
    size_t done = 0;
    while (done < n) {
        ssize_t w = write(fd, p + done, n - done);
        if (w < 0) {
            if (errno == EINTR) continue;
            int er = errno;
            close(fd);
            unlink(tmp);
            return ag_err("%s: write failed: %s", tmp, strerror(er));
        }
        done += (size_t)w;
    }
    if (fsync(fd) || close(fd)) {
        unlink(tmp);
        return ag_err("%s: fsync/close failed: %s", tmp, strerror(errno));
    }
    if (rename(tmp, path)) {
        int er = errno;
        unlink(tmp);
        return ag_err("%s: cannot rename into place: %s", path, strerror(er));
    }
    return 0;
}

static int copy_atomic(const char *src, const char *dst) {
    FILE *f = fopen(src, "rb");
    if (!f) return ag_err("%s: cannot open: %s", src, strerror(errno));
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    char *buf = n > 0 ? malloc((size_t)n) : NULL;
    if (n <= 0 || !buf || fread(buf, 1, (size_t)n, f) != (size_t)n) {
        free(buf);
        fclose(f);
        return ag_err("%s: cannot read", src);
    }
    fclose(f);
    int rc = write_atomic(dst, buf, (size_t)n);
    free(buf);
    return rc;
}

static int file_exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

/* ---- run.json: the settings a resumed run must share with the run it continues ---------- */

static json_t *run_settings(const ag_engine *e) {
    const ag_engine_config *c = &e->cfg;
    return json_pack("{s:s, s:I, s:I, s:I, s:I, s:f, s:f, s:f, s:i, s:I, s:b, s:s}", "stage", c->stage,
                     "samples", (json_int_t)c->n_samples, "batch", (json_int_t)c->global_batch, "steps",
                     (json_int_t)e->total, "seed", (json_int_t)c->seed, "lr", c->lr, "weight-decay",
                     c->weight_decay, "max-grad-norm", c->max_grad_norm, "schedule", (int)c->schedule, "warmup",
                     (json_int_t)c->warmup_steps, "no-shuffle", c->no_shuffle, "settings", e->fingerprint);
}

/* Rank 0: compare run.json with this command's settings (resume), or write it (fresh). */
static int run_json(const ag_engine *e, int resuming) {
    char path[PATH_CAP + 16];
    snprintf(path, sizeof path, "%s/run.json", e->out_dir);
    json_t *now = run_settings(e);
    if (!now) return ag_err("%s: out of memory", path);
    int rc = 0;
    if (resuming && file_exists(path)) {
        json_error_t jerr;
        json_t *old = json_load_file(path, 0, &jerr);
        if (!old) {
            rc = ag_err("%s line %d: %s (delete the run directory or choose another --out)", path, jerr.line, jerr.text);
        } else {
            const char *key;
            json_t *v;
            char diffs[1024] = "";
            size_t len = 0;
            json_object_foreach(now, key, v) {
                json_t *w = json_object_get(old, key);
                if (w && json_equal(v, w)) continue;
                char *a = json_dumps(v, JSON_ENCODE_ANY), *b = w ? json_dumps(w, JSON_ENCODE_ANY) : NULL;
                len += (size_t)snprintf(diffs + len, len < sizeof diffs ? sizeof diffs - len : 0,
                                        "%s--%s: the run has %s, this command %s", len ? "; " : "", key,
                                        b ? b : "(none)", a ? a : "?");
                free(a);
                free(b);
            }
            if (diffs[0])
                rc = ag_err("%s: cannot resume this run with other settings: %s. Rerun with the run's settings "
                            "or choose another --out", path, diffs);
            json_decref(old);
        }
    } else {
        char *text = json_dumps(now, JSON_INDENT(2) | JSON_PRESERVE_ORDER);
        if (!text) rc = ag_err("%s: out of memory", path);
        else {
            size_t n = strlen(text);
            text[n] = 0;
            char *t2 = realloc(text, n + 2);
            if (t2) { text = t2; text[n] = '\n'; text[n + 1] = 0; n++; }
            rc = write_atomic(path, text, n);
            free(text);
        }
    }
    json_decref(now);
    return rc;
}

/* best.json: the best evaluation so far (rank 0). */
static void best_read(ag_engine *e) {
    char path[PATH_CAP + 16], h5[PATH_CAP + 16];
    snprintf(path, sizeof path, "%s/best.json", e->out_dir);
    snprintf(h5, sizeof h5, "%s/best.h5", e->out_dir);
    if (!file_exists(h5)) return;
    json_error_t jerr;
    json_t *j = json_load_file(path, 0, &jerr);
    if (!j) return;
    json_t *s = json_object_get(j, "score"), *st = json_object_get(j, "step");
    if (json_is_number(s) && json_is_integer(st)) {
        e->has_best = 1;
        e->best = json_number_value(s);
        e->best_step = json_integer_value(st);
    }
    json_decref(j);
}

static int best_write(const ag_engine *e, const char *metric) {
    char path[PATH_CAP + 16];
    snprintf(path, sizeof path, "%s/best.json", e->out_dir);
    char text[512];
    int n = snprintf(text, sizeof text, "{\"step\": %lld, \"metric\": \"%s\", \"score\": %.17g}\n",
                     (long long)e->best_step, metric, e->best);
    return write_atomic(path, text, (size_t)n);
}

/* ---- checkpoints ---------------------------------------------------------------------- */

static int64_t g_ckpt_step = -1;
/* ARGENT_FAULT point "ckpt": the checkpoint file of step V is complete under its temporary
 * name, not yet renamed (kill:rank=0:ckpt=10 tests a crash in the middle of a write). */
static void ckpt_fault(const char *tmp_path) {
    (void)tmp_path;
    ag_fault_point("ckpt", g_ckpt_step);
}

static const char *sched_name(ag_sched_kind k) {
    return k == AG_SCHED_LINEAR ? "linear" : k == AG_SCHED_CONSTANT ? "constant" : "warmupconstant";
}

static void fill_state(const ag_engine *e, ag_train_state *ts) {
    ag_train_state_init(ts);
    ts->step = e->step;
    ts->world_size = e->nranks;
    ts->rng_seed = e->cfg.seed;
    ts->epoch = e->epoch;
    ts->sample_index = e->pos;
    snprintf(ts->schedule, sizeof ts->schedule, "%s", sched_name(e->cfg.schedule));
    ts->peak_lr = e->cfg.lr;
    ts->last_lr = e->last_lr;
    ts->warmup_steps = e->cfg.warmup_steps;
    ts->total_steps = e->total;
    ts->beta1 = e->opt.beta1;
    ts->beta2 = e->opt.beta2;
    ts->eps = e->opt.eps;
    ts->weight_decay = e->opt.weight_decay;
    if (e->dev && e->dev->scaler.enabled) {
        ts->loss_scale = e->dev->scaler.scale;
        ts->loss_scale_tracker = e->dev->scaler.growth_tracker;
    }
}

/* Device-resident training: bring the device's parameters (and, moments = 1, the AdamW
 * moments) down to the host table when something on the host needs the whole model
 * (evaluation, checksums, checkpoints, the final model). Not collective; callers agree. */
static int host_sync(ag_engine *e, int moments) {
    if (!e->resident || !(e->stale_data || (moments && e->stale_moments))) return 0;
    if (ag_device_optim_download(e->dev, e->p, moments ? &e->opt : NULL)) return -1;
    e->stale_data = 0;
    if (moments) e->stale_moments = 0;
    return 0;
}

/* Collective: rank 0 writes checkpoints/ckpt-<step>.h5 (everything to resume). */
static int save_checkpoint(ag_engine *e) {
    if (agree(e, host_sync(e, 1))) return -1;
    int rc = 0;
    if (e->rank == 0) {
        ag_train_state ts;
        fill_state(e, &ts);
        g_ckpt_step = e->step;
        ag_ckpt_fault_hook = ckpt_fault;
        rc = ag_ckpt_save_dir(e->ckpt_dir, e->cfg.keep_ckpts, e->md, &ts, e->p, e->opt.m, e->opt.v);
        ag_ckpt_fault_hook = NULL;
        if (rc) ag_err_ctx("checkpoint at step %lld", (long long)e->step);
    }
    if (agree(e, rc)) return -1;
    e->last_ckpt_step = e->step;
    return 0;
}

/* Rank 0: the model's tensors only (what export and eval load) to path. */
static int save_model(ag_engine *e, const char *path) {
    ag_params view = *e->p;
    view.n = e->n_model;
    ag_train_state ts;
    fill_state(e, &ts);
    g_ckpt_step = e->step;
    ag_ckpt_fault_hook = ckpt_fault;
    int rc = ag_ckpt_write(path, e->md, &ts, &view, NULL, NULL);
    ag_ckpt_fault_hook = NULL;
    return rc;
}

/* Whether dir holds a file named like a complete checkpoint (ckpt-<digits>.h5). Asked before
 * ag_ckpt_latest so that a missing or empty directory (a run killed during its first
 * checkpoint leaves only a .tmp) is a fresh start without going through the listing. */
static int any_checkpoint(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return 0;
    int found = 0;
    struct dirent *de;
    while (!found && (de = readdir(d))) {
        const char *nm = de->d_name;
        size_t n = strlen(nm);
        if (n > 8 && !strncmp(nm, "ckpt-", 5) && !strcmp(nm + n - 3, ".h5")) {
            found = 1;
            for (size_t i = 5; i < n - 3; i++) found &= nm[i] >= '0' && nm[i] <= '9';
        }
    }
    closedir(d);
    return found;
}

/* Collective: resume from the newest checkpoint, or start fresh from rank 0's parameters.
 * *resumed = 1 when a checkpoint was loaded. */
static int load_or_broadcast(ag_engine *e, int *resumed) {
    char path[PATH_CAP] = "";
    int found = 0, rc = 0;
    if (e->rank == 0 && e->cfg.resume && any_checkpoint(e->ckpt_dir)) {
        found = ag_ckpt_latest(e->ckpt_dir, path, sizeof path);
        if (found < 0) rc = -1;
    }
    if (agree(e, rc)) return -1;
    MPI_Bcast(&found, 1, MPI_INT, 0, e->comm);
    *resumed = found == 1;
    if (!*resumed) {
        if (e->rank == 0) rc = run_json(e, 0);
        if (agree(e, rc)) return -1;
        return ag_bcast_params(e->p, e->comm);
    }
    /* Rank 0 reads; everyone gets the same bytes. */
    ag_train_state ts;
    ag_train_state_init(&ts);
    if (e->rank == 0) {
        ag_model_desc md;
        ag_model_desc_init(&md);
        int has_optim = 0;
        rc = ag_ckpt_read_info(path, &md, &ts, &has_optim);
        ag_model_desc_free(&md);
        if (!rc && !has_optim)
            rc = ag_err("%s: has no optimizer state, so it cannot be resumed (delete it or choose another --out)", path);
        if (!rc) rc = ag_ckpt_load(path, e->md, e->p, e->opt.m, e->opt.v);
        if (!rc && ts.rng_seed != e->cfg.seed)
            rc = ag_err("%s: the run was started with --seed %llu, this command has --seed %llu", path,
                        (unsigned long long)ts.rng_seed, (unsigned long long)e->cfg.seed);
        if (!rc && ts.total_steps != e->total)
            rc = ag_err("%s: the run has %lld steps in all, this command %lld (same --steps/--epochs/--batch "
                        "and data needed to resume)", path, (long long)ts.total_steps, (long long)e->total);
        if (!rc) rc = run_json(e, 1);
        if (!rc) best_read(e);
        if (rc) ag_err_ctx("resuming from %s", path);
    }
    if (agree(e, rc)) return -1;
    int64_t st[5] = {ts.step, ts.epoch, ts.sample_index, e->has_best ? e->best_step : -1, ts.loss_scale_tracker};
    MPI_Bcast(st, 5, MPI_INT64_T, 0, e->comm);
    double dd[2] = {e->best, ts.loss_scale};
    MPI_Bcast(dd, 2, MPI_DOUBLE, 0, e->comm);
    e->best = dd[0];
    e->step = st[0];
    e->epoch = st[1];
    e->pos = st[2];
    e->has_best = st[3] >= 0;
    e->best_step = st[3];
    e->opt.step = e->step;
    e->last_ckpt_step = e->step;
    if (ag_bcast_floats(e->p->data, e->p->total, 0, e->comm) ||
        ag_bcast_floats(e->opt.m, e->p->total, 0, e->comm) || ag_bcast_floats(e->opt.v, e->p->total, 0, e->comm))
        return -1;
    if (e->rank == 0)
        ag_metrics_note(e->mx, "resumed from %s (step %lld of %lld, written by %d rank%s, now %d)", path,
                        (long long)e->step, (long long)e->total, ts.world_size, ts.world_size == 1 ? "" : "s",
                        e->nranks);
    /* fp16: go on with the run's loss scale (a fresh scaler would back off again from the
     * initial one, skipping steps the uninterrupted run did not skip). */
    if (e->dev && e->dev->scaler.enabled && dd[1] > 0) {
        e->dev->scaler.scale = (float)dd[1];
        e->dev->scaler.growth_tracker = (int)st[4];
        if (e->rank == 0)
            ag_metrics_note(e->mx, "fp16 loss scale %g restored (growth tracker %lld)", dd[1], (long long)st[4]);
    }
    return 0;
}

/* ---- create / free -------------------------------------------------------------------- */

int ag_engine_create(ag_engine **out, const ag_engine_config *cfg, const ag_engine_task *task, ag_params *p,
                     int n_model_tensors, const ag_model_desc *md) {
    *out = NULL;
    const ag_comm *cm = ag_comm_get();
    if (!cm->initialized) return ag_err("engine: the communicator is not initialised (ag_comm_init)");
    if (!task || !task->step) return ag_err("engine: the task has no step function");
    if (!p || !p->data) return ag_err("engine: parameters not allocated");
    if (n_model_tensors <= 0 || n_model_tensors > p->n)
        return ag_err("engine: %d model tensors of a table of %d", n_model_tensors, p->n);
    if (cfg->n_samples <= 0) return ag_err("engine: no training samples (the training data is empty)");
    if (cfg->global_batch <= 0) return ag_err("--batch: the global batch must be positive, got %lld", (long long)cfg->global_batch);
    if (cfg->total_steps < 0 || (cfg->total_steps == 0 && cfg->epochs <= 0))
        return ag_err("--steps / --epochs: the run needs a positive length");
    if (!(cfg->lr >= 0) || !(cfg->weight_decay >= 0)) return ag_err("--lr / --weight-decay: must be >= 0");
    if (cfg->warmup_steps < 0) return ag_err("--warmup: must be >= 0");
    if (!cfg->out_dir || !*cfg->out_dir) return ag_err("--out: a run directory is required");
    ag_engine *e = calloc(1, sizeof *e);
    if (!e) return ag_err("engine: out of memory");
    e->cfg = *cfg;
    if (!e->cfg.stage) e->cfg.stage = "train";
    e->task = *task;
    e->p = p;
    e->n_model = n_model_tensors;
    e->md = md;
    e->comm = cm->world;
    e->rank = cm->rank;
    e->nranks = cm->size;
    snprintf(e->out_dir, sizeof e->out_dir, "%s", cfg->out_dir);
    snprintf(e->ckpt_dir, sizeof e->ckpt_dir, "%s/checkpoints", cfg->out_dir);
    e->cfg.out_dir = e->out_dir;
    int64_t per_epoch = (cfg->n_samples + cfg->global_batch - 1) / cfg->global_batch;
    e->total = cfg->total_steps > 0 ? cfg->total_steps : cfg->epochs * per_epoch;
    e->sched = (ag_schedule){cfg->schedule, cfg->warmup_steps, e->total};
    e->perm_epoch = -1;
    e->part_t = -1;
    e->last_eval_step = e->last_ckpt_step = e->best_step = -1;
    e->perm = malloc((size_t)cfg->n_samples * sizeof *e->perm);
    e->sample = malloc((size_t)cfg->global_batch * sizeof *e->sample);
    e->key = malloc((size_t)cfg->global_batch * sizeof *e->key);
    int rc = 0;
    if (!e->perm || !e->sample || !e->key) rc = ag_err("engine: out of memory for %lld samples", (long long)cfg->n_samples);
    if (!rc) rc = ag_adamw_init(&e->opt, p, cfg->weight_decay);
    if (agree(e, rc)) { ag_engine_free(e); return -1; }
    if (ag_ar_create(&e->ar, p, &cfg->ar, e->comm)) { ag_engine_free(e); return -1; }
    *out = e;
    return 0;
}

void ag_engine_free(ag_engine *e) {
    if (!e) return;
    if (e->ar) ag_ar_free(e->ar);
    if (e->opt.m) ag_adamw_free(&e->opt);
    ag_metrics_close(e->mx);
    free(e->perm);
    free(e->sample);
    free(e->key);
    free(e);
}

/* Settings that change what is trained (loss, pooling, data): set by the stage so that a
 * resume with other ones is refused. Kept in run.json. */
void ag_engine_set_fingerprint(ag_engine *e, const char *text) {
    snprintf(e->fingerprint, sizeof e->fingerprint, "%s", text ? text : "");
}

/* ---- hooks ---------------------------------------------------------------------------- */

void ag_engine_set_device(ag_engine *e, struct ag_device *d) {
    e->dev = d && d->gpu ? d : NULL;
    e->resident = e->dev && ag_device_resident(e->dev);
}

int ag_engine_grad_hook(void *engine, int first, int last) {
    ag_engine *e = engine;
    if (e->nccl) {
        /* Heads first (their host gradient is final when reported), then the buckets. */
        if (ag_device_heads_add(e->dev, e->p, first, last)) return -1;
        for (int t = first; t <= last; t++)
            if (ag_device_nccl_ready(e->dev, t)) return -1;
        return 0;
    }
    if (e->cfg.no_overlap || e->dev) return 0;
    for (int t = first; t <= last; t++)
        if (ag_ar_ready(e->ar, t)) return -1;
    return ag_ar_progress(e->ar);
}

void ag_engine_request_part(ag_engine *e, int t) { e->part_t = t; }
float *ag_engine_grad_part(const ag_engine *e) { return e->part; }
int ag_engine_part_ready(void *engine) {
    ag_engine *e = engine;
    return e->part ? ag_ar_part_ready(e->ar) : 0;
}

int ag_engine_accumulate(ag_engine *e) { return e->nccl ? 0 : ag_ar_accumulate(e->ar); }
int ag_engine_progress(ag_engine *e) { return e->cfg.no_overlap || e->dev ? 0 : ag_ar_progress(e->ar); }

double ag_engine_last_loss(const ag_engine *e) { return e->last_loss; }
int64_t ag_engine_step(const ag_engine *e) { return e->step; }

/* ---- data order ----------------------------------------------------------------------- */

/* Epoch e's permutation: Fisher-Yates where swap i draws from (seed, SHUFFLE, e, 0, i), a
 * pure function of the seed and the epoch, so that every rank and every resume agree. */
static void make_perm(ag_engine *e, int64_t epoch) {
    int64_t n = e->cfg.n_samples;
    for (int64_t i = 0; i < n; i++) e->perm[i] = i;
    if (!e->cfg.no_shuffle)
        for (int64_t i = n - 1; i > 0; i--) {
            uint64_t r = ((uint64_t)ag_rng_u32(e->cfg.seed, AG_RNG_SHUFFLE, (uint64_t)epoch, 0, (uint64_t)i) << 32) |
                         ag_rng_u32(e->cfg.seed, AG_RNG_SHUFFLE, (uint64_t)epoch, 1, (uint64_t)i);
            int64_t j = (int64_t)(r % (uint64_t)(i + 1));
            int64_t t = e->perm[i];
            e->perm[i] = e->perm[j];
            e->perm[j] = t;
        }
    e->perm_epoch = epoch;
}

/* ---- evaluation ----------------------------------------------------------------------- */

static int evaluate(ag_engine *e) {
    if (!e->task.evaluate || e->last_eval_step == e->step) return 0;
    e->grad_zero = 0;   /* the task's evaluation may use the gradient buffer */
    if (agree(e, host_sync(e, 0))) return ag_err_ctx("evaluation at step %lld", (long long)e->step);
    ag_eval_result r;
    memset(&r, 0, sizeof r);
    r.primary = NAN;
    int rc = e->task.evaluate(e->task.ctx, e, e->step, &r);
    if (agree(e, rc)) return ag_err_ctx("evaluation at step %lld", (long long)e->step);
    /* Rank 0's numbers decide (the ranks compute the same ones; this makes it certain). */
    MPI_Bcast(&r, sizeof r, MPI_BYTE, 0, e->comm);
    e->last_eval_step = e->step;
    int is_best = isfinite(r.primary) && (!e->has_best || r.primary > e->best);
    if (is_best) {
        e->has_best = 1;
        e->best = r.primary;
        e->best_step = e->step;
    }
    const char *names[AG_EVAL_MAX_METRICS];
    double vals[AG_EVAL_MAX_METRICS];
    for (int i = 0; i < r.n; i++) { names[i] = r.m[i].name; vals[i] = r.m[i].value; }
    ag_metrics_eval(e->mx, e->step, r.n, names, vals, r.primary_name, is_best && e->cfg.keep_best);
    if (is_best && e->cfg.keep_best) {
        rc = 0;
        if (e->rank == 0) {
            char path[PATH_CAP + 16];
            snprintf(path, sizeof path, "%s/best.h5", e->out_dir);
            rc = save_model(e, path);
            if (!rc) rc = best_write(e, r.primary_name);
        }
        if (agree(e, rc)) return -1;
    }
    return 0;
}

/* ---- the loop ------------------------------------------------------------------------- */

/* Fault point "perturb" with action fail (fail:rank=R:perturb=S) nudges one parameter on rank
 * R before step S: the divergence the checksum must catch. */
static void maybe_perturb(ag_engine *e) {
    if (ag_fault_point("perturb", e->step)) {
        ag_err_clear();
        if (host_sync(e, 0)) ag_logr("fault injection: %s", ag_errmsg());
        e->p->data[0] += 1e-3f;
        if (e->dev && ag_device_upload(e->dev, e->p)) ag_logr("fault injection: %s", ag_errmsg());
        ag_logr("fault injected: parameter %s perturbed before step %lld", e->p->t[0].name, (long long)e->step);
    }
}

/* Fault point "overflow" (fail:overflow=S, on every rank): the fp16 check finds an inf/NaN
 * in step S's reduced gradient, as a real overflow would (the step is skipped, the loss
 * scale backs off); for tests of the scale across a resume. */
static int forced_overflow(const ag_engine *e) {
    if (!ag_fault_point("overflow", e->step)) return 0;
    ag_err_clear();
    return 1;
}

/* The end of a step (taken or skipped): the data position advances, the numbers are kept. */
static void step_done(ag_engine *e, int64_t G, double loss, double lr, double norm) {
    e->step++;
    e->pos += G;
    if (e->pos >= e->cfg.n_samples) { e->epoch++; e->pos = 0; }
    e->last_loss = loss;
    e->last_lr = lr;
    e->last_norm = norm;
    e->last_global = G;
}

/* Where the compute of a step [t0, t1) ends and the reduction [t1, now) with it, on every rank,
 * a failed one too: the times are kept, the loss is summed over the ranks (*sum_loss) with the
 * count of failed ranks, so that a failure anywhere stops the step everywhere, and the step's
 * learning rate is read from the schedule (*lr). Returns 0, or -1 with the error set. */
static int step_reduce(ag_engine *e, int rc, double loss, double t0, double t1, double *sum_loss, double *lr) {
    double t2 = MPI_Wtime();
    e->t_compute += t1 - t0;
    e->t_exposed += t2 - t1;
    double red[2] = {rc ? 0 : loss, rc != 0}, sum[2];
    MPI_Allreduce(red, sum, 2, MPI_DOUBLE, MPI_SUM, e->comm);
    if (sum[1] > 0) {
        if (rc) return -1;
        return ag_err("step %lld failed on %d rank(s) (their messages say why)", (long long)e->step, (int)sum[1]);
    }
    *sum_loss = sum[0];
    *lr = e->cfg.lr * ag_schedule_factor(&e->sched, e->opt.step);
    return 0;
}

/* fp16 found inf/NaN in the reduced gradient (the same on every rank, so is the decision):
 * no update, noted on rank 0; the optimiser's step count and the data position advance. */
static void skip_step(ag_engine *e, const ag_grad_scaler *s, int64_t G, double loss, double lr) {
    if (e->rank == 0)
        ag_metrics_note(e->mx, "step %lld: inf/NaN in the fp16 gradient, step skipped, loss scale now %g",
                        (long long)e->step, (double)s->scale);
    e->opt.step++;
    step_done(e, G, loss, lr, 0);
}

/* One step of device-resident training (docs/cuda.md, "How the stages use the device"):
 * the task's backward writes the device gradient, the heads' host gradients join it, the
 * ranks' contributions are summed (NCCL during the backward, or download -> host allreduce
 * -> upload), then unscale (fp16), clipping and AdamW run on the device and the heads'
 * parameters come back for the host code. The host table is otherwise left behind
 * (host_sync brings it down when needed). */
static int device_step(ag_engine *e, const ag_engine_batch *b, int64_t G) {
    ag_device *d = e->dev;
    /* Without NCCL the host allreduce sums, except at np 1 in SUM mode (the identity). */
    int host_ar = !e->nccl && (e->nranks > 1 || e->cfg.ar.mode != AG_AR_SUM);
    ag_device_heads_begin(d, e->p);
    int rc = host_ar ? ag_ar_begin(e->ar) : 0;
    /* Begun on every rank before anything can fail, so that every rank finishes it. */
    int rc_nc = ag_device_nccl_begin(d);
    double loss = 0, t0 = MPI_Wtime();
    if (!rc) rc = rc_nc;
    if (!rc) rc = ag_fault_point("step", e->step);
    if (!rc) rc = ag_device_begin_step(d);
    if (!rc) {
        rc = e->task.step(e->task.ctx, e, b, &loss);
        /* Heads not reported through the hook (all of them without NCCL). */
        if (!rc) rc = ag_device_heads_add(d, e->p, 0, e->p->n - 1);
        if (rc) ag_err_ctx("step %lld", (long long)e->step);
    }
    double t1 = MPI_Wtime();
    /* Every rank takes part in the reduction, a failed one too, so that none waits forever. */
    int rc2 = 0;
    if (e->nccl) {
        if (ag_device_nccl_finish(d)) rc2 = -1;
    } else if (host_ar) {
        if (!rc && ag_device_grad_get(d, e->p)) rc2 = -1;
        if ((rc || rc2) && e->p->grad) memset(e->p->grad, 0, e->p->total * sizeof(float));
        if (ag_ar_finish(e->ar, 1) && !rc2) rc2 = -1;
        if (!rc && !rc2 && ag_device_grad_put(d, e->p)) rc2 = -1;
    }
    if (!rc && !rc2 && ag_device_sync(d)) rc2 = -1;
    if (!rc) rc = rc2;
    double sum_loss, lr;
    if (step_reduce(e, rc, loss, t0, t1, &sum_loss, &lr)) return -1;
    e->stale_data = e->stale_moments = 1;
    if (d->scaler.enabled) {
        int bad = 0;
        if (ag_device_unscale(d, &bad)) return ag_err_ctx("step %lld", (long long)e->step);
        bad |= forced_overflow(e);
        ag_scaler_update(&d->scaler, bad);
        if (bad) {
            d->opt.step++;
            skip_step(e, &d->scaler, G, sum_loss, lr);
            return 0;
        }
    }
    double norm = ag_device_clip(d, e->cfg.max_grad_norm);
    if (!isfinite(norm) || !isfinite(sum_loss))
        return ag_err("step %lld: the loss (%g) or the gradient norm (%g) is not finite; lower --lr or check the "
                      "data", (long long)e->step, sum_loss, norm);
    if (ag_device_adamw(d, lr) || ag_device_heads_refresh(d, e->p)) return ag_err_ctx("step %lld", (long long)e->step);
    e->opt.step = d->opt.step;
    step_done(e, G, sum_loss, lr, norm);
    return 0;
}

static int one_step(ag_engine *e) {
    const int64_t N = e->cfg.n_samples;
    if (e->pos >= N) { e->epoch++; e->pos = 0; }
    if (e->perm_epoch != e->epoch) make_perm(e, e->epoch);
    int64_t G = e->cfg.global_batch;
    if (G > N - e->pos) G = N - e->pos;
    for (int64_t i = 0; i < G; i++) {
        e->sample[i] = e->perm[e->pos + i];
        e->key[i] = e->epoch * N + e->pos + i;
    }
    ag_engine_batch b = {.step = e->step, .epoch = e->epoch, .pos = e->pos, .global = G, .sample = e->sample,
                         .key = e->key, .seed = e->cfg.seed, .rank = e->rank, .nranks = e->nranks, .comm = e->comm};
    ag_batch_slice(G, e->nranks, e->rank, &b.begin, &b.count);
    b.gscale = (float)((double)b.count / (double)G);
    if (e->resident) return device_step(e, &b, G);

    if (!e->grad_zero) ag_params_zero_grad(e->p);
    e->grad_zero = 0;
    int rc = ag_ar_begin(e->ar);
    double loss = 0, t0 = MPI_Wtime();
    if (!rc) rc = ag_fault_point("step", e->step);
    if (!rc && e->dev) rc = ag_device_begin_step(e->dev);
    if (!rc) {
        rc = e->task.step(e->task.ctx, e, &b, &loss);
        /* The device gradient joins the host one (heads) before the host reduction. */
        if (!rc && e->dev) rc = ag_device_end_step(e->dev, e->p);
        if (rc) ag_err_ctx("step %lld", (long long)e->step);
    }
    double t1 = MPI_Wtime();
    /* Every rank finishes the reduction, a failed one too, so that none waits forever. */
    int rc2 = ag_ar_finish(e->ar, 1);
    if (!rc) rc = rc2;
    double sum_loss, lr;
    if (step_reduce(e, rc, loss, t0, t1, &sum_loss, &lr)) return -1;
    if (e->dev && e->dev->scaler.enabled) {
        int bad = ag_nonfinite_any(e->p->grad, e->p->total) | forced_overflow(e);
        ag_scaler_update(&e->dev->scaler, bad);
        if (bad) {
            skip_step(e, &e->dev->scaler, G, sum_loss, lr);
            return 0;
        }
    }
    /* Clipping is folded into AdamW's pass (the same float product as clip_grad_norm_'s),
     * which also zeroes the gradient for the next step. */
    double norm = ag_grad_norm(e->p);
    if (!isfinite(norm) || !isfinite(sum_loss))
        return ag_err("step %lld: the loss (%g) or the gradient norm (%g) is not finite; lower --lr or check the "
                      "data", (long long)e->step, sum_loss, norm);
    float clip = e->cfg.max_grad_norm > 0 ? ag_clip_coef(norm, e->cfg.max_grad_norm) : 1.0f;
    if (ag_adamw_update(&e->opt, e->p, lr, clip, 1)) return -1;
    e->grad_zero = 1;
    if (e->dev && ag_device_upload(e->dev, e->p)) return ag_err_ctx("step %lld", (long long)e->step);
    step_done(e, G, sum_loss, lr, norm);
    return 0;
}

/* Rank 0, with more than one rank: what the host gradient allreduce cost this run (the
 * stage's log; bench_overlap.sh reads the "exposed communication" figure). */
static void say_reduction(ag_engine *e) {
    ag_ar_stats st;
    ag_ar_get_stats(e->ar, &st);
    if (e->rank != 0 || e->nranks < 2 || st.steps < 1) return;
    double n = (double)st.steps;
    char sparse[128] = "";
    if (st.n_sparse > 0)
        snprintf(sparse, sizeof sparse, " (word embeddings: %.0f rows/step reduced, not all)", (double)st.sparse_rows / n);
    ag_metrics_note(e->mx, "gradient allreduce: %d bucket%s, %.1f of %.1f MB/step%s; forward+backward %.3f s/step, "
                    "exposed communication %.4f s/step, in flight %.4f s/step", st.n_buckets,
                    st.n_buckets == 1 ? "" : "s", st.sent / n / 1e6, (double)st.bytes / 1e6, sparse,
                    e->t_compute / n, e->t_exposed / n, st.t_flight / n);
}

int ag_engine_run(ag_engine *e) {
    int rc = 0;
    if (e->rank == 0) rc = mkdir_p(e->out_dir);  /* checkpoints/ is made by the first save */
    if (agree(e, rc)) return -1;
    e->mx = ag_metrics_open(e->out_dir, e->cfg.stage, e->total, e->cfg.log_every, e->rank == 0, e->cfg.tty);
    if (agree(e, e->mx ? 0 : -1)) return -1;
    int resumed = 0;
    if (load_or_broadcast(e, &resumed)) return -1;
    if (e->dev && !e->resident && agree(e, ag_device_upload(e->dev, e->p))) return -1;
    if (e->resident) {
        /* The parameters and the moments (zero, or the checkpoint's) go up once; from now
         * on the device holds the master copy. */
        rc = ag_device_optim_init(e->dev, e->cfg.weight_decay);
        if (!rc) rc = ag_device_optim_upload(e->dev, e->p, &e->opt);
        if (agree(e, rc)) return ag_err_ctx("--device: the device optimiser");
        e->stale_data = e->stale_moments = 0;
        char why[512];
        int ar_sum = e->cfg.ar.mode == AG_AR_SUM;
        e->nccl = ar_sum && ag_device_nccl_open(e->dev, &e->cfg.ar, !e->cfg.no_overlap && e->cfg.ar.overlap, why,
                                                 sizeof why);
        if (e->nranks > 1 && e->rank == 0)
            ag_metrics_note(e->mx, "gradient reduction: %s", e->nccl ? "NCCL on the device, overlapped with the backward"
                            : ar_sum ? "host allreduce (device -> host -> device)" : "host allreduce (exact mode)");
        if (e->nranks > 1 && e->rank == 0 && ar_sum && !e->nccl && why[0])
            ag_metrics_note(e->mx, "NCCL not used: %s", why);
    }
    if (e->part_t >= 0 && !e->part) {
        /* A share kept apart only pays where the host allreduce overlaps the backward:
         * more than one rank, on the CPU. Every rank must decide alike (a bucket more). */
        int ok = !e->dev && e->nranks > 1 && !e->cfg.no_overlap && e->cfg.ar.overlap, all = 0;
        MPI_Allreduce(&ok, &all, 1, MPI_INT, MPI_MIN, e->comm);
        if (all && agree(e, ag_ar_add_part(e->ar, e->part_t, &e->part))) return -1;
    }
    ag_metrics_resume(e->mx, e->step);
    char model_path[PATH_CAP + 16];
    snprintf(model_path, sizeof model_path, "%s/model.h5", e->out_dir);
    if (resumed && e->step >= e->total) {
        int done = e->rank == 0 && file_exists(model_path);
        MPI_Bcast(&done, 1, MPI_INT, 0, e->comm);
        if (done) {
            ag_metrics_note(e->mx, "run already complete (%lld steps): %s", (long long)e->total, model_path);
            return AG_EXIT_OK;
        }
    }
    if (!resumed)
        ag_metrics_note(e->mx, "%lld steps of global batch %lld over %d rank%s, %lld training samples, %zu parameters",
                        (long long)e->total, (long long)e->cfg.global_batch, e->nranks, e->nranks == 1 ? "" : "s",
                        (long long)e->cfg.n_samples, e->p->total);
    double t_start = MPI_Wtime();
    while (e->step < e->total) {
        maybe_perturb(e);
        if (one_step(e)) return -1;
        ag_metrics_step(e->mx, e->step, e->epoch, e->last_loss, e->last_lr, e->last_norm,
                        e->last_global, MPI_Wtime() - t_start);
        int check = e->cfg.check_every > 0 && e->step % e->cfg.check_every == 0;
        if (check && agree(e, host_sync(e, 0))) return -1;
        if (check && ag_check_same(e->p->data, e->p->total, e->step, e->comm))
            return ag_err_ctx("parameters diverged between ranks (a rank computed something else: hardware, "
                              "a nondeterministic library, or a bug)");
        if (e->cfg.eval_every > 0 && e->step % e->cfg.eval_every == 0 && e->step < e->total && evaluate(e))
            return -1;
        int stop = ag_stop_requested();
        /* Only when the run reaches that step: a resumed run given the same option goes on. */
        int asked = e->cfg.stop_after > 0 && e->step == e->cfg.stop_after && e->step < e->total;
        if ((e->cfg.ckpt_every > 0 && e->step % e->cfg.ckpt_every == 0 && e->step < e->total) || stop || asked)
            if (save_checkpoint(e)) return -1;
        if (stop || asked) {
            ag_metrics_note(e->mx, "%s at step %lld: checkpoint %s/ckpt-%06lld.h5 written; exit %d means "
                            "'checkpointed, run me again to resume'", stop ? "stop signal" : "--stop-after reached",
                            (long long)e->step, e->ckpt_dir, (long long)e->step, AG_EXIT_REQUEUE);
            say_reduction(e);
            return AG_EXIT_REQUEUE;
        }
    }
    if (agree(e, host_sync(e, 1))) return -1;
    if (ag_check_same(e->p->data, e->p->total, e->step, e->comm))
        return ag_err_ctx("parameters diverged between ranks");
    if (evaluate(e)) return -1;
    if (e->last_ckpt_step != e->step && save_checkpoint(e)) return -1;
    rc = 0;
    if (e->rank == 0) {
        char best_path[PATH_CAP + 16];
        snprintf(best_path, sizeof best_path, "%s/best.h5", e->out_dir);
        if (e->cfg.keep_best && e->has_best && file_exists(best_path)) {
            rc = copy_atomic(best_path, model_path);
            if (!rc)
                ag_metrics_note(e->mx, "done: %s = the best model (step %lld, score %.5f)", model_path,
                                (long long)e->best_step, e->best);
        } else {
            rc = save_model(e, model_path);
            if (!rc) ag_metrics_note(e->mx, "done: %s (step %lld, last loss %.6f)", model_path, (long long)e->step,
                                     e->last_loss);
        }
    }
    if (agree(e, rc)) return -1;
    say_reduction(e);
    return AG_EXIT_OK;
}
