/* The slice of the CBLAS interface argent uses (cblas_sgemm), for the stand-alone GPU build
 * on a machine where no OpenBLAS can be had (tests/gpu/CMakeLists.txt, ARGENT_GPU_BLAS=
 * fallback). Same names and values as every cblas.h, so the nn/ sources compile unchanged. */
#ifndef ARGENT_TESTS_GPU_FALLBACK_CBLAS_H
#define ARGENT_TESTS_GPU_FALLBACK_CBLAS_H

typedef enum { CblasRowMajor = 101, CblasColMajor = 102 } CBLAS_ORDER;
typedef enum { CblasNoTrans = 111, CblasTrans = 112, CblasConjTrans = 113 } CBLAS_TRANSPOSE;
typedef CBLAS_ORDER CBLAS_LAYOUT;

void cblas_sgemm(CBLAS_ORDER order, CBLAS_TRANSPOSE ta, CBLAS_TRANSPOSE tb, int M, int N, int K,
                 float alpha, const float *A, int lda, const float *B, int ldb, float beta,
                 float *C, int ldc);
#endif
