/* A plain, correct sgemm for the stand-alone GPU build when no OpenBLAS is available: the
 * CPU oracle then runs slower (the GPU checks use small CPU problems), never differently.
 * Row-major C[M,N] = alpha op(A) op(B) + beta C; column-major calls are the transposed
 * problem. beta == 0 never reads C (BLAS semantics: C may hold NaN). Rows of C run in
 * parallel; B is first copied to [K,N] row-major so the inner loop is contiguous. */
#include "cblas.h"

#include <stdlib.h>

static void sgemm_rm(int ta, int tb, int M, int N, int K, float alpha, const float *A, int lda,
                     const float *B, int ldb, float beta, float *C, int ldc) {
    if (M <= 0 || N <= 0) return;
    float *Bt = NULL;
    if (K > 0) {
        Bt = malloc((size_t)K * N * sizeof *Bt);
        if (!Bt) abort();  /* test-only code: no way to report through the BLAS interface */
        for (int p = 0; p < K; p++)
            for (int j = 0; j < N; j++) Bt[(size_t)p * N + j] = tb ? B[(size_t)j * ldb + p] : B[(size_t)p * ldb + j];
    }
    #pragma omp parallel for if ((size_t)M * N * (K > 0 ? K : 1) > 65536)
    for (int i = 0; i < M; i++) {
        float *c = C + (size_t)i * ldc;
        for (int j = 0; j < N; j++) c[j] = beta == 0.0f ? 0.0f : beta * c[j];
        for (int p = 0; p < K; p++) {
            float a = alpha * (ta ? A[(size_t)p * lda + i] : A[(size_t)i * lda + p]);
            const float *b = Bt + (size_t)p * N;
            for (int j = 0; j < N; j++) c[j] += a * b[j];
        }
    }
    free(Bt);
}

void cblas_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
                 float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc) {
    int at = ta != CblasNoTrans, bt = tb != CblasNoTrans;
    if (order == CblasRowMajor) sgemm_rm(at, bt, M, N, K, alpha, A, lda, B, ldb, beta, C, ldc);
    else sgemm_rm(bt, at, N, M, K, alpha, B, ldb, A, lda, beta, C, ldc);  /* C^T = op(B)^T op(A)^T */
}

/* The two OpenBLAS extensions nn/blas_env.c asks about: this stand-in is serial, and has
 * no CPU-specific kernels to name. */
char *openblas_get_corename(void);
int openblas_get_parallel(void);
char *openblas_get_corename(void) { return (char *)"fallback"; }
int openblas_get_parallel(void) { return 0; }
