/* The set-up and run the stage programs share (see runsetup.h). */
#include "jobs/runsetup.h"

#include <math.h>
#include <stdio.h>
#include <string.h>

#include "dist/comm.h"
#include "dist/signals.h"
#include "nn/error.h"
#include "nn/evaluate.h"

int ag_run_parse(ag_cli *c, const char *prog, const char *summary, const ag_cli_opt *opts, int argc, char **argv) {
    int rc = ag_cli_parse(c, prog, summary, opts, argc, argv);
    if (rc < 0) fprintf(stderr, "%s\n", ag_errmsg());  /* the message names the program */
    return rc > 0 ? AG_EXIT_OK : rc < 0 ? AG_EXIT_USAGE : -1;
}

int ag_run_begin(ag_cli *c, const char *prog, int opts_rc, int *argc, char ***argv) {
    if (opts_rc) {
        fprintf(stderr, "%s: %s\n", prog, ag_errmsg());
        ag_cli_free(c);
        return AG_EXIT_USAGE;
    }
    if (ag_comm_init(argc, argv)) {
        fprintf(stderr, "%s: %s\n", prog, ag_errmsg());
        ag_cli_free(c);
        return AG_EXIT_FAIL;
    }
    return -1;
}

int ag_run_encode_opts(const ag_cli *c, long *batch, long *max_len) {
    if (ag_cli_long(c, "batch", batch) || ag_cli_long(c, "max-length", max_len)) return -1;
    if (*batch <= 0) return ag_err("--batch: expected a positive number, got %ld", *batch);
    if (ag_cli_given(c, "max-length") && *max_len < 2) return ag_err("--max-length: expected at least 2, got %ld", *max_len);
    return 0;
}

/* ---- the training stages' options ------------------------------------------------------ */

/* A whole-number option with a lower bound; the destination keeps the stage's default when
 * the option is not given. */
static int opt_at_least(const ag_cli *c, const char *name, long minv, long *v) {
    if (ag_cli_long(c, name, v)) return -1;
    if (ag_cli_str(c, name) && *v < minv) return ag_err("--%s: expected a number >= %d, got %ld", name, (int)minv, *v);
    return 0;
}

static int opt_i64(const ag_cli *c, const char *name, long minv, int64_t *dst) {
    long v;
    if (opt_at_least(c, name, minv, &v)) return -1;
    if (ag_cli_str(c, name)) *dst = v;
    return 0;
}

static int opt_int(const ag_cli *c, const char *name, long minv, int *dst) {
    long v;
    if (opt_at_least(c, name, minv, &v)) return -1;
    if (ag_cli_str(c, name)) *dst = (int)v;
    return 0;
}

int ag_run_engine_opts(const ag_cli *c, ag_engine_config *ec, int *eval_batch) {
    if (opt_i64(c, "batch", 1, &ec->global_batch) || opt_i64(c, "epochs", 1, &ec->epochs) ||
        opt_i64(c, "steps", 1, &ec->total_steps) || opt_i64(c, "warmup", 0, &ec->warmup_steps) ||
        opt_int(c, "eval-every", 0, &ec->eval_every) || opt_int(c, "ckpt-every", 0, &ec->ckpt_every) ||
        opt_int(c, "keep-ckpts", 1, &ec->keep_ckpts) || opt_int(c, "check-every", 0, &ec->check_every) ||
        opt_i64(c, "stop-after", 1, &ec->stop_after) || opt_int(c, "log-every", 1, &ec->log_every) ||
        opt_int(c, "eval-batch", 1, eval_batch))
        return -1;
    long seed = 42;
    if (ag_cli_long(c, "seed", &seed)) return -1;
    if (seed < 0) return ag_err("--seed: expected a number >= 0, got %ld", seed);
    ec->seed = (uint64_t)seed;
    if (ag_cli_double(c, "lr", &ec->lr) || ag_cli_double(c, "weight-decay", &ec->weight_decay) ||
        ag_cli_double(c, "max-grad-norm", &ec->max_grad_norm))
        return -1;
    if (!(ec->lr >= 0)) return ag_err("--lr: expected a number >= 0");
    if (!(ec->weight_decay >= 0)) return ag_err("--weight-decay: expected a number >= 0");
    if (ag_schedule_parse(ag_cli_str(c, "schedule"), &ec->schedule)) return ag_err_ctx("--schedule");
    double mb;
    if (ag_cli_double(c, "bucket-mb", &mb)) return -1;
    if (!(mb > 0)) return ag_err("--bucket-mb: expected a positive number");
    ec->ar.bucket_bytes = (size_t)(mb * 1048576.0);
    if (ec->ar.first_bucket_bytes > ec->ar.bucket_bytes) ec->ar.first_bucket_bytes = ec->ar.bucket_bytes;
    ec->ar.mode = ag_cli_flag(c, "exact") ? AG_AR_EXACT : AG_AR_SUM;
    ec->no_overlap = ag_cli_flag(c, "no-overlap");
    ec->no_shuffle = ag_cli_flag(c, "no-shuffle");
    return 0;
}

/* ---- STS evaluation during training ---------------------------------------------------- */

int ag_run_read_sts_eval(const ag_cli *c, const ag_model_desc *md, ag_dataset *eval, int *has_eval) {
    const char *ef = ag_cli_str(c, "eval");
    ag_dataset_init(eval);
    *has_eval = 1;
    if (ag_dataset_read(ef, eval)) return ag_err_ctx("--eval");
    if (ag_check_dataset_vocab(eval, ef, md)) return ag_err_ctx("--eval");
    int64_t lab = 0;
    for (int64_t i = 0; i < eval->n_pairs; i++) lab += isfinite(eval->label[i]);
    if (lab < 2) return ag_err("--eval %s: %lld labelled pairs; the STS evaluator needs at least 2", ef, (long long)lab);
    return 0;
}

int ag_run_sts_evaluate(const ag_encoder *enc, const ag_dataset *eval, int batch, ag_eval_result *out) {
    ag_sts_result r;
    int64_t n;
    if (ag_sts_dataset(enc, eval, batch, ag_comm_get()->world, &r, &n)) return -1;
    char name[48];
    for (int f = 0; f < AG_SIM_COUNT; f++) {
        snprintf(name, sizeof name, "pearson_%s", ag_sim_name((ag_sim_fn)f));
        ag_eval_add(out, name, r.pearson[f]);
        snprintf(name, sizeof name, "spearman_%s", ag_sim_name((ag_sim_fn)f));
        ag_eval_add(out, name, r.spearman[f]);
    }
    ag_eval_add(out, "pearson_max", r.pearson_max);
    ag_eval_add(out, "spearman_max", r.spearman_max);
    out->primary = r.spearman[AG_SIM_COSINE];
    snprintf(out->primary_name, sizeof out->primary_name, "spearman_cosine");
    return 0;
}

/* ---- driving the engine ---------------------------------------------------------------- */

/* Made engine -> its exit code; the model's backward hook is set only while it runs. */
static int run_engine(const ag_run_stage *s, ag_engine *e) {
    ag_engine_set_fingerprint(e, s->fingerprint);
    ag_engine_set_device(e, s->dv);
    if (s->before) s->before(s->task.ctx, e);
    s->m->grad_hook = ag_engine_grad_hook;
    s->m->grad_hook_ctx = e;
    int rc = ag_engine_run(e);
    s->m->grad_hook = NULL;
    if (s->after) s->after(s->task.ctx, e, rc);
    return rc;
}

int ag_run_train_stage(const ag_run_stage *s, const ag_engine_config *ec, int setup_rc) {
    const ag_comm *cm = ag_comm_get();
    /* Every rank reads the same inputs, so they agree; the maximum makes it certain. */
    int bad = setup_rc != 0, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, cm->world);
    if (any) {
        if (setup_rc && cm->rank == 0) fprintf(stderr, "argent %s: %s\n", s->stage, ag_errmsg());
        else if (setup_rc) ag_logr("%s: %s", s->stage, ag_errmsg());
        return AG_EXIT_FAIL;
    }
    ag_engine *e = NULL;
    ag_device_say(s->dv, s->stage);
    int rc = ag_engine_create(&e, ec, &s->task, s->p, s->n_model, s->md);
    if (!rc) rc = run_engine(s, e);
    if (rc < 0) fprintf(stderr, "argent %s: rank %d: %s\n", s->stage, cm->rank, ag_errmsg());
    ag_engine_free(e);
    return rc < 0 ? AG_EXIT_FAIL : rc;
}

/* ---- encode and eval's inputs ---------------------------------------------------------- */

void ag_bi_input_init(ag_bi_input *b) {
    memset(b, 0, sizeof *b);
    ag_model_desc_init(&b->md);
    ag_params_init(&b->p);
    ag_dataset_init(&b->ds);
}

int ag_bi_input_open(ag_bi_input *b, const char *model, const char *data, int max_len, const char *need_pairs) {
    if (ag_load_bi_encoder(model, &b->md, &b->m, &b->p)) return -1;
    b->have_model = 1;
    if (ag_dataset_read(data, &b->ds)) return -1;
    if (need_pairs && b->ds.n_pairs == 0)
        return ag_err("%s: has no pairs (a dataset of sentences?); %s needs labelled pairs", data, need_pairs);
    if (ag_check_dataset_vocab(&b->ds, data, &b->md)) return -1;
    return ag_encoder_init(&b->enc, &b->m, &b->p, &b->md, max_len);
}

void ag_bi_input_free(ag_bi_input *b) {
    ag_dataset_free(&b->ds);
    if (b->have_model) {
        ag_bert_free(&b->m);
        ag_params_free(&b->p);
    }
    ag_model_desc_free(&b->md);
}

/* ---- cross-encoders --------------------------------------------------------------------- */

int ag_run_cross_on_device(ag_cross *x, ag_device *dv) {
    if (ag_device_mirror(dv, &x->p)) return -1;
    if (dv->gpu) {
        x->m.ops = dv->ops;
        x->run_p = &dv->dev;
    }
    return 0;
}
