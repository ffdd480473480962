/* Multi-head attention core on the GPU, as cpu_attention_* in nn/ops_cpu.c, built from
 * batched cuBLAS products and row kernels (the simple, checkable version; a fused kernel
 * can replace it later against the same tests):
 *   forward   Q, K, V [B,T,C] -> head-major [B,H,T,D] copies (scratch);
 *             probs = scale * Q K^T (one strided-batched GEMM over B*H heads);
 *             masked softmax in place (one warp per row), attention dropout -> P' (scratch);
 *             ctx = P' V, then back to [B,Tq,C].
 *   backward  dV = P'^T dO; dP' = dO V^T (into the caller's scratch); softmax backward in
 *             place (dS); dQ = dS K; dK = dS^T Q; each accumulated (+=) into [B,T,C].
 * Masking is the CPU's: -FLT_MAX added once to a masked score (padding key or, causal,
 * tk > tq), so a fully masked row comes out uniform, never NaN. The dropout mask bits are
 * the CPU's (Philox keyed on sample, site and AG_ATT_DROP_INDEX(h, tq, tk)).
 * For sentence lengths (Tk <= 128, D <= 128) the forward is one fused kernel instead
 * (attention_fused_kernel below: same probs, pmask and output); the GEMM path serves
 * longer sequences and is the reference (ag_cuda_set_fused_attention(0) forces it). */
#include <math.h>
#include <stdlib.h>

#include "nn/cuda/kernels.cuh"
#include "nn/cuda/philox.h"
#include "nn/ops.h"
#include "nn/rng.h"

using namespace agk;

namespace {

/* dst [B,H,T,D] = src [B,T,C] with C = H*D (n = B*T*C). Reads are coalesced; writes come
 * in runs of D. */
__global__ void to_heads_kernel(float *dst, const float *src, int T_, int H, int D, size_t n) {
    size_t C = (size_t)H * D;
    for (size_t i = gid(); i < n; i += gstride()) {
        size_t bt = i / C, c = i % C;
        size_t b = bt / (size_t)T_, t = bt % (size_t)T_, h = c / (size_t)D, d = c % (size_t)D;
        dst[((b * H + h) * T_ + t) * D + d] = src[i];
    }
}

/* dst [B,T,C] = (ACC: +=) src [B,H,T,D]. */
template <bool ACC>
__global__ void from_heads_kernel(float *dst, const float *src, int T_, int H, int D, size_t n) {
    size_t C = (size_t)H * D;
    for (size_t i = gid(); i < n; i += gstride()) {
        size_t bt = i / C, c = i % C;
        size_t b = bt / (size_t)T_, t = bt % (size_t)T_, h = c / (size_t)D, d = c % (size_t)D;
        float v = src[((b * H + h) * T_ + t) * D + d];
        dst[i] = ACC ? dst[i] + v : v;
    }
}

/* One warp per row (b, h, tq) of probs [B,H,Tq,Tk], which holds the scaled scores on entry
 * and the softmax on exit. With p > 0 also writes pmask and pdrop = probs * keep / (1-p). */
__global__ void softmax_fwd_kernel(float *probs, float *pdrop, uint8_t *pmask, const float *key_mask,
                                   int causal, int H, int Tq, int Tk, size_t rows,
                                   const int64_t *sample_idx, uint64_t seed, uint32_t site, float p,
                                   float dscale) {
    size_t row = (size_t)blockIdx.x * kRowWarps + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;  /* per warp */
    int tq = (int)(row % (size_t)Tq);
    size_t bh = row / (size_t)Tq;
    int h = (int)(bh % (size_t)H);
    size_t b = bh / (size_t)H;
    float *s = probs + row * Tk;
    const float *km = key_mask ? key_mask + b * Tk : nullptr;
    float mx = -INFINITY;
    for (int tk = lane; tk < Tk; tk += 32) {
        float v = s[tk];
        /* One -FLT_MAX per masked key (adding it twice would overflow to -inf). */
        if ((km && km[tk] == 0.0f) || (causal && tk > tq)) v += -FLT_MAX;
        s[tk] = v;
        mx = fmaxf(mx, v);
    }
    mx = warp_max(mx);
    double sum = 0.0;
    for (int tk = lane; tk < Tk; tk += 32) {
        float e = expf(s[tk] - mx);
        s[tk] = e;
        sum += e;
    }
    float inv = (float)(1.0 / warp_sum(sum));
    if (p > 0.0f) {
        /* Lanes take groups of 4 keys (one Philox block each), not the stride above: make
         * the other lanes' writes visible first. */
        __syncwarp();
        uint64_t a = (uint64_t)sample_idx[b];
        float *pd = pdrop + row * Tk;
        uint8_t *pm = pmask + row * Tk;
        int ngroups = (Tk + 3) / 4;
        for (int gi = lane; gi < ngroups; gi += 32) {
            float u[4];
            ag_uniform4_hd(seed, AG_RNG_DROPOUT, a, site, AG_ATT_DROP_INDEX(h, tq, 4 * gi) >> 2, u);
#pragma unroll
            for (int k = 0; k < 4; k++) {
                int tk = 4 * gi + k;
                if (tk < Tk) {
                    float pr = s[tk] * inv;
                    uint8_t keep = u[k] >= p;
                    s[tk] = pr;
                    pm[tk] = keep;
                    pd[tk] = keep ? pr * dscale : 0.0f;
                }
            }
        }
    } else {
        for (int tk = lane; tk < Tk; tk += 32) s[tk] *= inv;
    }
}

/* pdrop = probs * (mask ? dscale : 0): the dropped probabilities again, for dV. */
__global__ void apply_pmask_kernel(float *pdrop, const float *probs, const uint8_t *pmask, size_t n,
                                   float dscale) {
    for (size_t i = gid(); i < n; i += gstride()) pdrop[i] = pmask[i] ? probs[i] * dscale : 0.0f;
}

/* One warp per row: ds holds dP' = dO V^T on entry and dS on exit:
 * g = dP' * keep (keep = dscale or 0 with dropout, else 1); dS = P * (g - sum(P * g)) * scale. */
__global__ void softmax_bwd_kernel(float *ds, const float *probs, const uint8_t *pmask, int Tk,
                                   size_t rows, float dscale, float scale) {
    size_t row = (size_t)blockIdx.x * kRowWarps + (threadIdx.x >> 5);
    int lane = threadIdx.x & 31;
    if (row >= rows) return;
    float *d = ds + row * Tk;
    const float *pr = probs + row * Tk;
    const uint8_t *m = pmask ? pmask + row * Tk : nullptr;
    double dot = 0.0;
    for (int tk = lane; tk < Tk; tk += 32) {
        float g = d[tk];
        if (m) g *= m[tk] ? dscale : 0.0f;
        d[tk] = g;
        dot += (double)g * pr[tk];
    }
    float fdot = (float)warp_sum(dot);
    for (int tk = lane; tk < Tk; tk += 32) d[tk] = pr[tk] * (d[tk] - fdot) * scale;
}

/* ---- fused forward for sentence lengths (Tk <= kFaMaxT, D <= kFaMaxD) ----
 * One block per (query tile of kFaWarps rows, b*H + h); one warp per query row. Q rows of
 * the tile sit in shared memory; K and then V pass through shared memory in chunks of 32
 * keys. Lane j owns keys 32c + j: its scores stay in registers, the softmax is the row
 * kernel's (max, expf, fp64 sum, one reciprocal), dropout draws the same Philox block as
 * the GEMM path for its key (blocks of 4 keys: each lane recomputes its key's block), and
 * the dropped probabilities go to shared memory for P'.V, where lane j owns channels
 * d = j + 32i. probs and pmask are written as the GEMM path writes them, for the unchanged
 * backward. No head-major copies and no batched GEMMs: q, k, v are read in [B,T,C]. */
constexpr int kFaWarps = 8, kFaMaxT = 128, kFaMaxD = 128, kFaChunk = 32;
constexpr int kFaKeySlots = kFaMaxT / 32, kFaDimSlots = kFaMaxD / 32;

__global__ void attention_fused_kernel(float *out, float *probs, uint8_t *pmask, const float *q,
                                       const float *k, const float *v, const float *key_mask,
                                       int causal, int H, int Tq, int Tk, int D,
                                       const int64_t *sample_idx, uint64_t seed, uint32_t site,
                                       float p, float scale, float dscale) {
    __shared__ float sq[kFaWarps][kFaMaxD];
    __shared__ float skv[kFaChunk][kFaMaxD + 1];  /* +1: lanes reading rows hit distinct banks */
    __shared__ float sp[kFaWarps][kFaMaxT];
    const int warp = (int)(threadIdx.x >> 5), lane = (int)(threadIdx.x & 31);
    const int h = (int)(blockIdx.y % (unsigned)H), b = (int)(blockIdx.y / (unsigned)H);
    const int t0 = (int)blockIdx.x * kFaWarps, tq = t0 + warp;
    const bool active = tq < Tq;
    const size_t C = (size_t)H * D, hoff = (size_t)h * D;
    const int nchunk = (Tk + kFaChunk - 1) / kFaChunk;
    for (int i = (int)threadIdx.x; i < kFaWarps * D; i += (int)blockDim.x) {
        int w = i / D, d = i % D;
        sq[w][d] = t0 + w < Tq ? q[((size_t)b * Tq + t0 + w) * C + hoff + d] : 0.0f;
    }
    const float *km = key_mask ? key_mask + (size_t)b * Tk : nullptr;

    /* scores: lane j of chunk c holds key 32c + j */
    float sc[kFaKeySlots];
#pragma unroll
    for (int c = 0; c < kFaKeySlots; c++) {
        sc[c] = -INFINITY;
        if (c < nchunk) {
            __syncthreads();  /* sq loaded / the previous chunk read */
            for (int i = (int)threadIdx.x; i < kFaChunk * D; i += (int)blockDim.x) {
                int j = i / D, d = i % D, t = c * kFaChunk + j;
                skv[j][d] = t < Tk ? k[((size_t)b * Tk + t) * C + hoff + d] : 0.0f;
            }
            __syncthreads();
            int tk = c * kFaChunk + lane;
            if (active && tk < Tk) {
                float acc = 0.0f;
                for (int d = 0; d < D; d++) acc += sq[warp][d] * skv[lane][d];
                float s = acc * scale;
                /* One -FLT_MAX per masked key, as the row kernel. */
                if ((km && km[tk] == 0.0f) || (causal && tk > tq)) s += -FLT_MAX;
                sc[c] = s;
            }
        }
    }
    float mx = -INFINITY;
#pragma unroll
    for (int c = 0; c < kFaKeySlots; c++) mx = fmaxf(mx, sc[c]);
    mx = warp_max(mx);
    float e[kFaKeySlots];
    double sum = 0.0;
#pragma unroll
    for (int c = 0; c < kFaKeySlots; c++) {
        int tk = c * kFaChunk + lane;
        e[c] = active && tk < Tk ? expf(sc[c] - mx) : 0.0f;
        sum += e[c];
    }
    float inv = (float)(1.0 / warp_sum(sum));
    if (active) {
        size_t row = ((size_t)blockIdx.y * Tq + tq) * Tk;
        uint64_t a = p > 0.0f ? (uint64_t)sample_idx[b] : 0;
#pragma unroll
        for (int c = 0; c < kFaKeySlots; c++) {
            int tk = c * kFaChunk + lane;
            if (tk >= Tk) continue;
            float pr = e[c] * inv, pd = pr;
            probs[row + tk] = pr;
            if (p > 0.0f) {
                float u[4];
                ag_uniform4_hd(seed, AG_RNG_DROPOUT, a, site, AG_ATT_DROP_INDEX(h, tq, tk) >> 2, u);
                uint8_t keep = u[tk & 3] >= p;
                pmask[row + tk] = keep;
                pd = keep ? pr * dscale : 0.0f;
            }
            sp[warp][tk] = pd;
        }
    }

    /* out = P' V: lane j owns channels j + 32i */
    float o[kFaDimSlots];
#pragma unroll
    for (int i = 0; i < kFaDimSlots; i++) o[i] = 0.0f;
    for (int c = 0; c < nchunk; c++) {
        __syncthreads();  /* sp written / the previous chunk read */
        for (int i = (int)threadIdx.x; i < kFaChunk * D; i += (int)blockDim.x) {
            int j = i / D, d = i % D, t = c * kFaChunk + j;
            skv[j][d] = t < Tk ? v[((size_t)b * Tk + t) * C + hoff + d] : 0.0f;
        }
        __syncthreads();
        if (active) {
            int nj = min(kFaChunk, Tk - c * kFaChunk);
            for (int j = 0; j < nj; j++) {
                float pj = sp[warp][c * kFaChunk + j];
#pragma unroll
                for (int i = 0; i < kFaDimSlots; i++) {
                    int d = lane + 32 * i;
                    if (d < D) o[i] += pj * skv[j][d];
                }
            }
        }
    }
    if (active) {
        float *dst = out + ((size_t)b * Tq + tq) * C + hoff;
#pragma unroll
        for (int i = 0; i < kFaDimSlots; i++) {
            int d = lane + 32 * i;
            if (d < D) dst[d] = o[i];
        }
    }
}

void to_heads(const char *op, float *dst, const float *src, int B, int T_, int H, int D) {
    size_t n = (size_t)B * T_ * H * D;
    to_heads_kernel<<<ag_cuda_blocks(n, kThreads), kThreads, 0, ag_cuda_stream()>>>(dst, src, T_, H, D, n);
    ag_cuda_launched(op);
}

template <bool ACC>
void from_heads(const char *op, float *dst, const float *src, int B, int T_, int H, int D) {
    size_t n = (size_t)B * T_ * H * D;
    from_heads_kernel<ACC><<<ag_cuda_blocks(n, kThreads), kThreads, 0, ag_cuda_stream()>>>(dst, src, T_, H, D, n);
    ag_cuda_launched(op);
}

/* -1: not read yet; then 0 or 1. Environment ARGENT_CUDA_FUSED_ATTENTION=0 turns it off. */
int fused_attention = -1;

int fused_attention_on() {
    if (fused_attention < 0) {
        const char *e = getenv("ARGENT_CUDA_FUSED_ATTENTION");
        fused_attention = !(e && e[0] == '0');
    }
    return fused_attention;
}

}  // namespace

extern "C" void ag_cuda_set_fused_attention(int on) { fused_attention = on != 0; }
extern "C" int ag_cuda_fused_attention(void) { return fused_attention_on(); }

extern "C" void ag_cuda_attention_forward(float *out, float *probs, uint8_t *pmask, const float *q,
                                          const float *k, const float *v, const float *key_mask,
                                          int causal, int B, int Tq, int Tk, int H, int D,
                                          const int64_t *sample_idx, uint64_t seed, uint32_t site,
                                          float p) {
    if (B <= 0 || Tq <= 0 || Tk <= 0 || H <= 0 || D <= 0 || !ag_cuda_ready()) return;
    if (fused_attention_on() && Tk <= kFaMaxT && D <= kFaMaxD && (long long)B * H <= 65535) {
        const float scale = 1.0f / sqrtf((float)D);
        const float dscale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
        dim3 grid((unsigned)((Tq + kFaWarps - 1) / kFaWarps), (unsigned)(B * H));
        attention_fused_kernel<<<grid, kFaWarps * 32, 0, ag_cuda_stream()>>>(
            out, probs, pmask, q, k, v, key_mask, causal, H, Tq, Tk, D, sample_idx, seed, site, p,
            scale, dscale);
        ag_cuda_launched("attention_forward (fused)");
        return;
    }
    size_t C = (size_t)H * D, nq = (size_t)B * Tq * C, nk = (size_t)B * Tk * C;
    size_t na = (size_t)B * H * Tq * Tk, rows = (size_t)B * H * Tq;
    float *Qp = (float *)ag_cuda_scratch(AG_CUDA_SCR_QP, nq * sizeof(float));
    float *Kp = (float *)ag_cuda_scratch(AG_CUDA_SCR_KP, nk * sizeof(float));
    float *Vp = (float *)ag_cuda_scratch(AG_CUDA_SCR_VP, nk * sizeof(float));
    float *Op = (float *)ag_cuda_scratch(AG_CUDA_SCR_OP, nq * sizeof(float));
    float *Pd = p > 0.0f ? (float *)ag_cuda_scratch(AG_CUDA_SCR_P, na * sizeof(float)) : probs;
    if (!Qp || !Kp || !Vp || !Op || !Pd) return;  /* recorded by ag_cuda_scratch */
    const float scale = 1.0f / sqrtf((float)D);
    const float dscale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    const long long sq = (long long)Tq * D, sk = (long long)Tk * D, sa = (long long)Tq * Tk;

    to_heads("attention_forward (q)", Qp, q, B, Tq, H, D);
    to_heads("attention_forward (k)", Kp, k, B, Tk, H, D);
    to_heads("attention_forward (v)", Vp, v, B, Tk, H, D);
    /* probs[bh] = scale * Q[bh] . K[bh]^T   ([Tq,D] . [Tk,D]^T) */
    ag_cuda_gemm("attention_forward (scores)", 0, 1, Tq, Tk, D, scale, Qp, D, sq, Kp, D, sk, 0.0f,
                 probs, Tk, sa, B * H);
    softmax_fwd_kernel<<<ag_row_blocks(rows), kRowWarps * 32, 0, ag_cuda_stream()>>>(
        probs, Pd, pmask, key_mask, causal, H, Tq, Tk, rows, sample_idx, seed, site, p, dscale);
    ag_cuda_launched("attention_forward (softmax)");
    /* ctx[bh] = P'[bh] . V[bh]   ([Tq,Tk] . [Tk,D]) */
    ag_cuda_gemm("attention_forward (context)", 0, 0, Tq, D, Tk, 1.0f, Pd, Tk, sa, Vp, D, sk, 0.0f,
                 Op, D, sq, B * H);
    from_heads<false>("attention_forward (out)", out, Op, B, Tq, H, D);
}

extern "C" void ag_cuda_attention_backward(float *dq, float *dk, float *dv, float *scratch,
                                           const float *dout, const float *q, const float *k,
                                           const float *v, const float *probs, const uint8_t *pmask,
                                           int B, int Tq, int Tk, int H, int D, float p) {
    if (B <= 0 || Tq <= 0 || Tk <= 0 || H <= 0 || D <= 0 || (!dq && !dk && !dv) || !ag_cuda_ready())
        return;
    size_t C = (size_t)H * D, nq = (size_t)B * Tq * C, nk = (size_t)B * Tk * C;
    size_t na = (size_t)B * H * Tq * Tk, rows = (size_t)B * H * Tq;
    float *Qp = (float *)ag_cuda_scratch(AG_CUDA_SCR_QP, nq * sizeof(float));
    float *Kp = (float *)ag_cuda_scratch(AG_CUDA_SCR_KP, nk * sizeof(float));
    float *Vp = (float *)ag_cuda_scratch(AG_CUDA_SCR_VP, nk * sizeof(float));
    float *dOp = (float *)ag_cuda_scratch(AG_CUDA_SCR_OP, nq * sizeof(float));
    float *dQp = (float *)ag_cuda_scratch(AG_CUDA_SCR_DQ, nq * sizeof(float));
    float *dKp = (float *)ag_cuda_scratch(AG_CUDA_SCR_DK, nk * sizeof(float));
    float *dVp = (float *)ag_cuda_scratch(AG_CUDA_SCR_DV, nk * sizeof(float));
    float *Pd = p > 0.0f ? (float *)ag_cuda_scratch(AG_CUDA_SCR_P, na * sizeof(float)) : (float *)probs;
    if (!Qp || !Kp || !Vp || !dOp || !dQp || !dKp || !dVp || !Pd) return;
    const float scale = 1.0f / sqrtf((float)D);
    const float dscale = p > 0.0f ? 1.0f / (1.0f - p) : 1.0f;
    const long long sq = (long long)Tq * D, sk = (long long)Tk * D, sa = (long long)Tq * Tk;
    cudaStream_t s = ag_cuda_stream();

    /* The forward's head-major copies are gone (other layers reused the scratch): redo
     * the ones needed; they are cheap next to the products. */
    to_heads("attention_backward (dout)", dOp, dout, B, Tq, H, D);
    if (dv) {
        if (p > 0.0f) {
            apply_pmask_kernel<<<ag_cuda_blocks(na, kThreads), kThreads, 0, s>>>(Pd, probs, pmask, na, dscale);
            ag_cuda_launched("attention_backward (dropout)");
        }
        /* dV[bh] = P'[bh]^T . dO[bh]   ([Tq,Tk]^T . [Tq,D]) */
        ag_cuda_gemm("attention_backward (dv)", 1, 0, Tk, D, Tq, 1.0f, Pd, Tk, sa, dOp, D, sq, 0.0f,
                     dVp, D, sk, B * H);
        from_heads<true>("attention_backward (dv)", dv, dVp, B, Tk, H, D);
    }
    if (!dq && !dk) return;
    to_heads("attention_backward (v)", Vp, v, B, Tk, H, D);
    /* dP'[bh] = dO[bh] . V[bh]^T   ([Tq,D] . [Tk,D]^T), then dS in place. */
    ag_cuda_gemm("attention_backward (dp)", 0, 1, Tq, Tk, D, 1.0f, dOp, D, sq, Vp, D, sk, 0.0f,
                 scratch, Tk, sa, B * H);
    softmax_bwd_kernel<<<ag_row_blocks(rows), kRowWarps * 32, 0, s>>>(
        scratch, probs, p > 0.0f ? pmask : nullptr, Tk, rows, dscale, scale);
    ag_cuda_launched("attention_backward (softmax)");
    if (dq) {
        to_heads("attention_backward (k)", Kp, k, B, Tk, H, D);
        /* dQ[bh] = dS[bh] . K[bh]   ([Tq,Tk] . [Tk,D]) */
        ag_cuda_gemm("attention_backward (dq)", 0, 0, Tq, D, Tk, 1.0f, scratch, Tk, sa, Kp, D, sk,
                     0.0f, dQp, D, sq, B * H);
        from_heads<true>("attention_backward (dq)", dq, dQp, B, Tq, H, D);
    }
    if (dk) {
        to_heads("attention_backward (q)", Qp, q, B, Tq, H, D);
        /* dK[bh] = dS[bh]^T . Q[bh]   ([Tq,Tk]^T . [Tq,D]) */
        ag_cuda_gemm("attention_backward (dk)", 1, 0, Tk, D, Tq, 1.0f, scratch, Tk, sa, Qp, D, sq,
                     0.0f, dKp, D, sk, B * H);
        from_heads<true>("attention_backward (dk)", dk, dKp, B, Tk, H, D);
    }
}
