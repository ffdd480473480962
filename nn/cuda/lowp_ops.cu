/* The 16-bit activation op tables "cuda-bf16" and "cuda-fp16" (nn/cuda/amp.h:
 * ag_cuda_ops_for): every entry of nn/ops.h with activations stored as __nv_bfloat16 /
 * __half (act_bytes 2), one implementation templated on the storage type. What stays fp32:
 * parameters and their gradients (the flat ag_params buffers), LayerNorm mean/rstd, the
 * attention key mask, attention probs and its backward scratch ([B,H,Tq,Tk], see nn/ops.h),
 * and all arithmetic: every kernel loads 16 bits, computes in fp32 (sums in fp64 where the
 * fp32 table's do) and rounds once on store.
 *
 *   linear     the fp32 weight is cast to 16 bits into grow-only scratch, the product runs
 *              as cublasGemmStridedBatchedEx with 16-bit operands, fp32 accumulation and
 *              an fp32 result (scratch), then one kernel adds the bias and rounds to 16
 *              bits (forward) or adds onto the 16-bit din (backward). dW is the same
 *              product written straight into the fp32 gradient with beta = 1 (the +=
 *              contract); db is a deterministic fp64 column sum of the 16-bit dout.
 *   embedding  the fp32 op into fp32 scratch, rounded once (forward); backward widens dout
 *              and scatters it with the fp32 op into the fp32 table gradients.
 *   attention  the fp32 op (nn/cuda/attention.cu: fp32 softmax, same dropout masks) on
 *              widened copies of q, k, v (exact), with its four products in the matching
 *              16-bit GEMM mode (ag_cuda_set_precision, restored after), so the products
 *              see 16-bit operands as torch.autocast's do; the result is rounded to 16
 *              bits (forward) or added onto the 16-bit gradients (backward). The simple,
 *              checkable version: a fused 16-bit kernel can replace it against the same tests.
 *   the rest   16-bit kernels: add, GELU, dropout forward and LayerNorm are the
 *              ag_cuda_lowp_* of elementwise.cu / layernorm.cu; acc, scale, acc2d, tanh and
 *              dropout backward launch the fp32 ops' templates (nn/cuda/kernels.cuh) on 16-bit
 *              storage from here. Dropout masks are the CPU's (same Philox draws).
 *
 * The optional fused forwards (linear_gelu_forward, add_layernorm_forward) are NULL: model
 * code composes the unfused ops. Errors are recorded like every op's (ag_cuda_check). */
#include <stdlib.h>
#include <string.h>

#include <type_traits>

/* nn/amp.h has no C++ guards of its own: include it with C linkage before kernels.cuh does. */
extern "C" {
#include "nn/amp.h"
}
#include "nn/cuda/kernels.cuh"

using namespace agk;

namespace {

/* out[N,OC] (16 bit) = c[N,OC] (fp32 product, may be NULL = 0) + b[OC] (may be NULL). */
template <typename T>
__global__ void lp_bias_round_kernel(T *out, const float *c, const float *b, size_t N, int OC) {
    size_t n = N * (size_t)OC;
    for (size_t i = gid(); i < n; i += gstride()) {
        float v = c ? c[i] : 0.0f;
        if (b) v += b[i % (size_t)OC];
        st(out, i, v);
    }
}

/* dst[n] (16 bit) += src[n] (fp32), one rounding. */
template <typename T> __global__ void lp_acc_f32_kernel(T *dst, const float *src, size_t n) {
    for (size_t i = gid(); i < n; i += gstride()) st(dst, i, ld(dst, i) + src[i]);
}

/* Column-sum functor for bias gradients over a 16-bit dout. */
template <typename T> struct lp_col_value {
    const T *x;
    int C;
    __device__ void operator()(int r, int c, double &a0, double &) const {
        a0 += ld(x, (size_t)r * C + c);
    }
};

/* Grow-only scratch of this file (the backend's slots belong to the fp32 ops, which the
 * wrappers here call). One host thread, one stream: a slot is reused op after op. */
enum { S_W16, S_C32, S_Q, S_K, S_V, S_O, S_DQ, S_DK, S_DV, S_N };
void *lp_scr[S_N];
size_t lp_cap[S_N];

void *scratch(int slot, size_t bytes) {
    if (bytes <= lp_cap[slot] && lp_scr[slot]) return lp_scr[slot];
    cudaStreamSynchronize(ag_cuda_stream());  /* queued ops may still read the old buffer */
    if (lp_scr[slot]) cudaFree(lp_scr[slot]);
    lp_scr[slot] = nullptr;
    lp_cap[slot] = 0;
    size_t want = (bytes + ((size_t)1 << 20) - 1) & ~(((size_t)1 << 20) - 1);
    if (cudaMalloc(&lp_scr[slot], want) != cudaSuccess) {
        cudaGetLastError();
        lp_scr[slot] = nullptr;
        ag_cuda_fail("scratch (16 bit)", "out of device memory for %zu bytes of scratch (slot %d)", want, slot);
        return nullptr;
    }
    lp_cap[slot] = want;
    return lp_scr[slot];
}

void check_call(const char *op, cudaError_t e) {
    if (e != cudaSuccess) ag_cuda_fail(op, "%s (%s)", cudaGetErrorString(e), cudaGetErrorName(e));
}

#define GRID(n) ag_cuda_blocks((n), kThreads), kThreads, 0, ag_cuda_stream()

template <typename T> struct lp {
    static constexpr ag_precision P = std::is_same<T, __nv_bfloat16>::value ? AG_PREC_BF16 : AG_PREC_FP16;
    static constexpr cudaDataType T16 = std::is_same<T, __nv_bfloat16>::value ? CUDA_R_16BF : CUDA_R_16F;

    /* Row-major C[M,N] (fp32) = alpha op(A) op(B) + beta C over `batch` matrices, A and B
     * 16-bit, fp32 accumulation: ag_cuda_gemm's mapping onto column-major cuBLAS. */
    static void gemm(const char *op, int ta, int tb, int M, int N, int K, float alpha, const T *A,
                     int lda, long long sA, const T *B, int ldb, long long sB, float beta, float *C,
                     int ldc, long long sC, int batch) {
        if (M <= 0 || N <= 0 || K <= 0 || batch <= 0) return;
        cublasOperation_t oa = ta ? CUBLAS_OP_T : CUBLAS_OP_N, ob = tb ? CUBLAS_OP_T : CUBLAS_OP_N;
        cublasStatus_t s = cublasGemmStridedBatchedEx(
            ag_cuda_blas(), ob, oa, N, M, K, &alpha, B, T16, ldb, sB, A, T16, lda, sA, &beta, C,
            CUDA_R_32F, ldc, sC, batch, CUBLAS_COMPUTE_32F, CUBLAS_GEMM_DEFAULT);
        if (s != CUBLAS_STATUS_SUCCESS)
            ag_cuda_fail(op, "cuBLAS %s gemm %dx%dx%d (batch %d, ta %d, tb %d): %s", ag_precision_name(P),
                         M, N, K, batch, ta, tb, cublasGetStatusString(s));
    }

    /* 16-bit copy of the fp32 weight W[n] in scratch, or NULL (recorded). */
    static const T *weight16(const float *W, size_t n) {
        T *w = (T *)scratch(S_W16, n * sizeof(T));
        if (w) ag_cuda_lowp_from_f32(P, w, W, n);
        return w;
    }
    /* Widened fp32 copy of a 16-bit activation in scratch slot `slot`, or NULL. */
    static float *widen(int slot, const float *x, size_t n) {
        float *w = (float *)scratch(slot, n * sizeof(float));
        if (w) ag_cuda_lowp_to_f32(P, w, x, n);
        return w;
    }
    static void acc_f32(const char *op, float *dst, const float *src, size_t n) {
        lp_acc_f32_kernel<T><<<GRID(n)>>>((T *)dst, src, n);
        ag_cuda_launched(op);
    }

    /* ---- memory ---- */
    static void zero(float *x, size_t n) {
        if (!n || !ag_cuda_ready()) return;
        check_call("zero (16 bit)", cudaMemsetAsync(x, 0, n * sizeof(T), ag_cuda_stream()));
    }
    static void copy(float *dst, const float *src, size_t n) {
        if (!n || dst == src || !ag_cuda_ready()) return;
        check_call("copy (16 bit)", cudaMemcpyAsync(dst, src, n * sizeof(T), cudaMemcpyDeviceToDevice,
                                                    ag_cuda_stream()));
    }
    static void copy2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols) {
        if (!rows || !cols || !ag_cuda_ready()) return;
        check_call("copy2d (16 bit)", cudaMemcpy2DAsync(dst, ldd * sizeof(T), src, lds * sizeof(T),
                                                        cols * sizeof(T), rows, cudaMemcpyDeviceToDevice,
                                                        ag_cuda_stream()));
    }
    /* Host fp32 <-> device 16 bit: rounded / widened on the host (ag_f32_to_bf16 etc. are
     * bit-identical to the device casts), moved as 2-byte elements. */
    static void upload_act(float *dst, const float *host_src, size_t n) {
        if (!n) return;
        uint16_t *h = (uint16_t *)malloc(n * sizeof *h);
        if (!h) {
            ag_cuda_fail("upload_act (16 bit)", "out of host memory staging %zu elements", n);
            return;
        }
        for (size_t i = 0; i < n; i++)
            h[i] = P == AG_PREC_BF16 ? ag_f32_to_bf16(host_src[i]) : ag_f32_to_f16(host_src[i]);
        ag_cuda_upload(dst, h, n * sizeof *h);
        free(h);
    }
    static void download_act(float *host_dst, const float *src, size_t n) {
        if (!n) return;
        uint16_t *h = (uint16_t *)malloc(n * sizeof *h);
        if (!h) {
            ag_cuda_fail("download_act (16 bit)", "out of host memory staging %zu elements", n);
            return;
        }
        ag_cuda_download(h, src, n * sizeof *h);
        for (size_t i = 0; i < n; i++)
            host_dst[i] = P == AG_PREC_BF16 ? ag_bf16_to_f32(h[i]) : ag_f16_to_f32(h[i]);
        free(h);
    }

    /* ---- elementwise ---- */
    static void add(float *out, const float *a, const float *b, size_t n) { ag_cuda_lowp_add(P, out, a, b, n); }
    static void acc(float *dst, const float *src, size_t n) {
        if (!n || !ag_cuda_ready()) return;
        acc_kernel<T><<<GRID(n)>>>((T *)dst, (const T *)src, n);
        ag_cuda_launched("acc (16 bit)");
    }
    static void scale(float *x, float alpha, size_t n) {
        if (!n || !ag_cuda_ready()) return;
        scale_kernel<T><<<GRID(n)>>>((T *)x, alpha, n);
        ag_cuda_launched("scale (16 bit)");
    }
    static void acc2d(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols) {
        if (!rows || !cols || !ag_cuda_ready()) return;
        acc2d_kernel<T><<<GRID(rows * cols)>>>((T *)dst, ldd, (const T *)src, lds, rows, cols);
        ag_cuda_launched("acc2d (16 bit)");
    }

    /* ---- linear ---- */
    static void linear_forward(float *out, const float *in, const float *W, const float *b, int N,
                               int IC, int OC) {
        if (N <= 0 || OC <= 0 || !ag_cuda_ready()) return;
        size_t n = (size_t)N * OC;
        float *c = nullptr;
        if (IC > 0) {
            const T *w16 = weight16(W, (size_t)OC * IC);
            c = (float *)scratch(S_C32, n * sizeof(float));
            if (!w16 || !c) return;
            /* c[N,OC] = in[N,IC] . W[OC,IC]^T */
            gemm("linear_forward (16 bit)", 0, 1, N, OC, IC, 1.0f, (const T *)in, IC, 0, w16, IC, 0,
                 0.0f, c, OC, 0, 1);
        }
        lp_bias_round_kernel<T><<<GRID(n)>>>((T *)out, c, b, (size_t)N, OC);
        ag_cuda_launched("linear_forward (16 bit, bias)");
    }
    static void linear_backward(float *din, float *dW, float *db, const float *dout, const float *in,
                                const float *W, int N, int IC, int OC) {
        if (N <= 0 || OC <= 0 || IC <= 0 || !ag_cuda_ready()) return;
        if (din) {  /* din[N,IC] += dout[N,OC] . W[OC,IC] */
            size_t n = (size_t)N * IC;
            const T *w16 = weight16(W, (size_t)OC * IC);
            float *c = (float *)scratch(S_C32, n * sizeof(float));
            if (!w16 || !c) return;
            gemm("linear_backward (16 bit, din)", 0, 0, N, IC, OC, 1.0f, (const T *)dout, OC, 0, w16,
                 IC, 0, 0.0f, c, IC, 0, 1);
            acc_f32("linear_backward (16 bit, din)", din, c, n);
        }
        if (dW)  /* dW[OC,IC] += dout[N,OC]^T . in[N,IC], fp32 result onto the fp32 gradient */
            gemm("linear_backward (16 bit, dW)", 1, 0, OC, IC, N, 1.0f, (const T *)dout, OC, 0,
                 (const T *)in, IC, 0, 1.0f, dW, IC, 0, 1);
        if (db)
            ag_colsum_launch("linear_backward (16 bit, db)", db, nullptr, N, OC,
                             lp_col_value<T>{(const T *)dout, OC});
    }

    /* ---- embeddings ---- */
    static void embedding_forward(float *out, const int32_t *ids, const int32_t *types, const float *wte,
                                  const float *wpe, const float *wtt, int B, int T_, int C) {
        size_t n = (size_t)(B > 0 ? B : 0) * (size_t)(T_ > 0 ? T_ : 0) * (size_t)(C > 0 ? C : 0);
        if (!n || !ag_cuda_ready()) return;
        float *c = (float *)scratch(S_C32, n * sizeof(float));
        if (!c) return;
        ag_cuda_embedding_forward(c, ids, types, wte, wpe, wtt, B, T_, C);
        ag_cuda_lowp_from_f32(P, out, c, n);
    }
    static void embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                                   const int32_t *ids, const int32_t *types, int B, int T_, int C,
                                   int pad_id) {
        size_t n = (size_t)(B > 0 ? B : 0) * (size_t)(T_ > 0 ? T_ : 0) * (size_t)(C > 0 ? C : 0);
        if (!n || (!dwte && !dwpe && !dwtt) || !ag_cuda_ready()) return;
        float *g = widen(S_C32, dout, n);
        if (!g) return;
        ag_cuda_embedding_backward(dwte, dwpe, dwtt, g, ids, types, B, T_, C, pad_id);
    }

    /* ---- layernorm, GELU, tanh, dropout ---- */
    static void layernorm_forward(float *out, float *mean, float *rstd, const float *in, const float *w,
                                  const float *b, int N, int C, float eps) {
        ag_cuda_lowp_layernorm_forward(P, out, mean, rstd, in, w, b, N, C, eps);
    }
    static void layernorm_backward(float *din, float *dw, float *db, const float *dout, const float *in,
                                   const float *mean, const float *rstd, const float *w, int N, int C) {
        ag_cuda_lowp_layernorm_backward(P, din, dw, db, dout, in, mean, rstd, w, N, C);
    }
    static void gelu_forward(float *out, const float *in, size_t n) { ag_cuda_lowp_gelu_forward(P, out, in, n); }
    static void gelu_backward(float *din, const float *in, const float *dout, size_t n) {
        ag_cuda_lowp_gelu_backward(P, din, in, dout, n);
    }
    static void tanh_forward(float *out, const float *in, size_t n) {
        if (!n || !ag_cuda_ready()) return;
        tanh_fwd_kernel<T><<<GRID(n)>>>((T *)out, (const T *)in, n);
        ag_cuda_launched("tanh_forward (16 bit)");
    }
    static void tanh_backward(float *din, const float *out, const float *dout, size_t n) {
        if (!n || !ag_cuda_ready()) return;
        tanh_bwd_kernel<T><<<GRID(n)>>>((T *)din, (const T *)out, (const T *)dout, n);
        ag_cuda_launched("tanh_backward (16 bit)");
    }
    static void dropout_forward(float *out, uint8_t *mask, const float *in, int B, size_t L,
                                const int64_t *sample_idx, uint64_t seed, uint32_t site, float p) {
        ag_cuda_lowp_dropout_forward(P, out, mask, in, B, L, sample_idx, seed, site, p);
    }
    static void dropout_backward(float *din, const float *dout, const uint8_t *mask, int B, size_t L,
                                 float p) {
        size_t n = (size_t)(B > 0 ? B : 0) * L;
        if (!n || !ag_cuda_ready()) return;
        if (p <= 0.0f) {
            acc(din, dout, n);
            return;
        }
        dropout_bwd_kernel<T><<<GRID(n)>>>((T *)din, (const T *)dout, mask, n, 1.0f / (1.0f - p));
        ag_cuda_launched("dropout_backward (16 bit)");
    }

    /* ---- attention: the fp32 op on widened copies, products in 16-bit GEMM mode ---- */
    struct gemm_mode {  /* scoped ag_cuda_set_precision(P) */
        ag_precision old;
        gemm_mode() : old(ag_cuda_precision()) { ag_cuda_set_precision(P); }
        ~gemm_mode() { ag_cuda_set_precision(old); }
    };
    static void attention_forward(float *out, float *probs, uint8_t *pmask, const float *q, const float *k,
                                  const float *v, const float *key_mask, int causal, int B, int Tq, int Tk,
                                  int H, int D, const int64_t *sample_idx, uint64_t seed, uint32_t site,
                                  float p) {
        if (B <= 0 || Tq <= 0 || Tk <= 0 || H <= 0 || D <= 0 || !ag_cuda_ready()) return;
        size_t nq = (size_t)B * Tq * H * D, nk = (size_t)B * Tk * H * D;
        float *q32 = widen(S_Q, q, nq), *k32 = widen(S_K, k, nk), *v32 = widen(S_V, v, nk);
        float *o32 = (float *)scratch(S_O, nq * sizeof(float));
        if (!q32 || !k32 || !v32 || !o32) return;
        {
            gemm_mode m;
            ag_cuda_attention_forward(o32, probs, pmask, q32, k32, v32, key_mask, causal, B, Tq, Tk, H, D,
                                      sample_idx, seed, site, p);
        }
        ag_cuda_lowp_from_f32(P, out, o32, nq);
    }
    static void attention_backward(float *dq, float *dk, float *dv, float *scr, const float *dout,
                                   const float *q, const float *k, const float *v, const float *probs,
                                   const uint8_t *pmask, int B, int Tq, int Tk, int H, int D, float p) {
        if (B <= 0 || Tq <= 0 || Tk <= 0 || H <= 0 || D <= 0 || (!dq && !dk && !dv) || !ag_cuda_ready())
            return;
        size_t nq = (size_t)B * Tq * H * D, nk = (size_t)B * Tk * H * D;
        float *o32 = widen(S_O, dout, nq);
        float *q32 = dk ? widen(S_Q, q, nq) : nullptr;
        float *k32 = dq ? widen(S_K, k, nk) : nullptr;
        float *v32 = (dq || dk) ? widen(S_V, v, nk) : nullptr;
        float *dq32 = dq ? (float *)scratch(S_DQ, nq * sizeof(float)) : nullptr;
        float *dk32 = dk ? (float *)scratch(S_DK, nk * sizeof(float)) : nullptr;
        float *dv32 = dv ? (float *)scratch(S_DV, nk * sizeof(float)) : nullptr;
        if (!o32 || (dk && (!q32 || !dk32)) || (dq && (!k32 || !dq32)) || ((dq || dk) && !v32) ||
            (dv && !dv32))
            return;
        cudaStream_t s = ag_cuda_stream();
        if (dq32) check_call("attention_backward (16 bit)", cudaMemsetAsync(dq32, 0, nq * sizeof(float), s));
        if (dk32) check_call("attention_backward (16 bit)", cudaMemsetAsync(dk32, 0, nk * sizeof(float), s));
        if (dv32) check_call("attention_backward (16 bit)", cudaMemsetAsync(dv32, 0, nk * sizeof(float), s));
        {
            gemm_mode m;
            /* q/k/v the fp32 op does not read (for the gradients not wanted) may be NULL
             * there only if it never dereferences them: pass the widened dout instead. */
            ag_cuda_attention_backward(dq32, dk32, dv32, scr, o32, q32 ? q32 : o32, k32 ? k32 : o32,
                                       v32 ? v32 : o32, probs, pmask, B, Tq, Tk, H, D, p);
        }
        if (dq) acc_f32("attention_backward (16 bit, dq)", dq, dq32, nq);
        if (dk) acc_f32("attention_backward (16 bit, dk)", dk, dk32, nk);
        if (dv) acc_f32("attention_backward (16 bit, dv)", dv, dv32, nk);
    }

    static ag_ops table(const char *name) {
        ag_ops o;
        memset(&o, 0, sizeof o);
        o.name = name;
        o.alloc = ag_cuda_alloc;
        o.free = ag_cuda_free;
        o.zero = zero;
        o.copy = copy;
        o.upload = ag_cuda_upload;
        o.download = ag_cuda_download;
        o.sync = ag_cuda_sync;
        o.act_bytes = sizeof(T);
        o.upload_act = upload_act;
        o.download_act = download_act;
        o.add = add;
        o.acc = acc;
        o.scale = scale;
        o.copy2d = copy2d;
        o.acc2d = acc2d;
        o.linear_forward = linear_forward;
        o.linear_backward = linear_backward;
        o.embedding_forward = embedding_forward;
        o.embedding_backward = embedding_backward;
        o.layernorm_forward = layernorm_forward;
        o.layernorm_backward = layernorm_backward;
        o.gelu_forward = gelu_forward;
        o.gelu_backward = gelu_backward;
        o.tanh_forward = tanh_forward;
        o.tanh_backward = tanh_backward;
        o.dropout_forward = dropout_forward;
        o.dropout_backward = dropout_backward;
        o.attention_forward = attention_forward;
        o.attention_backward = attention_backward;
        o.linear_gelu_forward = nullptr;
        o.add_layernorm_forward = nullptr;
        return o;
    }
};

}  // namespace

/* Declared where used (nn/cuda/lowp_table.c); filled before main (dynamic initialisation). */
extern "C" const ag_ops ag_ops_cuda_bf16 = lp<__nv_bfloat16>::table("cuda-bf16");
extern "C" const ag_ops ag_ops_cuda_fp16 = lp<__half>::table("cuda-fp16");
