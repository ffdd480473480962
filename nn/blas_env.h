/* OpenBLAS kernel selection. OpenBLAS (DYNAMIC_ARCH builds such as Debian's) picks its
 * kernels once, when the library loads, from the CPU model it recognises. On a CPU newer
 * than the library (seen here: a Sapphire Rapids VM reporting itself as "Intel Xeon
 * Processor" to OpenBLAS 0.3.21) it falls back to the generic Prescott kernels, several
 * times slower. Because the choice is made at load time, the fix from inside a program is
 * to set OPENBLAS_CORETYPE from the CPU's features and re-execute itself once.
 * Users can set OPENBLAS_CORETYPE themselves, or ARGENT_BLAS_REEXEC=0 to disable this. */
#ifndef ARGENT_NN_BLAS_ENV_H
#define ARGENT_NN_BLAS_ENV_H

/* The kernel family OpenBLAS is using ("SkylakeX", "Haswell", "Prescott", ...). */
const char *ag_blas_corename(void);
/* 1 when the OpenBLAS linked in is its OpenMP build: its threads are OpenMP's, and a call
 * made inside an OpenMP parallel region runs single-threaded in the calling thread, so
 * independent small products may be issued from an OpenMP loop (nn/ops_cpu.c attention).
 * 0 for the pthread or serial builds. */
int ag_blas_is_openmp(void);
/* If OpenBLAS fell back to generic kernels but the CPU supports AVX-512 (SkylakeX kernels)
 * or AVX2+FMA (Haswell kernels), set OPENBLAS_CORETYPE and execv this program again with
 * the same arguments. Returns only when no re-exec was needed or it failed (then the run
 * goes on with the slow kernels). Call first thing in main(). */
void ag_blas_tune_reexec(char **argv);
#endif
