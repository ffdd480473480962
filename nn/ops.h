/* The op interface: forward and backward of every tensor operation the models use, as a
 * table of function pointers with one implementation per backend (ag_ops_cpu now, a CUDA
 * table with the same entries later). Model code is written once against this table.
 *
 * Rules every implementation follows (and every caller may rely on):
 *   - Tensor pointers (float *, int32_t *, int64_t *, uint8_t *) are BACKEND pointers:
 *     host memory for the CPU table, device memory for CUDA. Model code touches
 *     activations only through these ops (alloc/zero/copy/upload/download included).
 *     Parameters come from an ag_params whose data/grad point at backend memory.
 *   - Shapes are row-major. Legend: B batch, T tokens (Tq query, Tk key), C channels
 *     (= H * D), H heads, D head dim, V vocab, N rows (usually B*T), I/O in/out features.
 *   - Every backward ACCUMULATES (+=) into every gradient it writes: parameter gradients
 *     and input gradients alike. Callers zero a gradient buffer before its first use in a
 *     step. This makes residual branches, Q/K/V sharing one input and tied weights
 *     (decoder sharing the encoder's tensors) sum correctly without extra adds.
 *   - A gradient output may be NULL where documented ("may be NULL"): that part is skipped.
 *   - Gradient outputs must not alias the tensors the backward reads. Forward elementwise
 *     ops (gelu, tanh, dropout, scale) may run in place (out == in).
 *   - Ops do not validate indices (token ids, type ids): model code checks them on the
 *     host before upload (ag_bert_forward does), so a bad id never reaches an op.
 *   - Ops return nothing; only alloc can fail (NULL).
 *
 * Dropout is counter-based: the keep decision of element j of a row that holds global
 * sample s at site `site` is ag_rng_uniform(seed, AG_RNG_DROPOUT, s, site, j) >= p, scaled
 * by 1/(1-p). So a mask depends only on (seed, sample, site, element), never on batch
 * composition, padding or rank count. Element indices: a [B,T,C] activation uses
 * j = t*C + c (independent of the padded length T); attention probabilities use
 * j = AG_ATT_DROP_INDEX(h, tq, tk). Sites: see AG_SITE_* below. */
#ifndef ARGENT_NN_OPS_H
#define ARGENT_NN_OPS_H
#include <stddef.h>
#include <stdint.h>

/* Element index of attention-probability dropout: fixed strides, so that the mask of a
 * (sample, head, query, key) does not depend on how far the batch was padded. */
#define AG_ATT_DROP_INDEX(h, tq, tk) \
    (((uint64_t)(h) << 40) | ((uint64_t)(tq) << 20) | (uint64_t)(tk))

/* Dropout site ranges (the rng's `b` argument). The encoder uses
 * AG_SITE_ENCODER + 16*layer_slot + k (slot 0: embeddings, slot l+1: layer l; k: 0 attention
 * probs, 1 attention output, 2 FFN output, 3.. cross-attention in a decoder layer).
 * A TSDAE decoder uses the same layout from AG_SITE_DECODER; heads use AG_SITE_HEAD + k. */
enum {
    AG_SITE_ENCODER = 0,
    AG_SITE_DECODER = 1 << 12,
    AG_SITE_HEAD = 1 << 13,
};

typedef struct ag_ops {
    const char *name;  /* "cpu", "cuda", "cuda-bf16", "cuda-fp16" */

    /* ---- memory ---- */
    /* Backend allocation, 64-byte aligned, contents undefined. NULL on failure (or bytes 0). */
    void *(*alloc)(size_t bytes);
    void (*free)(void *ptr);                                   /* NULL is fine */
    void (*zero)(float *x, size_t n);                          /* x[n] = 0 */
    void (*copy)(float *dst, const float *src, size_t n);      /* dst[n] = src[n], no overlap */
    void (*upload)(void *dst, const void *host_src, size_t bytes);    /* host -> backend */
    void (*download)(void *host_dst, const void *src, size_t bytes);  /* backend -> host */
    void (*sync)(void);                                        /* wait for queued work */
    /* ---- activation storage ----
     * act_bytes: bytes per ACTIVATION element in this table: 4 (fp32 tables: ag_ops_cpu,
     * ag_ops_cuda) or 2 (16-bit activation tables, nn/cuda/amp.h). Activations are the
     * float * tensors the ops below read and write other than: parameters and parameter
     * gradients (always fp32, from an ag_params), layernorm mean/rstd (fp32), the attention
     * key_mask (fp32), attention probs and its backward scratch (fp32 [B,H,Tq,Tk]: the
     * softmax and its backward run in fp32 in every table) and whatever an op's comment names
     * as fp32. Model code allocates an activation of n elements as alloc(n * act_bytes)
     * and never does arithmetic on activation pointers except through ops (copy2d/acc2d
     * strides count elements).
     * zero/copy/add/acc/scale/copy2d/acc2d operate on activations; fp32 buffers outside the
     * parameter table are filled with upload/download (bytes).
     * upload_act / download_act move n activation elements between fp32 host memory and
     * the backend, converting to / from the table's storage type (a plain copy for fp32). */
    size_t act_bytes;
    void (*upload_act)(float *dst, const float *host_src, size_t n);
    void (*download_act)(float *host_dst, const float *src, size_t n);

    /* ---- elementwise ---- */
    /* out[n] = a[n] + b[n] (residual add; out may alias a or b). */
    void (*add)(float *out, const float *a, const float *b, size_t n);
    /* dst[n] += src[n] (gradient fan-in). */
    void (*acc)(float *dst, const float *src, size_t n);
    /* x[n] *= alpha. */
    void (*scale)(float *x, float alpha, size_t n);
    /* Strided 2-D copy / accumulate of `rows` rows of `cols` floats:
     * dst[r*ldd + c] = src[r*lds + c]  /  dst[r*ldd + c] += src[r*lds + c].
     * Used to gather the [CLS] rows (lds = T*C) and to scatter their gradient back. */
    void (*copy2d)(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols);
    void (*acc2d)(float *dst, size_t ldd, const float *src, size_t lds, size_t rows, size_t cols);

    /* ---- linear: out[N,OC] = in[N,IC] . W[OC,IC]^T + b[OC]   (b may be NULL) ---- */
    void (*linear_forward)(float *out, const float *in, const float *W, const float *b,
                           int N, int IC, int OC);
    /* din[N,IC] += dout . W;  dW[OC,IC] += dout^T . in;  db[OC] += sum_n dout.
     * din, dW, db may each be NULL. */
    void (*linear_backward)(float *din, float *dW, float *db, const float *dout,
                            const float *in, const float *W, int N, int IC, int OC);

    /* ---- BERT embeddings: out[B,T,C] = wte[ids] + wpe[t] + wtt[types] ----
     * ids, types: [B,T] int32 (types may be NULL = all 0); position of token t is t
     * (as in Hugging Face BertEmbeddings, padding does not shift positions). wtt may be
     * NULL (no token-type table). */
    void (*embedding_forward)(float *out, const int32_t *ids, const int32_t *types,
                              const float *wte, const float *wpe, const float *wtt,
                              int B, int T, int C);
    /* Scatter-add: dwte[ids[b,t]] += dout[b,t]; dwpe[t] += ...; dwtt[types[b,t]] += ....
     * Tokens whose id == pad_id add nothing to dwte (torch nn.Embedding(padding_idx): the
     * [PAD] row of BERT's word embeddings never gets a gradient); pad_id -1: none skipped.
     * Any of dwte, dwpe, dwtt may be NULL. */
    void (*embedding_backward)(float *dwte, float *dwpe, float *dwtt, const float *dout,
                               const int32_t *ids, const int32_t *types, int B, int T, int C,
                               int pad_id);

    /* ---- layernorm over the last dim: out[N,C] = (in - mean) * rstd * w + b ----
     * Saves mean[N] and rstd[N] = 1/sqrt(var + eps) (biased variance, as torch). */
    void (*layernorm_forward)(float *out, float *mean, float *rstd, const float *in,
                              const float *w, const float *b, int N, int C, float eps);
    /* din[N,C] += ...; dw[C] += ...; db[C] += ... (each may be NULL). */
    void (*layernorm_backward)(float *din, float *dw, float *db, const float *dout,
                               const float *in, const float *mean, const float *rstd,
                               const float *w, int N, int C);

    /* ---- activations ---- */
    /* GELU, exact erf form: out = x/2 * (1 + erf(x/sqrt 2)). */
    void (*gelu_forward)(float *out, const float *in, size_t n);
    void (*gelu_backward)(float *din, const float *in, const float *dout, size_t n);
    /* tanh; its backward reads the forward OUTPUT: din += dout * (1 - out^2). */
    void (*tanh_forward)(float *out, const float *in, size_t n);
    void (*tanh_backward)(float *din, const float *out, const float *dout, size_t n);

    /* ---- dropout on x viewed as [B, L] (row b holds global sample sample_idx[b]) ----
     * Training with p > 0: mask[b,j] = ag_rng_uniform(seed, AG_RNG_DROPOUT,
     * sample_idx[b], site, j) >= p; out = in * mask / (1-p). p == 0 (and eval, where the
     * caller passes p = 0): out = in, mask is not touched (may be NULL).
     * sample_idx: [B] int64 backend pointer. mask: [B,L] uint8 backend pointer. */
    void (*dropout_forward)(float *out, uint8_t *mask, const float *in, int B, size_t L,
                            const int64_t *sample_idx, uint64_t seed, uint32_t site, float p);
    /* din += dout * mask / (1-p); with p == 0: din += dout. */
    void (*dropout_backward)(float *din, const float *dout, const uint8_t *mask,
                             int B, size_t L, float p);

    /* ---- multi-head scaled-dot-product attention core ----
     * q[B,Tq,C], k[B,Tk,C], v[B,Tk,C] with C = H*D (head h = channels h*D..h*D+D-1),
     * out[B,Tq,C] = dropout(softmax(q.k^T / sqrt(D) + mask)) . v per head.
     * key_mask: [B,Tk] float, 1 = keep, 0 = padding (NULL: all keys kept). Masked scores
     *   get -FLT_MAX added, exactly like Hugging Face's additive torch.finfo(float32).min
     *   mask; a fully masked row therefore gives uniform weights, never NaN.
     * causal: also mask keys tk > tq (decoder self-attention; needs Tq == Tk).
     * probs: [B,H,Tq,Tk] saved softmax (before dropout) for backward; fp32 in every table
     *   (4 bytes per element also where act_bytes is 2).
     * Attention dropout with probability p uses pmask [B,H,Tq,Tk] (uint8, may be NULL when
     * p == 0), keyed on (seed, sample_idx[b], site, AG_ATT_DROP_INDEX(h,tq,tk));
     * sample_idx may be NULL when p == 0. Tq != Tk is fine (cross-attention). */
    void (*attention_forward)(float *out, float *probs, uint8_t *pmask,
                              const float *q, const float *k, const float *v,
                              const float *key_mask, int causal, int B, int Tq, int Tk,
                              int H, int D, const int64_t *sample_idx, uint64_t seed,
                              uint32_t site, float p);
    /* dq[B,Tq,C] += ..., dk[B,Tk,C] += ..., dv[B,Tk,C] += ... (each may be NULL).
     * scratch: [B,H,Tq,Tk] fp32 of backend memory (every table), overwritten. */
    void (*attention_backward)(float *dq, float *dk, float *dv, float *scratch,
                               const float *dout, const float *q, const float *k,
                               const float *v, const float *probs, const uint8_t *pmask,
                               int B, int Tq, int Tk, int H, int D, float p);
    /* ---- fused forwards (optional: NULL means the caller composes the unfused ops) ----
     * Each gives exactly what the composition gives (the CPU table: bit for bit; other
     * backends: within their op tolerances), and saves what the unfused backward reads.
     * linear_gelu_forward: pre[N,OC] = in . W^T + b (b may be NULL); act = gelu(pre).
     *   Equals linear_forward(pre, ...) then gelu_forward(act, pre). */
    void (*linear_gelu_forward)(float *pre, float *act, const float *in, const float *W,
                                const float *b, int N, int IC, int OC);
    /* add_layernorm_forward: res[N,C] = x + r (res may alias x or r); out = layernorm(res)
     * with mean/rstd saved. Equals add(res, x, r) then layernorm_forward(out, mean, rstd,
     * res, w, b, N, C, eps). */
    void (*add_layernorm_forward)(float *res, float *out, float *mean, float *rstd,
                                  const float *x, const float *r, const float *w,
                                  const float *b, int N, int C, float eps);
} ag_ops;

extern const ag_ops ag_ops_cpu;

#endif
