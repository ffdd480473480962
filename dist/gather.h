/* Global in-batch negatives: all-gather of per-rank embedding blocks into one global [G,C]
 * matrix, and the reverse path that returns each embedding's gradient to its owner.
 *
 * Rank r owns rows [off_r, off_r + n_r) of the global matrix (blocks in rank order, sizes
 * may differ and may be 0). Forward: every rank gathers the full E [G,C]. Backward: each
 * rank computes the loss terms of ITS OWN rows only (for example its anchors' softmax over
 * all G candidates), which gives a full-size contribution dE_r [G,C] (non-zero wherever
 * its rows touched a candidate); the true gradient is dE = sum_r dE_r, and a
 * reduce-scatter with the same blocks sums the contributions and leaves each owner exactly
 * its rows of dE. So no rank computes any term twice, and the global loss is the sum of
 * the ranks' local terms (divide by G, not by n_r, for a global mean).
 *
 * Shapes: C channels (embedding width), G = sum of n_r global rows. */
#ifndef ARGENT_DIST_GATHER_H
#define ARGENT_DIST_GATHER_H
#include <mpi.h>
#include <stdint.h>

typedef struct {
    MPI_Comm comm;     /* the caller's, not duplicated: keep it alive while the plan lives */
    int rank, nranks;
    int64_t cols;      /* C */
    int64_t rows;      /* n_r of this rank */
    int64_t offset;    /* off_r: this rank's first global row */
    int64_t total;     /* G */
    int64_t *rank_rows, *rank_offset;  /* [nranks] */
    int *counts, *displs;              /* [nranks] in floats, for MPI */
} ag_gather_plan;

/* Collective: exchange block sizes (one MPI_Allgather). 0, or -1 with ag_errmsg() when the
 * ranks disagree on C or G*C exceeds MPI's int counts. */
int ag_gather_plan_init(ag_gather_plan *g, int64_t local_rows, int64_t cols, MPI_Comm comm);
void ag_gather_plan_free(ag_gather_plan *g);
/* Collective: local [n_r,C] -> global [G,C] on every rank (MPI_Allgatherv). */
int ag_gather_rows(const ag_gather_plan *g, const float *local, float *global);
/* Collective: contributions dglobal [G,C] (this rank's) -> dlocal [n_r,C] = the sum over
 * ranks of their contributions to this rank's rows (MPI_Reduce_scatter, SUM). dglobal is
 * not modified. */
int ag_scatter_grad(const ag_gather_plan *g, const float *dglobal, float *dlocal);
#endif
