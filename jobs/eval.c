/* `argent eval`: evaluate a bi-encoder on a pair dataset, as sentence-transformers'
 * evaluators do: STS (EmbeddingSimilarityEvaluator: Pearson and Spearman of cosine,
 * -Manhattan, -Euclidean and dot similarities against the gold scores, and the maxima) or
 * binary classification (BinaryClassificationEvaluator: best-threshold accuracy, F1,
 * average precision per similarity). Prints a table; --csv writes metric,value rows.
 * Encoding is spread over the ranks (length-sorted batches; the numbers do not depend on
 * the rank count). */
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "dist/comm.h"
#include "jobs/cli.h"
#include "jobs/commands.h"
#include "jobs/encode.h"
#include "nn/error.h"
#include "nn/evaluate.h"

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
    {"model", "CKPT", "bi-encoder checkpoint (file, or a train-bi run directory: its model.h5)", NULL, 1},
    {"data", "PAIRS.h5", "pair dataset from argent prepare (pairs without a label are left out)", NULL, 1},
    {"task", "T", "sts (EmbeddingSimilarityEvaluator) or binary (BinaryClassificationEvaluator, labels 0/1)", "sts", 0},
    {"batch", "N", "sentences per encoding batch", "32", 0},
    {"max-length", "N", "tokens per text incl. [CLS]/[SEP] (default: the model's max_seq_length)", NULL, 0},
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

int ag_cmd_eval(int argc, char **argv) {
    ag_cli c;
    int rc = ag_cli_parse(&c, "argent eval", "Evaluate a bi-encoder on a pair dataset: STS correlations or binary\n"
                          "classification, as sentence-transformers' evaluators; a table, and CSV with --csv.",
                          eval_opts, argc, argv);
    if (rc) {
        if (rc < 0) fprintf(stderr, "%s\n", ag_errmsg());  /* the message names the command */
        return rc > 0 ? 0 : 2;
    }
    static const char *const tasks[] = {"sts", "binary", NULL};
    int task = 0;
    long batch = 32, max_len = 0;
    if (c.npos) rc = ag_err("unexpected argument '%s' (see --help)", c.pos[0]);
    if (!rc) rc = ag_cli_choice(&c, "task", tasks, &task) || ag_cli_long(&c, "batch", &batch) ||
                  ag_cli_long(&c, "max-length", &max_len);
    if (!rc && batch <= 0) rc = ag_err("--batch: expected a positive number, got %ld", batch);
    if (!rc && ag_cli_given(&c, "max-length") && max_len < 2) rc = ag_err("--max-length: expected at least 2, got %ld", max_len);
    if (rc) {
        fprintf(stderr, "argent eval: %s\n", ag_errmsg());
        ag_cli_free(&c);
        return 2;
    }
    if (ag_comm_init(&argc, &argv)) {
        fprintf(stderr, "argent eval: %s\n", ag_errmsg());
        ag_cli_free(&c);
        return 1;
    }
    const ag_comm *cm = ag_comm_get();
    const char *model = ag_cli_str(&c, "model"), *data = ag_cli_str(&c, "data"), *csv = ag_cli_str(&c, "csv");
    const char *name = ag_cli_str(&c, "name") ? ag_cli_str(&c, "name") : data;
    ag_model_desc md;
    ag_bert m;
    ag_params p;
    ag_dataset ds;
    ag_encoder enc;
    ag_model_desc_init(&md);
    ag_params_init(&p);
    ag_dataset_init(&ds);
    int have_model = 0;
    rc = ag_load_bi_encoder(model, &md, &m, &p);
    if (!rc) have_model = 1;
    if (!rc) rc = ag_dataset_read(data, &ds);
    if (!rc && ds.n_pairs == 0) rc = ag_err("%s: has no pairs (a dataset of sentences?); eval needs labelled pairs", data);
    if (!rc) rc = ag_check_dataset_vocab(&ds, data, &md);
    if (!rc) rc = ag_encoder_init(&enc, &m, &p, &md, (int)max_len);
    if (!rc && task == 1)
        for (int64_t i = 0; i < ds.n_pairs; i++)
            if (isfinite(ds.label[i]) && ds.label[i] != 0 && ds.label[i] != 1) {
                rc = ag_err("%s: pair %lld (line %lld) has label %g; --task binary needs labels 0 or 1", data,
                            (long long)i, (long long)ds.line[i], ds.label[i]);
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
        rc = ag_sts_dataset(&enc, &ds, (int)batch, cm->world, &r, &n);
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
        rc = encode_pairs(&enc, &ds, (int)batch, cm->world, &u, &v, &y, &n);
        int *lab = rc ? NULL : malloc((size_t)(n ? n : 1) * sizeof *lab);
        if (!rc && !lab) rc = ag_err("out of memory");
        for (int64_t i = 0; i < n && lab; i++) lab[i] = y[i] != 0;
        ag_binclf_result r;
        if (!rc) rc = ag_eval_binary(u, v, lab, (size_t)n, enc.C, &r);
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
    ag_dataset_free(&ds);
    if (have_model) { ag_bert_free(&m); ag_params_free(&p); }
    ag_model_desc_free(&md);
    ag_cli_free(&c);
    ag_comm_finalize();
    return any ? 1 : 0;
}
