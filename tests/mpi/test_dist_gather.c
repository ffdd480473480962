/* MPI test of the global-negatives all-gather and the reduce-scatter of its gradient, with
 * uneven blocks (one rank holds none). The synthetic loss is a multiple-negatives ranking
 * loss over the gathered positives: L = (1/G) sum_i [logsumexp_j(s a_i.p_j) - s a_i.p_i],
 * each rank computing the terms of its own anchors. Gradients w.r.t. the local anchors and
 * the local positives must equal the single-rank computation over the whole batch. */
#include "dist/comm.h"
#include "dist/gather.h"
#include "nn/error.h"
#include "tests/mpi/synth.h"
#include "tests/support/check.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

enum { C = 8 };
static const double SCALE = 20.0;

/* Rows per rank: uneven, rank 1 holds none. np=4 gives 2,0,4,5. */
static int64_t rows_of(int r) { return r % 3 == 1 ? 0 : r + 2; }

static float anchor(int64_t i, int c) { return 0.3f * synth_uniform(21, (uint64_t)i, (uint64_t)c); }
static float positive(int64_t i, int c) { return 0.3f * synth_uniform(22, (uint64_t)i, (uint64_t)c); }

/* Loss terms of anchor rows [r0, r1) against all G candidates P [G,C]: adds to the loss, to
 * dA [r1-r0, C] and to dP [G,C] (both in float, accumulated in double internally). */
static double mnr_rows(const float *A, int64_t r0, int64_t r1, const float *P, int64_t G,
                       float *dA, float *dP) {
    double loss = 0, *logit = malloc((size_t)G * sizeof *logit);
    for (int64_t i = r0; i < r1; i++) {
        const float *a = A + (i - r0) * C;
        double mx = -1e300;
        for (int64_t j = 0; j < G; j++) {
            double d = 0;
            for (int c = 0; c < C; c++) d += (double)a[c] * P[j * C + c];
            logit[j] = SCALE * d;
            if (logit[j] > mx) mx = logit[j];
        }
        double z = 0;
        for (int64_t j = 0; j < G; j++) z += exp(logit[j] - mx);
        loss += (mx + log(z) - logit[i]) / (double)G;
        for (int64_t j = 0; j < G; j++) {
            double g = (exp(logit[j] - mx) / z - (j == i)) * SCALE / (double)G;
            for (int c = 0; c < C; c++) {
                dA[(i - r0) * C + c] += (float)(g * P[j * C + c]);
                dP[j * C + c] += (float)(g * a[c]);
            }
        }
    }
    free(logit);
    return loss;
}

int main(int argc, char **argv) {
    if (ag_comm_init(&argc, &argv)) ag_fatal("init: %s", ag_errmsg());
    const ag_comm *c = ag_comm_get();

    int64_t n = rows_of(c->rank), G = 0, off = 0;
    for (int r = 0; r < c->size; r++) { if (r < c->rank) off += rows_of(r); G += rows_of(r); }
    float *A = malloc((size_t)(n ? n : 1) * C * sizeof(float));
    float *P = malloc((size_t)(n ? n : 1) * C * sizeof(float));
    for (int64_t i = 0; i < n; i++)
        for (int k = 0; k < C; k++) { A[i * C + k] = anchor(off + i, k); P[i * C + k] = positive(off + i, k); }

    ag_gather_plan g;
    check_true("plan init", ag_gather_plan_init(&g, n, C, c->world) == 0);
    check_true("plan: global rows and this rank's offset", g.total == G && g.offset == off && g.rows == n);

    /* Forward: every rank holds all positives, in global order. */
    float *Pg = malloc((size_t)G * C * sizeof(float)), *Pwant = malloc((size_t)G * C * sizeof(float));
    for (int64_t j = 0; j < G; j++)
        for (int k = 0; k < C; k++) Pwant[j * C + k] = positive(j, k);
    check_true("gather returns 0", ag_gather_rows(&g, P, Pg) == 0);
    check_true("gather: global matrix equals the whole batch, bit for bit", !memcmp(Pg, Pwant, (size_t)G * C * sizeof(float)));

    /* Backward: local terms, local dA, full-size dP contribution, reduce-scatter to owners. */
    float *dA = calloc((size_t)(n ? n : 1) * C, sizeof(float)), *dPg = calloc((size_t)G * C, sizeof(float));
    float *dP = calloc((size_t)(n ? n : 1) * C, sizeof(float));
    double loss_local = mnr_rows(A, off, off + n, Pg, G, dA, dPg), loss = 0;
    MPI_Allreduce(&loss_local, &loss, 1, MPI_DOUBLE, MPI_SUM, c->world);
    check_true("reduce-scatter returns 0", ag_scatter_grad(&g, dPg, dP) == 0);

    /* Single-rank reference over the whole batch. */
    float *Aall = malloc((size_t)G * C * sizeof(float));
    for (int64_t i = 0; i < G; i++)
        for (int k = 0; k < C; k++) Aall[i * C + k] = anchor(i, k);
    float *dAref = calloc((size_t)G * C, sizeof(float)), *dPref = calloc((size_t)G * C, sizeof(float));
    double loss_ref = mnr_rows(Aall, 0, G, Pwant, G, dAref, dPref);
    float lf = (float)loss, lr = (float)loss_ref;
    check_rel("loss: sum of local terms equals the global loss", &lf, &lr, 1, 1e-6);
    if (n > 0) {
        check_rel("grad of local anchors equals single-rank", dA, dAref + off * C, (size_t)n * C, 1e-5);
        check_rel("grad of local positives (reduce-scattered) equals single-rank", dP, dPref + off * C, (size_t)n * C, 1e-5);
    }

    /* Disagreeing widths are refused on every rank. */
    ag_gather_plan bad;
    int rc = ag_gather_plan_init(&bad, 1, c->rank == 0 ? 4 : 5, c->world);
    if (c->size > 1) check_true("plan: ranks with different widths fail together", rc == -1 && strstr(ag_errmsg(), "channels"));
    else { check_true("plan: width 4 on one rank is fine", rc == 0); ag_gather_plan_free(&bad); }

    ag_gather_plan_free(&g);
    free(A); free(P); free(Pg); free(Pwant); free(dA); free(dPg); free(dP); free(Aall); free(dAref); free(dPref);
    int mine = check_failed, worst = 0;
    MPI_Allreduce(&mine, &worst, 1, MPI_INT, MPI_MAX, c->world);
    int rcf = check_finish();
    ag_comm_finalize();
    return rcf ? rcf : worst ? 1 : 0;
}
