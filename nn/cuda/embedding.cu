/* BERT embeddings on the GPU, as cpu_embedding_* in nn/ops_cpu.c. Forward: one thread
 * per output element, the same association order as HF ((word + type) + position), so it
 * is bit-identical to the CPU's. Backward: position rows are distinct per t, so they are
 * summed over the batch without atomics (in the CPU's order: bit-identical too); word rows repeat arbitrarily, so they scatter
 * with atomicAdd (summation order varies: results agree to rounding, not bit for bit);
 * token-type rows (few, long runs of equal type) sum runs in registers and flush each
 * run with one atomicAdd. */
#include "nn/cuda/kernels.cuh"

using namespace agk;

namespace {

/* out[B,T,C]; ids, types [B,T] (types may be NULL: all 0); wtt may be NULL. */
template <typename T>
__global__ void emb_fwd_kernel(T *out, const int32_t *ids, const int32_t *types, const float *wte,
                               const float *wpe, const float *wtt, int T_, int C, size_t n) {
    for (size_t i = gid(); i < n; i += gstride()) {
        size_t bt = i / (size_t)C, c = i % (size_t)C;
        size_t t = bt % (size_t)T_;
        float we = wte[(size_t)ids[bt] * C + c], pe = wpe[t * C + c];
        if (wtt) {
            float te = wtt[(size_t)(types ? types[bt] : 0) * C + c];
            st(out, i, (we + te) + pe);
        } else {
            st(out, i, we + pe);
        }
    }
}

/* dwpe[t,c] += sum_b dout[b,t,c]: one thread per (t, c), adding the batch in order onto
 * the running value exactly as the CPU loop does, so this part is bit-identical. */
__global__ void emb_bwd_pos_kernel(float *dwpe, const float *dout, int B, int T_, int C) {
    size_t n = (size_t)T_ * C;
    for (size_t i = gid(); i < n; i += gstride()) {
        size_t t = i / (size_t)C, c = i % (size_t)C;
        float s = dwpe[i];
        for (int b = 0; b < B; b++) s += dout[((size_t)b * T_ + t) * C + c];
        dwpe[i] = s;
    }
}

/* dwte[ids[bt]] += dout[bt] for every token whose id is not pad_id. */
__global__ void emb_bwd_word_kernel(float *dwte, const float *dout, const int32_t *ids, int C,
                                    size_t n, int pad_id) {
    for (size_t i = gid(); i < n; i += gstride()) {
        size_t bt = i / (size_t)C, c = i % (size_t)C;
        int id = ids[bt];
        if (id != pad_id) atomicAdd(&dwte[(size_t)id * C + c], dout[i]);
    }
}

/* dwtt[types[bt]] += dout[bt]: thread (chunk, c) walks the chunk's tokens, summing while
 * the type stays the same and flushing at each change and at the chunk's end. */
constexpr int kTypeChunk = 64;
__global__ void emb_bwd_type_kernel(float *dwtt, const float *dout, const int32_t *types, int C,
                                    size_t ntok) {
    int c = blockIdx.x * blockDim.x + threadIdx.x;
    if (c >= C) return;
    size_t t0 = (size_t)blockIdx.y * kTypeChunk, t1 = t0 + kTypeChunk < ntok ? t0 + kTypeChunk : ntok;
    int cur = -1;
    float s = 0.0f;
    for (size_t bt = t0; bt < t1; bt++) {
        int ty = types ? types[bt] : 0;
        if (ty != cur) {
            if (cur >= 0) atomicAdd(&dwtt[(size_t)cur * C + c], s);
            cur = ty;
            s = 0.0f;
        }
        s += dout[bt * C + c];
    }
    if (cur >= 0) atomicAdd(&dwtt[(size_t)cur * C + c], s);
}

template __global__ void emb_fwd_kernel<__nv_bfloat16>(__nv_bfloat16 *, const int32_t *, const int32_t *, const float *, const float *, const float *, int, int, size_t);

}  // namespace

extern "C" void ag_cuda_embedding_forward(float *out, const int32_t *ids, const int32_t *types,
                                          const float *wte, const float *wpe, const float *wtt,
                                          int B, int T, int C) {
    size_t n = (size_t)(B > 0 ? B : 0) * (size_t)(T > 0 ? T : 0) * (size_t)(C > 0 ? C : 0);
    if (!n || !ag_cuda_ready()) return;
    emb_fwd_kernel<float><<<ag_cuda_blocks(n, kThreads), kThreads, 0, ag_cuda_stream()>>>(
        out, ids, types, wte, wpe, wtt, T, C, n);
    ag_cuda_launched("embedding_forward");
}

extern "C" void ag_cuda_embedding_backward(float *dwte, float *dwpe, float *dwtt, const float *dout,
                                           const int32_t *ids, const int32_t *types, int B, int T,
                                           int C, int pad_id) {
    size_t ntok = (size_t)(B > 0 ? B : 0) * (size_t)(T > 0 ? T : 0), n = ntok * (size_t)(C > 0 ? C : 0);
    if (!n || !ag_cuda_ready()) return;
    cudaStream_t s = ag_cuda_stream();
    if (dwpe) {
        emb_bwd_pos_kernel<<<ag_cuda_blocks((size_t)T * C, kThreads), kThreads, 0, s>>>(dwpe, dout, B, T, C);
        ag_cuda_launched("embedding_backward (positions)");
    }
    if (dwte) {
        emb_bwd_word_kernel<<<ag_cuda_blocks(n, kThreads), kThreads, 0, s>>>(dwte, dout, ids, C, n, pad_id);
        ag_cuda_launched("embedding_backward (words)");
    }
    if (dwtt) {
        size_t nchunk = (ntok + kTypeChunk - 1) / kTypeChunk;
        if (nchunk > 65535) {  /* grid.y limit: 4M tokens per call */
            ag_cuda_fail("embedding_backward", "%zu tokens in one call, at most %d supported", ntok,
                         65535 * kTypeChunk);
            return;
        }
        dim3 grid((unsigned)((C + 127) / 128), (unsigned)nchunk);
        emb_bwd_type_kernel<<<grid, 128, 0, s>>>(dwtt, dout, types, C, ntok);
        ag_cuda_launched("embedding_backward (types)");
    }
}
