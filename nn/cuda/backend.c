/* The CUDA backend's state and glue: device discovery and initialisation, the record of
 * the first failure inside an op (ops return nothing, see nn/ops.h), grow-only scratch,
 * the memory ops of the table, and the row-major cuBLAS matrix product everything uses. */
#include <dlfcn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/cuda/amp.h"
#include "nn/cuda/cuda.h"
#include "nn/cuda/internal.h"
#include "nn/error.h"

#ifndef AG_CUDA_ARCHS
#define AG_CUDA_ARCHS "(unknown)"
#endif

static struct {
    int ready, init_failed, device, sms, tf32, tf32_set;
    ag_precision prec;  /* operand precision of matrix products (nn/cuda/amp.h) */
    int prec_set;
    cudaStream_t stream;
    cublasHandle_t blas;
    void *scr[AG_CUDA_SCR_N];
    size_t cap[AG_CUDA_SCR_N];
    char err[1024];  /* first failure since the last ag_cuda_check; "" when none */
} g = {.device = -1};

/* ---------------------------------------------------------------- errors */

void ag_cuda_fail(const char *op, const char *fmt, ...) {
    if (g.err[0]) return;  /* later failures are usually consequences of the first */
    int k = snprintf(g.err, sizeof g.err, "cuda %s: ", op);
    if (k < 0 || (size_t)k >= sizeof g.err) return;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(g.err + k, sizeof g.err - (size_t)k, fmt, ap);
    va_end(ap);
}

void ag_cuda_launched(const char *op) {
    cudaError_t e = cudaGetLastError();
    if (e != cudaSuccess)
        ag_cuda_fail(op, "kernel launch failed: %s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
}

int ag_cuda_check(void) {
    if (g.ready) {
        cudaError_t e = cudaStreamSynchronize(g.stream);
        if (e != cudaSuccess)
            ag_cuda_fail("sync", "queued GPU work failed: %s (%s); the first op reporting it, or "
                         "one queued before it, went wrong", cudaGetErrorString(e), cudaGetErrorName(e));
        e = cudaGetLastError();
        if (e != cudaSuccess) ag_cuda_fail("sync", "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
    }
    if (!g.err[0]) return 0;
    ag_err("%s", g.err);
    g.err[0] = 0;
    return -1;
}

/* ---------------------------------------------------------------- devices */

/* cudaGetDeviceCount failed. The runtime says "driver version is insufficient" both when
 * the driver is old and when there is none at all; tell the two apart. */
static void describe_no_driver(char *buf, size_t n, cudaError_t e) {
    int drv = 0, rt = 0;
    cudaRuntimeGetVersion(&rt);
    void *lib = dlopen("libcuda.so.1", RTLD_LAZY | RTLD_LOCAL);
    if (!lib) {
        snprintf(buf, n, "no NVIDIA driver on this machine (libcuda.so.1 cannot be loaded; %s)",
                 cudaGetErrorName(e));
        return;
    }
    dlclose(lib);
    if (e == cudaErrorInsufficientDriver && cudaDriverGetVersion(&drv) == cudaSuccess && drv > 0)
        snprintf(buf, n, "the NVIDIA driver supports CUDA %d.%d, older than the CUDA %d.%d runtime "
                 "this build uses (%s)", drv / 1000, drv % 1000 / 10, rt / 1000, rt % 1000 / 10,
                 cudaGetErrorName(e));
    else
        snprintf(buf, n, "no usable CUDA driver or device: %s (%s)", cudaGetErrorString(e),
                 cudaGetErrorName(e));
}

int ag_cuda_available(char *why, size_t n) {
    char buf[512];
    int count = 0, ok = 0;
    cudaError_t e = cudaGetDeviceCount(&count);
    if (e != cudaSuccess) {
        describe_no_driver(buf, sizeof buf, e);
        cudaGetLastError();  /* not sticky: leave nothing for a later check to trip over */
    } else if (count == 0) {
        const char *vis = getenv("CUDA_VISIBLE_DEVICES");
        snprintf(buf, sizeof buf, "0 CUDA devices visible%s%s%s", vis ? " (CUDA_VISIBLE_DEVICES=" : "",
                 vis ? vis : "", vis ? ")" : "");
    } else {
        int dev = 0;
        struct cudaDeviceProp prop;
        cudaGetDevice(&dev);
        e = cudaGetDeviceProperties(&prop, dev);
        if (e != cudaSuccess) {
            snprintf(buf, sizeof buf, "cannot query CUDA device %d: %s", dev, cudaGetErrorString(e));
            cudaGetLastError();
        } else {
            snprintf(buf, sizeof buf, "%d CUDA device(s); device %d: %s, compute capability %d.%d, "
                     "%.1f GiB, %d SMs", count, dev, prop.name, prop.major, prop.minor,
                     (double)prop.totalGlobalMem / 1073741824.0, prop.multiProcessorCount);
            ok = 1;
        }
    }
    if (why && n) snprintf(why, n, "%s", buf);
    return ok;
}

static void apply_math_mode(void) {
    if (g.blas) cublasSetMathMode(g.blas, g.tf32 ? CUBLAS_TF32_TENSOR_OP_MATH : CUBLAS_DEFAULT_MATH);
}

void ag_cuda_set_tf32(int on) {
    g.tf32 = on != 0;
    g.tf32_set = 1;
    apply_math_mode();
}
int ag_cuda_tf32(void) { return g.tf32; }

int ag_cuda_set_precision(ag_precision p) {
    if (p != AG_PREC_FP32 && p != AG_PREC_BF16 && p != AG_PREC_FP16)
        return ag_err("ag_cuda_set_precision: unknown precision %d (fp32, bf16 or fp16)", (int)p);
    g.prec = p;
    g.prec_set = 1;
    return 0;
}
ag_precision ag_cuda_precision(void) { return g.prec; }

static void release(void) {
    if (g.stream) cudaStreamSynchronize(g.stream);
    for (int i = 0; i < AG_CUDA_SCR_N; i++) {
        if (g.scr[i]) cudaFree(g.scr[i]);
        g.scr[i] = NULL;
        g.cap[i] = 0;
    }
    if (g.blas) cublasDestroy(g.blas);
    if (g.stream) cudaStreamDestroy(g.stream);
    g.blas = NULL;
    g.stream = NULL;
    g.ready = 0;
    cudaGetLastError();
}

int ag_cuda_init(int device) {
    if (g.ready) {
        if (device >= 0 && device != g.device)
            return ag_err("cuda: backend already initialised on device %d; device %d asked for "
                          "(one device per process)", g.device, device);
        return 0;
    }
    char why[512];
    if (!ag_cuda_available(why, sizeof why)) return ag_err("cuda: %s", why);
    cudaError_t e;
    if (device >= 0 && (e = cudaSetDevice(device)) != cudaSuccess) {
        cudaGetLastError();
        return ag_err("cuda: cannot use device %d: %s", device, cudaGetErrorString(e));
    }
    cudaGetDevice(&g.device);
    int major = 0, minor = 0;
    cudaDeviceGetAttribute(&g.sms, cudaDevAttrMultiProcessorCount, g.device);
    cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, g.device);
    cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, g.device);
    if ((e = cudaStreamCreate(&g.stream)) != cudaSuccess) {
        g.stream = NULL;
        release();
        return ag_err("cuda: cannot create a stream on device %d: %s", g.device, cudaGetErrorString(e));
    }
    /* A first launch tells apart "no GPU" from "GPU, but not one this build targets". */
    e = ag_cuda_probe(g.stream);
    if (e != cudaSuccess) {
        release();
        if (e == cudaErrorNoKernelImageForDevice || e == cudaErrorInvalidPtx ||
            e == cudaErrorUnsupportedPtxVersion)
            return ag_err("cuda: this build holds no code that device %d (compute capability %d.%d) "
                          "can run; it was built for CUDA architectures %s: reconfigure with "
                          "-DCMAKE_CUDA_ARCHITECTURES=%d%d and rebuild (%s)", g.device, major, minor,
                          AG_CUDA_ARCHS, major, minor, cudaGetErrorString(e));
        return ag_err("cuda: a test kernel failed on device %d: %s (%s)", g.device,
                      cudaGetErrorString(e), cudaGetErrorName(e));
    }
    cublasStatus_t s = cublasCreate(&g.blas);
    if (s != CUBLAS_STATUS_SUCCESS) {
        g.blas = NULL;
        release();
        return ag_err("cuda: cuBLAS did not initialise: %s", cublasGetStatusString(s));
    }
    cublasSetStream(g.blas, g.stream);
    if (!g.tf32_set) {
        const char *t = getenv("ARGENT_CUDA_TF32");
        g.tf32 = t && atoi(t) > 0;
    }
    apply_math_mode();
    if (!g.prec_set) {
        const char *p = getenv("ARGENT_CUDA_PRECISION");
        ag_precision v = AG_PREC_FP32;
        if (p && *p && ag_precision_parse(p, &v) != 0) {
            ag_err_ctx("ARGENT_CUDA_PRECISION");
            char msg[512];
            snprintf(msg, sizeof msg, "%s", ag_errmsg());
            release();
            return ag_err("cuda: %s", msg);
        }
        g.prec = v;
    }
    g.ready = 1;
    g.init_failed = 0;
    return 0;
}

int ag_cuda_ready(void) {
    if (g.ready) return 1;
    if (g.init_failed) return 0;
    if (ag_cuda_init(-1)) {
        g.init_failed = 1;
        ag_cuda_fail("init", "%s", ag_errmsg());
        return 0;
    }
    return 1;
}

void ag_cuda_shutdown(void) {
    release();
    g.init_failed = 0;
}

cudaStream_t ag_cuda_stream(void) { return g.stream; }
cublasHandle_t ag_cuda_blas(void) { return g.blas; }
int ag_cuda_sm_count(void) { return g.sms > 0 ? g.sms : 1; }

unsigned ag_cuda_blocks(size_t n, int threads) {
    size_t b = (n + (size_t)threads - 1) / (size_t)threads;
    /* Enough blocks to fill every SM many times over; grid-stride loops do the rest. */
    size_t cap = (size_t)ag_cuda_sm_count() * 32;
    if (b > cap) b = cap;
    return b ? (unsigned)b : 1u;
}

void *ag_cuda_scratch(int slot, size_t bytes) {
    if (slot < 0 || slot >= AG_CUDA_SCR_N) return NULL;
    if (bytes <= g.cap[slot] && g.scr[slot]) return g.scr[slot];
    /* Queued ops may still read the old buffer. */
    cudaStreamSynchronize(g.stream);
    if (g.scr[slot]) cudaFree(g.scr[slot]);
    g.scr[slot] = NULL;
    g.cap[slot] = 0;
    size_t want = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    if (cudaMalloc(&g.scr[slot], want) != cudaSuccess) {
        cudaGetLastError();
        g.scr[slot] = NULL;
        ag_cuda_fail("scratch", "out of device memory for %zu bytes of scratch (slot %d)", want, slot);
        return NULL;
    }
    g.cap[slot] = want;
    return g.scr[slot];
}

/* ---------------------------------------------------------------- memory ops */

void *ag_cuda_alloc(size_t bytes) {
    if (bytes == 0 || !ag_cuda_ready()) return NULL;
    void *p = NULL;
    /* cudaMalloc aligns to at least 256 bytes (the table promises 64). A failure is the
     * caller's to report (NULL), not a recorded op failure. */
    if (cudaMalloc(&p, bytes) != cudaSuccess) {
        cudaGetLastError();
        return NULL;
    }
    return p;
}

void ag_cuda_free(void *ptr) {
    if (ptr) cudaFree(ptr);
}

static void check_call(const char *op, cudaError_t e) {
    if (e != cudaSuccess) ag_cuda_fail(op, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
}

void ag_cuda_zero(float *x, size_t n) {
    if (!n || !ag_cuda_ready()) return;
    check_call("zero", cudaMemsetAsync(x, 0, n * sizeof *x, g.stream));
}

void ag_cuda_copy(float *dst, const float *src, size_t n) {
    if (!n || dst == src || !ag_cuda_ready()) return;
    check_call("copy", cudaMemcpyAsync(dst, src, n * sizeof *dst, cudaMemcpyDeviceToDevice, g.stream));
}

/* Host transfers wait: the caller may free or reuse its host buffer on return. */
void ag_cuda_upload(void *dst, const void *host_src, size_t bytes) {
    if (!bytes || !ag_cuda_ready()) return;
    check_call("upload", cudaMemcpyAsync(dst, host_src, bytes, cudaMemcpyHostToDevice, g.stream));
    check_call("upload", cudaStreamSynchronize(g.stream));
}

void ag_cuda_download(void *host_dst, const void *src, size_t bytes) {
    if (!bytes || !ag_cuda_ready()) return;
    check_call("download", cudaMemcpyAsync(host_dst, src, bytes, cudaMemcpyDeviceToHost, g.stream));
    check_call("download", cudaStreamSynchronize(g.stream));
}

void ag_cuda_sync(void) {
    if (!g.ready) return;
    check_call("sync", cudaStreamSynchronize(g.stream));
}

void ag_cuda_copy2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols) {
    if (!rows || !cols || !ag_cuda_ready()) return;
    check_call("copy2d", cudaMemcpy2DAsync(dst, ldd * sizeof *dst, src, lds * sizeof *src,
                                           cols * sizeof *src, rows, cudaMemcpyDeviceToDevice, g.stream));
}

/* ---------------------------------------------------------------- matrix product */

void ag_cuda_gemm(const char *op, int ta, int tb, int M, int N, int K, float alpha,
                  const float *A, int lda, long long sA, const float *B, int ldb, long long sB,
                  float beta, float *C, int ldc, long long sC, int batch) {
    if (M <= 0 || N <= 0 || K <= 0 || batch <= 0 || !ag_cuda_ready()) return;
    /* Row-major C = op(A) op(B) is column-major C^T = op(B)^T op(A)^T: the same buffers
     * with the operands swapped; a row-major operand read column-major is its transpose. */
    cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
    cublasStatus_t s;
    if (g.prec == AG_PREC_BF16 || g.prec == AG_PREC_FP16) {
        /* Elements each operand spans: rows * ld of its stored layout, the last row only
         * as long as it is used, plus the batch strides. Gaps are cast too (harmless). */
        size_t nA = (size_t)((ta ? K : M) - 1) * (size_t)lda + (size_t)(ta ? M : K) + (size_t)(batch - 1) * (size_t)sA;
        size_t nB = (size_t)((tb ? N : K) - 1) * (size_t)ldb + (size_t)(tb ? K : N) + (size_t)(batch - 1) * (size_t)sB;
        void *A16 = ag_cuda_scratch(AG_CUDA_SCR_A16, nA * 2), *B16 = ag_cuda_scratch(AG_CUDA_SCR_B16, nB * 2);
        if (!A16 || !B16) return;
        ag_cuda_lowp_from_f32(g.prec, A16, A, nA);
        ag_cuda_lowp_from_f32(g.prec, B16, B, nB);
        cudaDataType t16 = g.prec == AG_PREC_BF16 ? CUDA_R_16BF : CUDA_R_16F;
        s = cublasGemmStridedBatchedEx(g.blas, ob, oa, N, M, K, &alpha, B16, t16, ldb, sB, A16, t16,
                                       lda, sA, &beta, C, CUDA_R_32F, ldc, sC, batch,
                                       CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS)
            ag_cuda_fail(op, "cuBLAS %s gemm %dx%dx%d (batch %d, ta %d, tb %d): %s",
                         ag_precision_name(g.prec), M, N, K, batch, ta, tb, cublasGetStatusString(s));
        return;
    }
    if (batch == 1)
        s = cublasSgemm(g.blas, ob, oa, N, M, K, &alpha, B, ldb, A, lda, &beta, C, ldc);
    else
        s = cublasSgemmStridedBatched(g.blas, ob, oa, N, M, K, &alpha, B, ldb, sB, A, lda, sA,
                                      &beta, C, ldc, sC, batch);
    if (s != CUBLAS_STATUS_SUCCESS)
        ag_cuda_fail(op, "cuBLAS sgemm %dx%dx%d (batch %d, ta %d, tb %d): %s", M, N, K, batch, ta,
                     tb, cublasGetStatusString(s));
}
