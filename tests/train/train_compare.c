/* Helper of the train-bi tests: compares two training runs, or checks that a run's newest
 * checkpoint loads.
 *
 *   train_compare A B [--rel R] [--bitwise] [--from S]
 *       the per-step losses in A/metrics.jsonl and B/metrics.jsonl (the last line of a step
 *       wins, as after a resume) for steps >= S (default 1): every step of A must be in B
 *       and agree within relative R (default 1e-5) or bit for bit; then the final models
 *       A/model.h5 and B/model.h5, tensor by tensor (check_rel: max |a-b| / max |a|).
 *   train_compare --check-latest DIR
 *       DIR/checkpoints' newest checkpoint (if any) must load completely, optimizer moments
 *       included: what a resume after a crash needs. Prints its step.
 * Exit 0 when everything agrees, 1 otherwise. */
#include <jansson.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "io/checkpoint.h"
#include "io/hfmodel.h"
#include "nn/error.h"
#include "tests/support/check.h"

#define MAX_STEPS 100000

/* losses[step] from metrics.jsonl; has[step] = 1 where present. Returns the largest step. */
static long read_losses(const char *dir, double *loss, char *has) {
    char path[4200];
    snprintf(path, sizeof path, "%s/metrics.jsonl", dir);
    FILE *f = fopen(path, "r");
    if (!f) { printf("FAIL cannot open %s\n", path); exit(1); }
    char line[8192];
    long maxs = 0;
    while (fgets(line, sizeof line, f)) {
        json_error_t e;
        json_t *j = json_loads(line, 0, &e);
        if (!j) continue;
        json_t *s = json_object_get(j, "step"), *l = json_object_get(j, "loss");
        if (json_is_integer(s) && json_is_number(l)) {
            long st = (long)json_integer_value(s);
            if (st > 0 && st < MAX_STEPS) {
                loss[st] = json_number_value(l);
                has[st] = 1;
                if (st > maxs) maxs = st;
            }
        }
        json_decref(j);
    }
    fclose(f);
    return maxs;
}

static int load_model(const char *path, ag_model_desc *md, ag_bert *m, ag_params *p) {
    ag_model_desc_init(md);
    if (ag_ckpt_load_model(path, md, m, NULL, p, NULL)) {
        printf("FAIL loading %s: %s\n", path, ag_errmsg());
        return -1;
    }
    return 0;
}

static int check_latest(const char *run) {
    char dir[4200], path[4300];
    snprintf(dir, sizeof dir, "%s/checkpoints", run);
    int k = ag_ckpt_latest(dir, path, sizeof path);
    if (k < 0) { printf("FAIL newest checkpoint of %s: %s\n", dir, ag_errmsg()); return 1; }
    if (k == 0) { printf("ok   no checkpoint yet in %s\n", dir); return 0; }
    ag_model_desc md;
    ag_model_desc_init(&md);
    ag_train_state ts;
    int has_optim = 0, rc = ag_ckpt_read_info(path, &md, &ts, &has_optim);
    ag_bert m;
    ag_params p;
    ag_params_init(&p);
    if (!rc) rc = ag_model_register(&md, &m, &p, NULL) || ag_params_alloc(&p);
    float *mm = NULL, *vv = NULL;
    if (!rc) {
        mm = malloc(p.total * sizeof(float));
        vv = malloc(p.total * sizeof(float));
        rc = !mm || !vv || !has_optim || ag_ckpt_load(path, &md, &p, mm, vv);
    }
    if (rc) printf("FAIL newest checkpoint %s does not load: %s\n", path, ag_errmsg());
    else printf("ok   newest checkpoint %s loads (step %lld, moments included)\n", path, (long long)ts.step);
    free(mm);
    free(vv);
    if (p.data) ag_bert_free(&m);
    ag_params_free(&p);
    ag_model_desc_free(&md);
    return rc ? 1 : 0;
}

int main(int argc, char **argv) {
    if (argc == 3 && !strcmp(argv[1], "--check-latest")) return check_latest(argv[2]);
    if (argc < 3) {
        fprintf(stderr, "usage: train_compare A B [--rel R] [--bitwise] [--from S] | --check-latest DIR\n");
        return 2;
    }
    double rel = 1e-5;
    int bitwise = 0;
    long from = 1;
    for (int i = 3; i < argc; i++) {
        if (!strcmp(argv[i], "--rel") && i + 1 < argc) rel = atof(argv[++i]);
        else if (!strcmp(argv[i], "--bitwise")) bitwise = 1;
        else if (!strcmp(argv[i], "--from") && i + 1 < argc) from = atol(argv[++i]);
        else { fprintf(stderr, "train_compare: unknown option %s\n", argv[i]); return 2; }
    }
    double *la = calloc(MAX_STEPS, sizeof *la), *lb = calloc(MAX_STEPS, sizeof *lb);
    char *ha = calloc(MAX_STEPS, 1), *hb = calloc(MAX_STEPS, 1);
    long na = read_losses(argv[1], la, ha);
    read_losses(argv[2], lb, hb);
    check_true("reference run logged steps", na >= from);
    double worst = 0;
    long worst_step = 0, missing = 0, differ = 0;
    for (long s = from; s <= na; s++) {
        if (!ha[s]) continue;
        if (!hb[s]) { missing++; continue; }
        double r = fabs(la[s] - lb[s]) / fmax(fabs(la[s]), 1e-30);
        if (r > worst) { worst = r; worst_step = s; }
        if (bitwise ? memcmp(&la[s], &lb[s], sizeof(double)) != 0 : r > rel) differ++;
    }
    char msg[512];
    snprintf(msg, sizeof msg, "losses of steps %ld..%ld %s (worst relative difference %.3g at step %ld, %ld differ, "
             "%ld missing)", from, na, bitwise ? "bit-identical" : "within tolerance", worst, worst_step, differ, missing);
    check_true(msg, missing == 0 && differ == 0);

    char pa[4200], pb[4200];
    snprintf(pa, sizeof pa, "%s/model.h5", argv[1]);
    snprintf(pb, sizeof pb, "%s/model.h5", argv[2]);
    ag_model_desc ma, mb;
    ag_bert ba, bb;
    ag_params xa, xb;
    ag_params_init(&xa);
    ag_params_init(&xb);
    if (load_model(pa, &ma, &ba, &xa) || load_model(pb, &mb, &bb, &xb)) return 1;
    if (check_true("same tensor table", xa.n == xb.n && xa.total == xb.total)) {
        int bad = 0;
        double wr = 0, all_max = 0, all_diff = 0;
        for (int i = 0; i < xa.n; i++) {
            const float *a = ag_params_data(&xa, i), *b = ag_params_data(&xb, i);
            size_t n = xa.t[i].numel;
            if (bitwise) {
                if (memcmp(a, b, n * sizeof(float))) { printf("     tensor %s differs\n", xa.t[i].name); bad++; }
                continue;
            }
            double mx = 0, md = 0;
            for (size_t k = 0; k < n; k++) { mx = fmax(mx, fabs(a[k])); md = fmax(md, fabs((double)a[k] - b[k])); }
            double r = mx > 0 ? md / mx : md;
            all_max = fmax(all_max, mx);
            const char *kb = "attention.self.key.bias";
            size_t ln = strlen(xa.t[i].name), lk = strlen(kb);
            if (ln >= lk && !strcmp(xa.t[i].name + ln - lk, kb)) {
                /* A key bias adds the same q.b_k to every score of a softmax row, so it cannot
                 * change any output and its exact gradient is 0: what it gets is rounding noise,
                 * which AdamW scales up to steps of about lr. Across rank counts the noise
                 * differs, so this tensor is only required to be finite (it is compared bit for
                 * bit in --bitwise mode, and it does not affect the losses compared above). */
                if (!isfinite(md)) { printf("     tensor %s is not finite\n", xa.t[i].name); bad++; }
                else if (r > rel) printf("     (tensor %s: %.3g, a null direction: not compared)\n", xa.t[i].name, r);
                continue;
            }
            if (r > wr) wr = r;
            all_diff = fmax(all_diff, md);
        }
        /* The parameters as one vector (the flat buffer): max |a - b| / max |a|. */
        double whole = all_max > 0 ? all_diff / all_max : all_diff;
        if (!bitwise && !(whole <= rel)) bad++;
        snprintf(msg, sizeof msg, "final parameters %s (%d tensors; relative difference of the parameter vector %.3g, "
                 "worst single tensor %.3g)", bitwise ? "bit-identical" : "within tolerance", xa.n,
                 bitwise ? 0.0 : whole, wr);
        check_true(msg, bad == 0);
    }
    ag_bert_free(&ba);
    ag_bert_free(&bb);
    ag_params_free(&xa);
    ag_params_free(&xb);
    ag_model_desc_free(&ma);
    ag_model_desc_free(&mb);
    free(la); free(lb); free(ha); free(hb);
    return check_finish();
}
