/* `argent eval`: evaluate a model on a pair dataset, as sentence-transformers' evaluators
 * do. A bi-encoder: STS (EmbeddingSimilarityEvaluator: Pearson and Spearman of cosine,
 * -Manhattan, -Euclidean and dot similarities against the gold scores, and the maxima) or
 * binary classification (BinaryClassificationEvaluator: best-threshold accuracy, F1,
 * average precision per similarity). A cross-encoder (a train-cross checkpoint, found by
 * the checkpoint's kind): correlation (CrossEncoderCorrelationEvaluator: Pearson and
 * Spearman of the sigmoid scores of a one-label model against gold scores) or
 * classification (CrossEncoderClassificationEvaluator: best-threshold accuracy, F1 and
 * average precision of a one-label model on 0/1 labels; argmax accuracy and macro / micro /
 * weighted F1 of an L-class model), with nn/evaluate_cross.h's arithmetic, the same as
 * train-cross's periodic evaluation. Prints a table; --csv writes metric,value rows (for a
 * cross-encoder the primary metric first). Encoding / prediction is spread over the ranks
 * (length-sorted batches; the numbers do not depend on the rank count). */
#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/allreduce.h"
#include "dist/comm.h"
#include "io/checkpoint.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "jobs/crossenc.h"
#include "jobs/encode.h"
#include "jobs/runsetup.h"
#include "nn/error.h"
#include "nn/evaluate.h"
#include "nn/evaluate_cross.h"

/* The labelled pairs of ds and the distinct sentences they use, encoded: u, v [np, C]. */
static int encode_pairs(const ag_encoder *enc, const ag_dataset *ds, int batch, MPI_Comm comm, float **u, float **v,
                        float **labels, int64_t *n_pairs) {
    const int C = enc->C;
    int64_t P = ds->n_pairs, S = ds->n_sentences, n = 0, ns = 0;
    int64_t *row = malloc((size_t)(S ? S : 1) * sizeof *row), *sent = malloc((size_t)(S ? S : 1) * sizeof *sent);
    int64_t *pairs = malloc((size_t)(P ? P : 1) * sizeof *pairs);
    float *emb = NULL;
    *u = *v = *labels = NULL;
    int rc = 0;
    if (!row || !sent || !pairs) rc = ag_err("out of memory for %lld pairs", (long long)P);
    for (int64_t s = 0; s < S && !rc; s++) row[s] = -1;
    for (int64_t i = 0; i < P && !rc; i++) {
        if (!isfinite(ds->label[i])) continue;
        pairs[n++] = i;
        int64_t ab[2] = {ds->a[i], ds->b[i]};
        for (int k = 0; k < 2; k++)
            if (row[ab[k]] < 0) { row[ab[k]] = ns; sent[ns++] = ab[k]; }
    }
    if (!rc) {
        emb = malloc((size_t)(ns ? ns : 1) * C * sizeof(float));
        *u = malloc((size_t)(n ? n : 1) * C * sizeof(float));
        *v = malloc((size_t)(n ? n : 1) * C * sizeof(float));
        *labels = malloc((size_t)(n ? n : 1) * sizeof(float));
        if (!emb || !*u || !*v || !*labels) rc = ag_err("out of memory for %lld embeddings", (long long)ns);
    }
    if (!rc) rc = ag_encode(enc, ds, sent, ns, batch, comm, emb);
    if (!rc)
        for (int64_t k = 0; k < n; k++) {
            int64_t i = pairs[k];
            memcpy(*u + (size_t)k * C, emb + (size_t)row[ds->a[i]] * C, (size_t)C * sizeof(float));
            memcpy(*v + (size_t)k * C, emb + (size_t)row[ds->b[i]] * C, (size_t)C * sizeof(float));
            (*labels)[k] = ds->label[i];
        }
    free(row); free(sent); free(pairs); free(emb);
    if (rc) { free(*u); free(*v); free(*labels); *u = *v = *labels = NULL; }
    *n_pairs = n;
    return rc;
}

int ag_sts_dataset(const ag_encoder *enc, const ag_dataset *ds, int batch, MPI_Comm comm, ag_sts_result *r,
                   int64_t *n_pairs) {
    float *u, *v, *y;
    int64_t n;
    if (encode_pairs(enc, ds, batch, comm, &u, &v, &y, &n)) return -1;
    double *gold = malloc((size_t)(n ? n : 1) * sizeof *gold);
    int rc = gold ? 0 : ag_err("out of memory");
    for (int64_t i = 0; i < n && gold; i++) gold[i] = y[i];
    if (!rc) rc = ag_eval_sts(u, v, gold, (size_t)n, enc->C, r);
    free(u); free(v); free(y); free(gold);
    if (n_pairs) *n_pairs = n;
    return rc;
}

static const ag_cli_opt eval_opts[] = {
    {"model", "CKPT", "bi-encoder or cross-encoder checkpoint (file, or a train-bi / train-cross run directory: its "
                      "model.h5); the checkpoint's kind picks the evaluators", NULL, 1},
    {"data", "PAIRS.h5", "pair dataset from argent prepare (pairs without a label are left out)", NULL, 1},
    {"task", "T", "bi-encoder: sts (EmbeddingSimilarityEvaluator, the default) or binary (BinaryClassification"
                  "Evaluator, labels 0/1); cross-encoder: correlation (score labels, one-label model) or "
                  "classification (class labels); default from the dataset's label kind", NULL, 0},
    {"batch", "N", "sentences (bi-encoder) or pairs (cross-encoder) per forward pass", "32", 0},
    {"max-length", "N", "tokens per text incl. [CLS]/[SEP], or per pair for a cross-encoder (default: the model's "
                        "max_seq_length)", NULL, 0},
    {"csv", "FILE", "also write the results as CSV (metric,value)", NULL, 0},
    {"name", "NAME", "name of the evaluation in the table and CSV", NULL, 0},
    {0}};

static int write_csv(const char *path, int n, const char *const *names, const double *vals) {
    char tmp[4300];
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *f = fopen(tmp, "w");
    if (!f) return ag_err("--csv %s: cannot create %s", path, tmp);
    fprintf(f, "metric,value\n");
    for (int i = 0; i < n; i++) fprintf(f, "%s,%.17g\n", names[i], vals[i]);
    if (fclose(f) || rename(tmp, path)) { remove(tmp); return ag_err("--csv %s: write failed", path); }
    return 0;
}

/* Sort key of a prediction batch: longest pair first, ties by position. */
typedef struct { int len; int64_t k; } len_pos;
static int len_pos_cmp(const void *a, const void *b) {
    const len_pos *x = a, *y = b;
    if (x->len != y->len) return x->len > y->len ? -1 : 1;
    return x->k < y->k ? -1 : x->k > y->k;
}

/* Collective: the predictions [n, L] of pairs[0..n) on every rank (sigmoid scores for one
 * label, logits for more, as CrossEncoder.predict). The pairs are sorted by length once and
 * cut into batches of `batch`; each rank predicts a run of whole batches, so every pair is
 * computed in the same batch whatever the rank count, and the numbers do not depend on it. */
static int cross_predict_all(ag_cross *x, const ag_dataset *ds, const int64_t *pairs, int64_t n, int batch,
                             MPI_Comm comm, float *out) {
    int size, rank, L = ag_cross_labels(x);
    MPI_Comm_size(comm, &size);
    MPI_Comm_rank(comm, &rank);
    len_pos *ord = malloc((size_t)(n ? n : 1) * sizeof *ord);
    int64_t *sorted = malloc((size_t)(n ? n : 1) * sizeof *sorted);
    float *tmp = malloc((size_t)(n ? n : 1) * (size_t)L * sizeof *tmp);
    int *cnt = malloc((size_t)size * sizeof *cnt), *off = malloc((size_t)size * sizeof *off);
    int rc = ord && sorted && tmp && cnt && off ? 0 : ag_err("out of memory for %lld pairs", (long long)n);
    if (!rc && n * L > INT_MAX) rc = ag_err("too many pairs to evaluate at once (%lld)", (long long)n);
    if (!rc) {
        for (int64_t k = 0; k < n; k++) ord[k] = (len_pos){ag_cross_pair_len(x, ds, pairs[k]), k};
        qsort(ord, (size_t)n, sizeof *ord, len_pos_cmp);
        for (int64_t k = 0; k < n; k++) sorted[k] = pairs[ord[k].k];
        int64_t nb = (n + batch - 1) / batch;
        for (int r = 0; r < size; r++) {
            int64_t b0, bc;
            ag_batch_slice(nb, size, r, &b0, &bc);
            int64_t begin = b0 * batch, end = (b0 + bc) * batch < n ? (b0 + bc) * batch : n;
            if (begin > n) begin = n;
            cnt[r] = (int)((end - begin) * L);
            off[r] = (int)(begin * L);
        }
        if (cnt[rank]) rc = ag_cross_predict(x, ds, sorted + off[rank] / L, cnt[rank] / L, batch, tmp + off[rank]);
    }
    int bad = rc != 0, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, comm);
    if (!any) {
        MPI_Allgatherv(MPI_IN_PLACE, 0, MPI_FLOAT, tmp, cnt, off, MPI_FLOAT, comm);
        for (int64_t k = 0; k < n; k++)
            for (int j = 0; j < L; j++) {
                float v = tmp[(size_t)k * L + j];
                out[(size_t)ord[k].k * L + j] = L == 1 ? 1.0f / (1.0f + expf(-v)) : v;
            }
    }
    free(ord); free(sorted); free(tmp); free(cnt); free(off);
    if (any) return rc ? -1 : ag_err("prediction failed on another rank");
    return 0;
}

/* One metric,value row of the results. */
static void put(const char **names, double *vals, int *n, const char *name, double v) {
    names[*n] = name;
    vals[(*n)++] = v;
}

/* Task ids of eval's --task. */
enum { T_STS, T_BINARY, T_CORR, T_CLASS };

/* `argent eval` of a cross-encoder checkpoint: task -1 picks correlation for score labels,
 * classification for class labels. Collective; returns eval's exit code. */
static int eval_cross(const char *model, const char *data, const char *name, const char *csv, int task, int batch,
                      int max_len, const ag_comm *cm) {
    ag_cross x;
    ag_dataset ds;
    ag_dataset_init(&ds);
    char file[4200] = "";
    int have_x = 0, L = 0;
    int64_t n = 0, *pairs = NULL;
    float *pred = NULL, *gold_f = NULL;
    int32_t *gold_i = NULL;
    int rc = ag_cross_load(&x, model, file, sizeof file);
    if (!rc) {
        have_x = 1;
        L = ag_cross_labels(&x);
    }
    if (!rc && max_len && ag_cross_set_max_len(&x, max_len)) rc = ag_err_ctx("--max-length");
    if (!rc) rc = ag_dataset_read(data, &ds);
    if (!rc && ds.n_pairs == 0) rc = ag_err("%s: has no pairs (a dataset of sentences?); eval needs labelled pairs", data);
    if (!rc && ds.label_kind == AG_LABEL_NONE)
        rc = ag_err("%s: has no labels (label_kind none); eval needs labelled pairs", data);
    if (!rc) rc = ag_cross_check_data(&x, &ds, data);
    if (!rc && (task == T_STS || task == T_BINARY))
        rc = ag_err("--task %s evaluates a bi-encoder, and %s is a cross-encoder (use --task correlation or "
                    "classification)", task == T_STS ? "sts" : "binary", file);
    if (!rc && task < 0) {
        if (ds.label_kind == AG_LABEL_CLASS) task = T_CLASS;
        else if (L == 1) task = T_CORR;
        else
            rc = ag_err("%s: has score labels, and %s is a %d-class cross-encoder (class logits): evaluate it on "
                        "pairs with class labels (argent prepare --label-kind class), or evaluate a one-label "
                        "cross-encoder on scores", data, file, L);
    }
    if (!rc && task == T_CORR && L != 1)
        rc = ag_err("--task correlation: %s is a %d-class cross-encoder; correlation needs a one-label (score) "
                    "cross-encoder (use --task classification)", file, L);
    /* The labelled pairs, checked against what the evaluator takes. */
    if (!rc) {
        pairs = malloc((size_t)ds.n_pairs * sizeof *pairs);
        gold_f = malloc((size_t)ds.n_pairs * sizeof *gold_f);
        gold_i = malloc((size_t)ds.n_pairs * sizeof *gold_i);
        pred = malloc((size_t)ds.n_pairs * (size_t)L * sizeof *pred);
        if (!pairs || !gold_f || !gold_i || !pred) rc = ag_err("out of memory for %lld pairs", (long long)ds.n_pairs);
    }
    for (int64_t i = 0; !rc && i < ds.n_pairs; i++) {
        float y = ds.label[i];
        if (!isfinite(y)) continue;
        if (task == T_CLASS && (y != floorf(y) || y < 0 || y > (L == 1 ? 1 : L - 1))) {
            if (L == 1)
                rc = ag_err("%s: pair %lld (line %lld) has label %g; a one-label cross-encoder (%s) is evaluated as "
                            "a binary classifier, on labels 0 or 1", data, (long long)i, (long long)ds.line[i],
                            (double)y, file);
            else
                rc = ag_err("%s: pair %lld (line %lld) has label %g; %s has %d classes, labels 0..%d", data,
                            (long long)i, (long long)ds.line[i], (double)y, file, L, L - 1);
            break;
        }
        pairs[n] = i;
        gold_f[n] = y;
        gold_i[n++] = (int32_t)y;
    }
    if (!rc && n < (task == T_CORR ? 2 : 1))
        rc = ag_err("%s: %lld labelled pair%s; the %s evaluation needs at least %d", data, (long long)n,
                    n == 1 ? "" : "s", task == T_CORR ? "correlation" : "classification", task == T_CORR ? 2 : 1);
    int bad = rc != 0, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, cm->world);
    const char *names[16];
    double vals[16];
    int nm = 0;
    double t0 = MPI_Wtime();
    if (!any) rc = cross_predict_all(&x, &ds, pairs, n, batch, cm->world, pred);
    if (!any && !rc && task == T_CORR) {
        ag_xeval_corr r;
        rc = ag_xeval_correlation(pred, gold_f, (size_t)n, &r);
        if (!rc) {
            put(names, vals, &nm, "spearman", r.spearman);
            put(names, vals, &nm, "pearson", r.pearson);
        }
    } else if (!any && !rc) {
        ag_xeval_class r;
        rc = ag_xeval_classification(pred, L, gold_i, (size_t)n, &r);
        if (!rc && L == 1) {
            put(names, vals, &nm, "average_precision", r.average_precision);
            put(names, vals, &nm, "accuracy", r.accuracy);
            put(names, vals, &nm, "accuracy_threshold", r.accuracy_threshold);
            put(names, vals, &nm, "f1", r.f1);
            put(names, vals, &nm, "f1_threshold", r.f1_threshold);
            put(names, vals, &nm, "precision", r.precision);
            put(names, vals, &nm, "recall", r.recall);
        } else if (!rc) {
            put(names, vals, &nm, "f1_macro", r.f1_macro);
            put(names, vals, &nm, "f1_micro", r.f1_micro);
            put(names, vals, &nm, "f1_weighted", r.f1_weighted);
            put(names, vals, &nm, "accuracy", r.accuracy);
        }
    }
    if (!any && !rc && cm->rank == 0) {
        printf("Cross-encoder %s evaluation of %s (%d label%s) on %s (%lld pairs)\n\n",
               task == T_CORR ? "correlation" : "classification", file, L, L == 1 ? "" : "s", name, (long long)n);
        printf("| metric | value |\n|---|---|\n");
        for (int i = 0; i < nm; i++) printf("| %s | %.4f |\n", names[i], vals[i]);
        printf("\n(%.2f s on %d rank%s)\n", MPI_Wtime() - t0, cm->size, cm->size == 1 ? "" : "s");
        if (csv) rc = write_csv(csv, nm, names, vals);
        fflush(stdout);
    }
    if (rc) fprintf(stderr, "argent eval: %s\n", ag_errmsg());
    bad = rc != 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, cm->world);
    free(pairs); free(gold_f); free(gold_i); free(pred);
    ag_dataset_free(&ds);
    if (have_x) ag_cross_free(&x);
    return any ? 1 : 0;
}

int ag_cmd_eval(int argc, char **argv) {
    ag_cli c;
    int early = ag_run_parse(&c, "argent eval", "Evaluate a bi-encoder (STS correlations, binary classification) or a cross-\n"
                            "encoder (correlation, classification) on a pair dataset, as sentence-transformers'\n"
                            "evaluators; a table, and CSV with --csv.",
                            eval_opts, argc, argv);
    if (early >= 0) return early;
    int rc = 0;
    static const char *const tasks[] = {"sts", "binary", "correlation", "classification", NULL};
    int task = -1;
    long batch = 32, max_len = 0;
    if (c.npos) rc = ag_err("unexpected argument '%s' (see --help)", c.pos[0]);
    if (!rc) rc = ag_cli_choice(&c, "task", tasks, &task);
    if (!rc) rc = ag_run_encode_opts(&c, &batch, &max_len);
    early = ag_run_begin(&c, "argent eval", rc, &argc, &argv);
    if (early >= 0) return early;
    const ag_comm *cm = ag_comm_get();
    const char *model = ag_cli_str(&c, "model"), *data = ag_cli_str(&c, "data"), *csv = ag_cli_str(&c, "csv");
    const char *name = ag_cli_str(&c, "name") ? ag_cli_str(&c, "name") : data;
    /* The checkpoint's kind decides the evaluators. */
    int kind = -1;
    {
        char file[4200];
        ag_model_desc info;
        ag_model_desc_init(&info);
        rc = ag_cross_resolve(model, file, sizeof file);
        if (!rc) rc = ag_ckpt_read_info(file, &info, NULL, NULL);
        if (!rc) kind = info.kind;
        ag_model_desc_free(&info);
    }
    if (!rc && kind == AG_MODEL_CROSS_ENCODER) {
        rc = eval_cross(model, data, name, csv, task, (int)batch, (int)max_len, cm);
        ag_cli_free(&c);
        ag_comm_finalize();
        return rc;
    }
    if (!rc && task >= T_CORR)
        rc = ag_err("--task %s evaluates a cross-encoder, and %s is a %s checkpoint (use --task sts or binary)",
                    tasks[task], model, ag_model_kind_name((ag_model_kind)kind));
    if (task < 0) task = T_STS;
    ag_bi_input in;
    ag_bi_input_init(&in);
    if (!rc) rc = ag_bi_input_open(&in, model, data, (int)max_len, "eval");
    const ag_dataset *ds = &in.ds;
    if (!rc && task == 1)
        for (int64_t i = 0; i < ds->n_pairs; i++)
            if (isfinite(ds->label[i]) && ds->label[i] != 0 && ds->label[i] != 1) {
                rc = ag_err("%s: pair %lld (line %lld) has label %g; --task binary needs labels 0 or 1", data,
                            (long long)i, (long long)ds->line[i], ds->label[i]);
                break;
            }
    int bad = rc != 0, any = 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, cm->world);
    const char *names[64];
    char namebuf[64][48];
    double vals[64];
    int nm = 0;
    int64_t n = 0;
    double t0 = MPI_Wtime();
    if (!any && task == 0) {
        ag_sts_result r;
        rc = ag_sts_dataset(&in.enc, ds, (int)batch, cm->world, &r, &n);
        if (!rc && cm->rank == 0) {
            printf("STS evaluation of %s on %s (%lld pairs)\n\n", model, name, (long long)n);
            printf("| similarity | Pearson | Spearman |\n|---|---|---|\n");
            for (int f = 0; f < AG_SIM_COUNT; f++) {
                printf("| %s | %.4f | %.4f |\n", ag_sim_name((ag_sim_fn)f), r.pearson[f], r.spearman[f]);
                snprintf(namebuf[nm], 48, "pearson_%s", ag_sim_name((ag_sim_fn)f));
                vals[nm++] = r.pearson[f];
                snprintf(namebuf[nm], 48, "spearman_%s", ag_sim_name((ag_sim_fn)f));
                vals[nm++] = r.spearman[f];
            }
            printf("| max | %.4f | %.4f |\n", r.pearson_max, r.spearman_max);
            snprintf(namebuf[nm], 48, "pearson_max");
            vals[nm++] = r.pearson_max;
            snprintf(namebuf[nm], 48, "spearman_max");
            vals[nm++] = r.spearman_max;
        }
    } else if (!any) {
        float *u, *v, *y;
        rc = encode_pairs(&in.enc, ds, (int)batch, cm->world, &u, &v, &y, &n);
        int *lab = rc ? NULL : malloc((size_t)(n ? n : 1) * sizeof *lab);
        if (!rc && !lab) rc = ag_err("out of memory");
        for (int64_t i = 0; i < n && lab; i++) lab[i] = y[i] != 0;
        ag_binclf_result r;
        if (!rc) rc = ag_eval_binary(u, v, lab, (size_t)n, in.enc.C, &r);
        if (!rc && cm->rank == 0) {
            printf("Binary classification evaluation of %s on %s (%lld pairs)\n\n", model, name, (long long)n);
            printf("| similarity | accuracy | threshold | F1 | precision | recall | threshold | AP | MCC |\n"
                   "|---|---|---|---|---|---|---|---|---|\n");
            static const char *const mnames[] = {"accuracy", "accuracy_threshold", "f1", "precision", "recall",
                                                 "f1_threshold", "ap", "mcc"};
            /* ST's order and names: cosine, dot, manhattan, euclidean; then max_*. */
            static const int order[AG_SIM_COUNT] = {AG_SIM_COSINE, AG_SIM_DOT, AG_SIM_MANHATTAN, AG_SIM_EUCLIDEAN};
            for (int k = 0; k <= AG_SIM_COUNT; k++) {
                const ag_binclf_metrics *b = k < AG_SIM_COUNT ? &r.fn[order[k]] : &r.max;
                const char *fn = k < AG_SIM_COUNT ? ag_sim_name((ag_sim_fn)order[k]) : "max";
                double mv[8] = {b->accuracy, b->accuracy_threshold, b->f1, b->precision, b->recall, b->f1_threshold,
                                b->ap, b->mcc};
                printf("| %s | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f | %.4f |\n", fn, mv[0], mv[1], mv[2],
                       mv[3], mv[4], mv[5], mv[6], mv[7]);
                for (int j = 0; j < 8; j++) {
                    snprintf(namebuf[nm], 48, k < AG_SIM_COUNT ? "%s_%s" : "%s_%s", fn, mnames[j]);
                    vals[nm++] = mv[j];
                }
            }
        }
        free(u); free(v); free(y); free(lab);
    }
    if (!any && !rc && cm->rank == 0) {
        printf("\n(%.2f s on %d rank%s)\n", MPI_Wtime() - t0, cm->size, cm->size == 1 ? "" : "s");
        for (int i = 0; i < nm; i++) names[i] = namebuf[i];
        if (csv) rc = write_csv(csv, nm, names, vals);
        fflush(stdout);
    }
    if (rc) fprintf(stderr, "argent eval: %s\n", ag_errmsg());
    bad = rc != 0;
    MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, cm->world);
    ag_bi_input_free(&in);
    ag_cli_free(&c);
    ag_comm_finalize();
    return any ? 1 : 0;
}
