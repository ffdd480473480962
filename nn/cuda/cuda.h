/* The CUDA backend's public interface: the op table ag_ops_cuda (same semantics as
 * ag_ops_cpu, on device pointers), device discovery and backend choice, the first-error
 * report for asynchronous GPU work, and helpers that mirror a host parameter table onto
 * the device. Plain C; the library is argent_cuda (nn/cuda/CMakeLists.txt), which exists
 * only when nvcc was found at configure time (CMake target check: if(TARGET argent_cuda)).
 *
 * Errors: ops return nothing (nn/ops.h), so a failed launch or allocation inside an op is
 * recorded (the first one wins) and reported by ag_cuda_check(), which also waits for
 * queued work. Call it where a step ends, before trusting results. */
#ifndef ARGENT_NN_CUDA_CUDA_H
#define ARGENT_NN_CUDA_CUDA_H
#include <stddef.h>

#include "nn/ops.h"
#include "nn/params.h"

#ifdef __cplusplus
extern "C" {
#endif

/* The op table; pointers are device pointers. Using it initialises the backend on first
 * use (device = the current CUDA device, normally 0). */
extern const ag_ops ag_ops_cuda;

/* 1 when a CUDA device can be used, writing a one-line description ("NVIDIA H200, cc 9.0,
 * 139.8 GiB, 132 SMs") to why; 0 when not, writing the reason ("no CUDA driver: ...",
 * "0 CUDA devices visible ..."). why may be NULL. Never initialises the backend. */
int ag_cuda_available(char *why, size_t n);

/* Initialise the backend on device `device` (-1: keep the current device): stream,
 * cuBLAS handle, and a test launch that proves this build's kernels run on that device.
 * 0, or -1 with ag_err saying why (no device, wrong architecture, out of memory). Calling
 * it again is cheap; a different device after a successful init is an error. */
int ag_cuda_init(int device);

/* Wait for every queued op; 0 when all of them ran, else -1 with ag_err naming the first
 * op that failed and the CUDA error. The recorded error is cleared once reported. */
int ag_cuda_check(void);

/* Free the backend's stream, cuBLAS handle and internal scratch (device memory the ops
 * allocated themselves). Tables and activations allocated through ag_ops_cuda.alloc stay
 * the caller's. A later op initialises the backend again. */
void ag_cuda_shutdown(void);

/* fp32 matrix products: 0 (default) keeps full fp32 in cuBLAS (the checking mode);
 * 1 allows TF32 tensor cores (about 10 bits of mantissa in the products, as torch's
 * allow_tf32). Environment ARGENT_CUDA_TF32=1 sets it at init. */
void ag_cuda_set_tf32(int on);
int ag_cuda_tf32(void);
/* Attention forward: 1 (default) runs the fused kernel where it applies (key length <= 128,
 * head size <= 128), 0 always the GEMM path (the reference). Environment
 * ARGENT_CUDA_FUSED_ATTENTION=0 sets 0 at first use. */
void ag_cuda_set_fused_attention(int on);
int ag_cuda_fused_attention(void);

/* Backend choice for a --device option: "cpu" -> &ag_ops_cpu; "cuda" -> &ag_ops_cuda after
 * ag_cuda_init, or NULL with ag_err ("--device cuda: no CUDA device (reason)") when no
 * usable GPU exists; "auto" (or NULL or "") -> CUDA when usable, else the CPU. Anything
 * else: NULL with ag_err naming the string and the accepted values. */
const ag_ops *ag_ops_select(const char *device);

/* Device copies of a host parameter table. mirror: dev gets its own copy of host's tensor
 * table and device buffers for data (uploaded from host->data) and grad (zeroed); dev must
 * not be initialised beforehand (it is overwritten). Free it with ag_cuda_params_free,
 * never ag_params_free. 0, or -1 with ag_err (out of device memory names the size). */
int ag_cuda_params_mirror(ag_params *dev, const ag_params *host);
/* Copy host->data (want_grad: host->grad too) into dev; the tables must have equal total. */
int ag_cuda_params_upload(ag_params *dev, const ag_params *host, int want_grad);
/* Copy dev's data and/or grad back into host's buffers (equal total required). Waits for
 * queued work first and reports any recorded error like ag_cuda_check. */
int ag_cuda_params_download(ag_params *host, const ag_params *dev, int want_data, int want_grad);
/* grad = 0 on the device (queued on the backend's stream, fp32 whatever the table). */
void ag_cuda_params_zero_grad(ag_params *dev);
void ag_cuda_params_free(ag_params *dev);

#ifdef __cplusplus
}
#endif
#endif
