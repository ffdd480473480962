/* All-gather of uneven embedding blocks and the reduce-scatter of their gradients back to
 * the owners; see gather.h. */
#include "dist/gather.h"

#include "nn/error.h"

#include <limits.h>
#include <stdlib.h>
#include <string.h>

int ag_gather_plan_init(ag_gather_plan *g, int64_t local_rows, int64_t cols, MPI_Comm comm) {
    memset(g, 0, sizeof *g);
    g->comm = comm;
    MPI_Comm_rank(comm, &g->rank);
    MPI_Comm_size(comm, &g->nranks);
    int P = g->nranks;
    int64_t mine[2] = { local_rows, cols };
    int64_t *all = malloc(2 * (size_t)P * sizeof *all);
    g->rank_rows = malloc((size_t)P * sizeof *g->rank_rows);
    g->rank_offset = malloc((size_t)P * sizeof *g->rank_offset);
    g->counts = malloc((size_t)P * sizeof *g->counts);
    g->displs = malloc((size_t)P * sizeof *g->displs);
    int ok = all && g->rank_rows && g->rank_offset && g->counts && g->displs, all_ok = 0;
    MPI_Allreduce(&ok, &all_ok, 1, MPI_INT, MPI_MIN, comm);
    if (!all_ok) { free(all); ag_gather_plan_free(g); return ag_err("ag_gather_plan_init: out of memory"); }
    MPI_Allgather(mine, 2, MPI_INT64_T, all, 2, MPI_INT64_T, comm);

    int64_t total = 0;
    for (int r = 0; r < P; r++) {
        int64_t n = all[2 * r], c = all[2 * r + 1];
        if (c != cols || c < 1 || n < 0) {
            int64_t bad_c = c, bad_n = n;
            free(all);
            ag_gather_plan_free(g);
            return ag_err("ag_gather_plan_init: rank %d gives %lld rows of %lld channels, rank %d "
                          "expects %lld channels and rows >= 0: all ranks must gather the same width",
                          r, (long long)bad_n, (long long)bad_c, g->rank, (long long)cols);
        }
        g->rank_rows[r] = n;
        g->rank_offset[r] = total;
        total += n;
    }
    free(all);
    if (total * cols > INT_MAX) {
        ag_gather_plan_free(g);
        return ag_err("ag_gather_plan_init: global matrix %lld x %lld exceeds MPI's int count limit",
                      (long long)total, (long long)cols);
    }
    for (int r = 0; r < P; r++) {
        g->counts[r] = (int)(g->rank_rows[r] * cols);
        g->displs[r] = (int)(g->rank_offset[r] * cols);
    }
    g->cols = cols;
    g->rows = local_rows;
    g->offset = g->rank_offset[g->rank];
    g->total = total;
    return 0;
}

void ag_gather_plan_free(ag_gather_plan *g) {
    free(g->rank_rows);
    free(g->rank_offset);
    free(g->counts);
    free(g->displs);
    g->rank_rows = g->rank_offset = NULL;
    g->counts = g->displs = NULL;
}

int ag_gather_rows(const ag_gather_plan *g, const float *local, float *global) {
    if (!g->counts) return ag_err("ag_gather_rows: plan not initialised");
    /* MPI wants a valid pointer even for an empty block. */
    static const float empty[1];
    const float *src = g->rows ? local : empty;
    if (MPI_Allgatherv(src, g->counts[g->rank], MPI_FLOAT, global, g->counts, g->displs, MPI_FLOAT,
                       g->comm) != MPI_SUCCESS)
        return ag_err("ag_gather_rows: MPI_Allgatherv of %lld x %lld failed", (long long)g->total,
                      (long long)g->cols);
    return 0;
}

int ag_scatter_grad(const ag_gather_plan *g, const float *dglobal, float *dlocal) {
    if (!g->counts) return ag_err("ag_scatter_grad: plan not initialised");
    float empty[1];
    float *dst = g->rows ? dlocal : empty;
    /* Reduce_scatter with recvcounts = the gather counts: block r of the summed matrix goes
     * to rank r, which is exactly the rows it owns. */
    if (MPI_Reduce_scatter(dglobal, dst, g->counts, MPI_FLOAT, MPI_SUM, g->comm) != MPI_SUCCESS)
        return ag_err("ag_scatter_grad: MPI_Reduce_scatter of %lld x %lld failed", (long long)g->total,
                      (long long)g->cols);
    return 0;
}
