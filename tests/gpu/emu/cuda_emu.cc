// The CPU emulator's runtime (see cuda_emu.h): the kernel launch engine, barriers and
// warp exchange, and the subset of the CUDA runtime and cuBLAS APIs the backend calls,
// implemented on host memory (cuBLAS sgemm as column-major cblas_sgemm, so the backend's
// row-major-to-column-major mapping is checked as real cuBLAS would read it). It stands in
// for libcudart and libcublas at link time; nothing here runs in production.
//
// Threads of a kernel that synchronises run as fibers (ucontext) on the calling thread: a
// fiber runs until it reaches a barrier, then the next one runs; a barrier opens when all
// its threads have arrived. This is deterministic and cheap, and a deadlock (a barrier
// that can never open) is reported with the kernel's name instead of hanging. Builds with
// AddressSanitizer tell it about every stack switch (its fiber interface); ASan still
// prints its one-time "doesn't fully support makecontext/swapcontext" warning.
#include "tests/gpu/emu/cuda_emu.h"

#include <cblas.h>
#include <cublas_v2.h>
#include <cuda_runtime_api.h>
#include <stdio.h>
#include <stdlib.h>
#include <ucontext.h>

#include <map>
#include <mutex>
#include <vector>

#if defined(__SANITIZE_ADDRESS__)
#include <sanitizer/common_interface_defs.h>
#define EMU_ASAN 1
#else
#define EMU_ASAN 0
#endif

namespace agemu {

thread_local thread_ctx t;

namespace {

std::mutex mem_mu, atomic_mu;
std::map<uintptr_t, size_t> blocks;  // cudaMalloc'd [start, start + size)
cudaError_t last_error = cudaSuccess, sticky_error = cudaSuccess;

void set_error(cudaError_t e, bool sticky) {
    if (last_error == cudaSuccess) last_error = e;
    if (sticky && sticky_error == cudaSuccess) sticky_error = e;
}

// Bytes [p, p + n) inside one live block.
bool in_device(const void *p, size_t n) {
    std::lock_guard<std::mutex> g(mem_mu);
    uintptr_t a = (uintptr_t)p;
    auto it = blocks.upper_bound(a);
    if (it == blocks.begin()) return false;
    --it;
    return a >= it->first && a + n <= it->first + it->second;
}

/* ---------------------------------------------------------------- fibers */

constexpr size_t kStack = 256 * 1024;

struct gate {  // a barrier: opens (gen + 1) when `expected` fibers have arrived
    unsigned expected = 0, arrived = 0;
    unsigned long long gen = 0;
};

struct fiber {
    ucontext_t ctx;
    char *stack = nullptr;
    unsigned tid = 0;
    bool done = false;
};

struct block_run {
    const std::function<void()> *body;
    std::vector<fiber> fibers;
    gate all;
    std::vector<gate> warps;
    std::vector<unsigned char> slots;  // [warp][lane] 8-byte exchange slots
    ucontext_t sched;
    fiber *cur = nullptr;
    unsigned long long events = 0;     // gates opened + fibers finished: progress
    const void *sched_bottom = nullptr;
    size_t sched_size = 0;
};

block_run *run_now = nullptr;  // the block whose fibers are running (one at a time)
struct stacks {  // fiber stacks, reused by every launch, freed at exit
    std::vector<char *> v;
    ~stacks() { for (char *p : v) free(p); }
} stack_pool;

void to_scheduler(bool dying) {
    block_run *r = run_now;
    fiber *f = r->cur;
#if EMU_ASAN
    void *fake = nullptr;
    __sanitizer_start_switch_fiber(dying ? nullptr : &fake, r->sched_bottom, r->sched_size);
#endif
    if (dying) {
        setcontext(&r->sched);  // does not return
    }
    swapcontext(&f->ctx, &r->sched);
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(fake, &r->sched_bottom, &r->sched_size);
#endif
}

void fiber_main() {
    block_run *r = run_now;
#if EMU_ASAN
    __sanitizer_finish_switch_fiber(nullptr, &r->sched_bottom, &r->sched_size);
#endif
    (*r->body)();
    r->cur->done = true;
    r->events++;
    to_scheduler(true);
}

void gate_wait(gate &g) {
    unsigned long long gen = g.gen;
    if (++g.arrived == g.expected) {
        g.arrived = 0;
        g.gen++;
        run_now->events++;
        return;
    }
    while (g.gen == gen) to_scheduler(false);
}

unsigned linear_tid() { return t.thread.x + t.bdim.x * (t.thread.y + t.bdim.y * t.thread.z); }

block_run *need_lockstep(const char *what) {
    if (!t.blk) {
        fprintf(stderr, "emu: kernel %s called %s but was launched as independent threads; "
                        "emu_rewrite.py did not see it synchronise (teach it the helper's name)\n",
                t.kernel ? t.kernel : "?", what);
        abort();
    }
    return (block_run *)t.blk;
}

void set_ids(unsigned tid, unsigned long long blk, dim3 g, dim3 b) {
    t.thread = make_uint3(tid % b.x, (tid / b.x) % b.y, tid / (b.x * b.y));
    t.block = make_uint3((unsigned)(blk % g.x), (unsigned)((blk / g.x) % g.y), (unsigned)(blk / ((unsigned long long)g.x * g.y)));
    t.bdim = b;
    t.gdim = g;
    t.lane = (int)(tid % 32);
}

// One block of a lockstep kernel: its threads as fibers, run round-robin until all finish.
// Returns false on a deadlock.
bool run_block(block_run &r, unsigned nthreads, unsigned long long blk, dim3 g, dim3 b, const char *name) {
    r.all = gate{nthreads, 0, 0};
    r.warps.assign((nthreads + 31) / 32, gate{});
    for (size_t w = 0; w < r.warps.size(); w++) {
        unsigned n = nthreads - 32 * (unsigned)w;
        r.warps[w].expected = n < 32 ? n : 32;
    }
    r.slots.assign(r.warps.size() * 32 * 8, 0);
    r.fibers.assign(nthreads, fiber{});
    while (stack_pool.v.size() < nthreads) {
        char *st = (char *)malloc(kStack);
        if (!st) { fprintf(stderr, "emu: out of memory for fiber stacks\n"); abort(); }
        stack_pool.v.push_back(st);
    }
    for (unsigned i = 0; i < nthreads; i++) {
        fiber &f = r.fibers[i];
        f.tid = i;
        f.stack = stack_pool.v[i];
        getcontext(&f.ctx);
        f.ctx.uc_stack.ss_sp = f.stack;
        f.ctx.uc_stack.ss_size = kStack;
        f.ctx.uc_link = nullptr;
        makecontext(&f.ctx, fiber_main, 0);
    }
    unsigned left = nthreads;
    while (left) {
        unsigned long long before = r.events;
        for (auto &f : r.fibers) {
            if (f.done) continue;
            set_ids(f.tid, blk, g, b);
            t.blk = &r;
            t.kernel = name;
            r.cur = &f;
#if EMU_ASAN
            void *fake = nullptr;
            __sanitizer_start_switch_fiber(&fake, f.stack, kStack);
#endif
            swapcontext(&r.sched, &f.ctx);
#if EMU_ASAN
            __sanitizer_finish_switch_fiber(fake, nullptr, nullptr);
#endif
            if (f.done) left--;
        }
        if (left && r.events == before) {
            fprintf(stderr, "emu: kernel %s: deadlock in block %llu (%u threads wait at barriers "
                            "that cannot open)\n", name, blk, left);
            return false;
        }
    }
    t.blk = nullptr;
    return true;
}

}  // namespace

void syncthreads() { gate_wait(need_lockstep("__syncthreads")->all); }

void syncwarp() { gate_wait(need_lockstep("__syncwarp")->warps[linear_tid() / 32]); }

void exchange(const void *in, void *out, size_t size, int src_lane) {
    block_run *r = need_lockstep("__shfl_xor_sync");
    unsigned tid = linear_tid(), w = tid / 32;
    unsigned char *slots = &r->slots[(size_t)w * 32 * 8];
    memcpy(slots + 8 * (tid % 32), in, size);
    gate_wait(r->warps[w]);
    memcpy(out, slots + 8 * (unsigned)src_lane, size);
    gate_wait(r->warps[w]);
}

float atomic_add(float *p, float v) {
    std::lock_guard<std::mutex> g(atomic_mu);
    float old = *p;
    *p = old + v;
    return old;
}

int is_device_ptr(const void *p) { return p == nullptr || in_device(p, 1); }

void bad_argument(const char *name, int index, const void *p) {
    fprintf(stderr, "emu: kernel %s: argument %d (%p) is not device memory\n", name, index, p);
    set_error(cudaErrorIllegalAddress, true);
}

void launch(const char *name, dim3 g, dim3 b, bool lockstep, const std::function<void()> &body) {
    unsigned long long nthreads = (unsigned long long)b.x * b.y * b.z;
    unsigned long long nblocks = (unsigned long long)g.x * g.y * g.z;
    // The limits of every GPU since compute capability 3.0.
    if (!nthreads || !nblocks || nthreads > 1024 || b.x > 1024 || b.y > 1024 || b.z > 64 ||
        g.x > 2147483647u || g.y > 65535 || g.z > 65535) {
        fprintf(stderr, "emu: kernel %s: invalid launch grid (%u,%u,%u) block (%u,%u,%u)\n", name,
                g.x, g.y, g.z, b.x, b.y, b.z);
        set_error(cudaErrorInvalidConfiguration, false);
        return;
    }
    if (sticky_error != cudaSuccess) return;  // a broken context runs nothing
    if (!lockstep) {
        // Threads that never synchronise can run one after another.
        for (unsigned long long blk = 0; blk < nblocks; blk++)
            for (unsigned tid = 0; tid < nthreads; tid++) {
                set_ids(tid, blk, g, b);
                t.blk = nullptr;
                t.kernel = name;
                body();
            }
        return;
    }
    // Blocks one after another (so __shared__ statics are never used by two at once).
    block_run r;
    r.body = &body;
    block_run *outer = run_now;
    run_now = &r;
    for (unsigned long long blk = 0; blk < nblocks; blk++)
        if (!run_block(r, (unsigned)nthreads, blk, g, b, name)) {
            set_error(cudaErrorLaunchFailure, true);
            break;
        }
    run_now = outer;
}

}  // namespace agemu

using agemu::in_device;
using agemu::set_error;

/* ------------------------------------------------------------------ CUDA runtime subset */

static const cudaStream_t kStream = (cudaStream_t)0x5EA3;  // any non-NULL token

cudaError_t CUDARTAPI cudaGetDeviceCount(int *count) { *count = 1; return cudaSuccess; }
cudaError_t CUDARTAPI cudaGetDevice(int *device) { *device = 0; return cudaSuccess; }
cudaError_t CUDARTAPI cudaSetDevice(int device) {
    return device == 0 ? cudaSuccess : (set_error(cudaErrorInvalidDevice, false), cudaErrorInvalidDevice);
}
cudaError_t CUDARTAPI cudaGetDeviceProperties(struct cudaDeviceProp *prop, int device) {
    if (device != 0) return cudaErrorInvalidDevice;
    memset(prop, 0, sizeof *prop);
    snprintf(prop->name, sizeof prop->name, "argent CUDA emulator (CPU fibers)");
    prop->major = 9;
    prop->minor = 0;
    prop->totalGlobalMem = (size_t)16 << 30;
    prop->multiProcessorCount = 1;
    return cudaSuccess;
}
cudaError_t CUDARTAPI cudaDeviceGetAttribute(int *value, enum cudaDeviceAttr attr, int device) {
    (void)device;
    switch (attr) {
    case cudaDevAttrMultiProcessorCount: *value = 1; break;  // keeps emulated grids small
    case cudaDevAttrComputeCapabilityMajor: *value = 9; break;
    case cudaDevAttrComputeCapabilityMinor: *value = 0; break;
    default: *value = 0;
    }
    return cudaSuccess;
}
cudaError_t CUDARTAPI cudaRuntimeGetVersion(int *v) { *v = CUDART_VERSION; return cudaSuccess; }
cudaError_t CUDARTAPI cudaDriverGetVersion(int *v) { *v = CUDART_VERSION; return cudaSuccess; }
cudaError_t CUDARTAPI cudaStreamCreate(cudaStream_t *s) { *s = kStream; return cudaSuccess; }
cudaError_t CUDARTAPI cudaStreamDestroy(cudaStream_t) { return cudaSuccess; }
cudaError_t CUDARTAPI cudaStreamSynchronize(cudaStream_t) { return agemu::sticky_error; }

cudaError_t CUDARTAPI cudaGetLastError(void) {
    cudaError_t e = agemu::last_error;
    agemu::last_error = agemu::sticky_error;  // sticky errors keep coming back, like CUDA's
    return e;
}
const char *CUDARTAPI cudaGetErrorName(cudaError_t e) {
    switch (e) {
    case cudaSuccess: return "cudaSuccess";
    case cudaErrorInvalidConfiguration: return "cudaErrorInvalidConfiguration";
    case cudaErrorIllegalAddress: return "cudaErrorIllegalAddress";
    case cudaErrorInvalidValue: return "cudaErrorInvalidValue";
    case cudaErrorMemoryAllocation: return "cudaErrorMemoryAllocation";
    case cudaErrorInvalidDevice: return "cudaErrorInvalidDevice";
    case cudaErrorLaunchFailure: return "cudaErrorLaunchFailure";
    default: return "cudaError(emulated)";
    }
}
const char *CUDARTAPI cudaGetErrorString(cudaError_t e) { return cudaGetErrorName(e); }

cudaError_t CUDARTAPI cudaMalloc(void **p, size_t size) {
    // Rounded like the driver's and aligned to 256 bytes; the rounding is not part of the
    // block, so an access past `size` still trips AddressSanitizer.
    *p = aligned_alloc(256, (size + 255) & ~(size_t)255);
    if (!*p) { set_error(cudaErrorMemoryAllocation, false); return cudaErrorMemoryAllocation; }
    std::lock_guard<std::mutex> g(agemu::mem_mu);
    agemu::blocks[(uintptr_t)*p] = size ? size : 1;
    return cudaSuccess;
}
cudaError_t CUDARTAPI cudaFree(void *p) {
    if (!p) return cudaSuccess;
    {
        std::lock_guard<std::mutex> g(agemu::mem_mu);
        auto it = agemu::blocks.find((uintptr_t)p);
        if (it == agemu::blocks.end()) {
            fprintf(stderr, "emu: cudaFree(%p): not a device allocation\n", p);
            set_error(cudaErrorInvalidValue, false);
            return cudaErrorInvalidValue;
        }
        agemu::blocks.erase(it);
    }
    free(p);
    return cudaSuccess;
}

cudaError_t CUDARTAPI cudaMemGetInfo(size_t *free_bytes, size_t *total_bytes) {
    size_t used = 0;
    {
        std::lock_guard<std::mutex> g(agemu::mem_mu);
        for (auto &b : agemu::blocks) used += b.second;
    }
    *total_bytes = (size_t)16 << 30;
    *free_bytes = used < *total_bytes ? *total_bytes - used : 0;
    return cudaSuccess;
}

static cudaError_t bad_copy(const char *what, const void *dst, const void *src, size_t n) {
    fprintf(stderr, "emu: %s of %zu bytes: dst %p or src %p is not where the direction says\n",
            what, n, dst, src);
    set_error(cudaErrorInvalidValue, false);
    return cudaErrorInvalidValue;
}

cudaError_t CUDARTAPI cudaMemsetAsync(void *p, int value, size_t n, cudaStream_t) {
    if (!in_device(p, n)) return bad_copy("cudaMemsetAsync", p, nullptr, n);
    memset(p, value, n);
    return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemcpyAsync(void *dst, const void *src, size_t n, enum cudaMemcpyKind kind,
                                      cudaStream_t) {
    bool d_dev = kind == cudaMemcpyHostToDevice || kind == cudaMemcpyDeviceToDevice;
    bool s_dev = kind == cudaMemcpyDeviceToHost || kind == cudaMemcpyDeviceToDevice;
    if (in_device(dst, n) != d_dev || in_device(src, n) != s_dev ||
        (!d_dev && in_device(dst, 1)) || (!s_dev && in_device(src, 1)))
        return bad_copy("cudaMemcpyAsync", dst, src, n);
    memmove(dst, src, n);
    return cudaSuccess;
}
cudaError_t CUDARTAPI cudaMemcpy2DAsync(void *dst, size_t dpitch, const void *src, size_t spitch,
                                        size_t width, size_t height, enum cudaMemcpyKind kind,
                                        cudaStream_t) {
    if (width > dpitch || width > spitch) {
        set_error(cudaErrorInvalidValue, false);
        return cudaErrorInvalidValue;
    }
    if (kind != cudaMemcpyDeviceToDevice || !in_device(dst, dpitch * (height - 1) + width) ||
        !in_device(src, spitch * (height - 1) + width))
        return bad_copy("cudaMemcpy2DAsync", dst, src, width * height);
    for (size_t r = 0; r < height; r++)
        memcpy((char *)dst + r * dpitch, (const char *)src + r * spitch, width);
    return cudaSuccess;
}

/* ------------------------------------------------------------------ cuBLAS subset */

struct cublasContext { int math; };

cublasStatus_t CUBLASWINAPI cublasCreate_v2(cublasHandle_t *h) {
    *h = new cublasContext{0};
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasDestroy_v2(cublasHandle_t h) {
    delete h;
    return CUBLAS_STATUS_SUCCESS;
}
cublasStatus_t CUBLASWINAPI cublasSetStream_v2(cublasHandle_t, cudaStream_t) { return CUBLAS_STATUS_SUCCESS; }
cublasStatus_t CUBLASWINAPI cublasSetMathMode(cublasHandle_t h, cublasMath_t mode) {
    h->math = (int)mode;
    return CUBLAS_STATUS_SUCCESS;
}
const char *CUBLASWINAPI cublasGetStatusString(cublasStatus_t s) {
    return s == CUBLAS_STATUS_SUCCESS ? "CUBLAS_STATUS_SUCCESS" : "CUBLAS_STATUS_INVALID_VALUE (emulated)";
}

// One column-major product C[m,n] = alpha op(A) op(B) + beta C, after cuBLAS's own argument
// checks and a check that every matrix lies in device memory.
static cublasStatus_t sgemm1(cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k,
                             float alpha, const float *A, int lda, const float *B, int ldb,
                             float beta, float *C, int ldc) {
    int arows = ta == CUBLAS_OP_N ? m : k, acols = ta == CUBLAS_OP_N ? k : m;
    int brows = tb == CUBLAS_OP_N ? k : n, bcols = tb == CUBLAS_OP_N ? n : k;
    if (m < 0 || n < 0 || k < 0 || lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) ||
        ldc < (m > 1 ? m : 1)) {
        fprintf(stderr, "emu: cublasSgemm: invalid sizes m %d n %d k %d lda %d ldb %d ldc %d\n", m, n,
                k, lda, ldb, ldc);
        return CUBLAS_STATUS_INVALID_VALUE;
    }
    if (!m || !n) return CUBLAS_STATUS_SUCCESS;
    size_t abytes = ((size_t)lda * (acols - 1) + arows) * sizeof(float);
    size_t bbytes = ((size_t)ldb * (bcols - 1) + brows) * sizeof(float);
    size_t cbytes = ((size_t)ldc * (n - 1) + m) * sizeof(float);
    if ((k && (!in_device(A, abytes) || !in_device(B, bbytes))) || !in_device(C, cbytes)) {
        fprintf(stderr, "emu: cublasSgemm: a matrix is not (wholly) in device memory\n");
        set_error(cudaErrorIllegalAddress, true);
        return CUBLAS_STATUS_EXECUTION_FAILED;
    }
    cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
    return CUBLAS_STATUS_SUCCESS;
}

cublasStatus_t CUBLASWINAPI cublasSgemm_v2(cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb,
                                           int m, int n, int k, const float *alpha, const float *A,
                                           int lda, const float *B, int ldb, const float *beta,
                                           float *C, int ldc) {
    return sgemm1(ta, tb, m, n, k, *alpha, A, lda, B, ldb, *beta, C, ldc);
}

cublasStatus_t CUBLASWINAPI cublasSgemmStridedBatched(cublasHandle_t, cublasOperation_t ta,
                                                      cublasOperation_t tb, int m, int n, int k,
                                                      const float *alpha, const float *A, int lda,
                                                      long long int sA, const float *B, int ldb,
                                                      long long int sB, const float *beta, float *C,
                                                      int ldc, long long int sC, int batch) {
    if (batch < 0) return CUBLAS_STATUS_INVALID_VALUE;
    for (int i = 0; i < batch; i++) {
        cublasStatus_t s = sgemm1(ta, tb, m, n, k, *alpha, A + sA * i, lda, B + sB * i, ldb, *beta,
                                  C + sC * i, ldc);
        if (s != CUBLAS_STATUS_SUCCESS) return s;
    }
    return CUBLAS_STATUS_SUCCESS;
}

// cublasGemmStridedBatchedEx for the backend's bf16/fp16 mode (16-bit A and B, fp32 C and
// compute): the operands are widened exactly to fp32 temporaries and multiplied by sgemm,
// which is what fp32 accumulation of exact 16-bit products computes (up to summation order).
static float emu_widen16(uint16_t h, cudaDataType t) {
    if (t == CUDA_R_16BF) {
        uint32_t u = (uint32_t)h << 16;
        float f;
        memcpy(&f, &u, sizeof f);
        return f;
    }
    uint32_t sign = (uint32_t)(h & 0x8000u) << 16, e = (h >> 10) & 0x1Fu, m = h & 0x3FFu, u;
    if (e == 0x1F) u = sign | 0x7F800000u | (m << 13);
    else if (e == 0) {
        float v = ldexpf((float)m, -24);
        return sign ? -v : v;
    } else u = sign | ((e + 112u) << 23) | (m << 13);
    float f;
    memcpy(&f, &u, sizeof f);
    return f;
}

cublasStatus_t CUBLASWINAPI cublasGemmStridedBatchedEx(
    cublasHandle_t, cublasOperation_t ta, cublasOperation_t tb, int m, int n, int k, const void *alpha,
    const void *A, cudaDataType At, int lda, long long int sA, const void *B, cudaDataType Bt, int ldb,
    long long int sB, const void *beta, void *C, cudaDataType Ct, int ldc, long long int sC, int batch,
    cublasComputeType_t ct, cublasGemmAlgo_t) {
    bool ok16 = (At == CUDA_R_16BF || At == CUDA_R_16F) && Bt == At;
    if (!ok16 || Ct != CUDA_R_32F || ct != CUBLAS_COMPUTE_32F || batch < 0 || m < 0 || n < 0 || k < 0) {
        fprintf(stderr, "emu: cublasGemmStridedBatchedEx: only 16-bit A/B with fp32 C and compute\n");
        return CUBLAS_STATUS_NOT_SUPPORTED;
    }
    int arows = ta == CUBLAS_OP_N ? m : k, acols = ta == CUBLAS_OP_N ? k : m;
    int brows = tb == CUBLAS_OP_N ? k : n, bcols = tb == CUBLAS_OP_N ? n : k;
    if (!m || !n || !k || !batch) return CUBLAS_STATUS_SUCCESS;
    size_t na = (size_t)lda * (acols - 1) + arows, nb = (size_t)ldb * (bcols - 1) + brows;
    std::vector<float> a32(na), b32(nb);
    for (int i = 0; i < batch; i++) {
        const uint16_t *a16 = (const uint16_t *)A + sA * i, *b16 = (const uint16_t *)B + sB * i;
        if (!in_device(a16, na * 2) || !in_device(b16, nb * 2)) {
            fprintf(stderr, "emu: cublasGemmStridedBatchedEx: a 16-bit matrix is not (wholly) in device memory\n");
            set_error(cudaErrorIllegalAddress, true);
            return CUBLAS_STATUS_EXECUTION_FAILED;
        }
        for (size_t j = 0; j < na; j++) a32[j] = emu_widen16(a16[j], At);
        for (size_t j = 0; j < nb; j++) b32[j] = emu_widen16(b16[j], Bt);
        float *c = (float *)C + sC * i;
        size_t cbytes = ((size_t)ldc * (n - 1) + m) * sizeof(float);
        if (lda < (arows > 1 ? arows : 1) || ldb < (brows > 1 ? brows : 1) || ldc < (m > 1 ? m : 1) ||
            !in_device(c, cbytes)) {
            fprintf(stderr, "emu: cublasGemmStridedBatchedEx: bad leading dimension or C not in device memory\n");
            return CUBLAS_STATUS_INVALID_VALUE;
        }
        cblas_sgemm(CblasColMajor, ta == CUBLAS_OP_N ? CblasNoTrans : CblasTrans,
                    tb == CUBLAS_OP_N ? CblasNoTrans : CblasTrans, m, n, k, *(const float *)alpha,
                    a32.data(), lda, b32.data(), ldb, *(const float *)beta, c, ldc);
    }
    return CUBLAS_STATUS_SUCCESS;
}
