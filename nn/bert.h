/* The BERT encoder (Hugging Face BertModel, post-LN) on padded variable-length batches,
 * forward and backward, written against the op interface (nn/ops.h). Built from three
 * reusable blocks so that a TSDAE decoder can compose the same code with its own masks:
 *   ag_emb_*   word + position + token-type embeddings, LayerNorm, dropout
 *   ag_attn_*  attention sub-layer: LN(x_q + drop(Wo . attn(Wq x_q, Wk x_kv, Wv x_kv)))
 *              (self-attention: x_kv = x_q; cross-attention: x_kv = memory, Tk != Tq)
 *   ag_ffn_*   feed-forward sub-layer: LN(x + drop(W2 . gelu(W1 x)))
 * A block is split into WEIGHTS (indices of its tensors in an ag_params table; copy them
 * to tie weights, gradients then sum automatically) and ACTS (activations saved by its
 * forward for its backward, owned by one use of the block).
 *
 * Conventions (see nn/ops.h): float pointers are backend pointers; parameters are
 * ag_params_data/ag_params_grad of the table passed in (for CUDA: a table whose data/grad
 * are device buffers); every backward ACCUMULATES into parameter gradients (p->grad) and
 * into the input gradients it is given, so callers zero those buffers first.
 * Shapes: B batch, T tokens, C hidden, H heads, D = C/H, I intermediate (argument `inter`),
 * V vocab.
 *
 * Typical use (bi-encoder):
 *   ag_bert m; ag_params p; ag_params_init(&p);
 *   ag_bert_register(&m, &cfg, &p, "", 0);   ag_params_alloc(&p);
 *   ag_bert_init_weights(&m, &p, seed);  (or load a checkpoint by name)
 *   ag_bert_forward(&m, &p, &in, training, seed, 0);   h = ag_bert_hidden(&m);  [B,T,C]
 *   ... loss -> dh [B,T,C] ...
 *   ag_bert_backward(&m, &p, dh, NULL);                  (grads now in p.grad)
 *   ag_bert_free(&m);
 * All functions returning int give 0 on success, -1 with ag_err's message on failure. */
#ifndef ARGENT_NN_BERT_H
#define ARGENT_NN_BERT_H
#include <stddef.h>
#include <stdint.h>

#include "nn/ops.h"
#include "nn/params.h"

/* Hugging Face config.json fields (BertConfig); hidden_act is always exact "gelu". */
typedef struct {
    int vocab_size;               /* 30522 for bert-base-uncased */
    int hidden_size;              /* C */
    int num_hidden_layers;
    int num_attention_heads;      /* H; must divide hidden_size */
    int intermediate_size;        /* I */
    int max_position_embeddings;  /* 512; longest T accepted */
    int type_vocab_size;          /* 2 */
    float layer_norm_eps;         /* 1e-12 */
    float hidden_dropout_prob;    /* 0.1 */
    float attention_probs_dropout_prob;  /* 0.1 */
    int pad_token_id;             /* 0: its word-embedding row is zero-initialised and never
                                     gets a gradient (nn.Embedding padding_idx); -1: none */
} ag_bert_config;

/* bert-base-uncased values. */
void ag_bert_config_base(ag_bert_config *cfg);
/* Checks sizes are positive and H divides C; the error names the bad field. */
int ag_bert_config_check(const ag_bert_config *cfg);

/* Normal(0, std) fill of one tensor of p (host data), keyed on (seed, hash of the tensor's
 * name, element): independent of registration order. For heads that init like HF too. */
void ag_init_normal(ag_params *p, int idx, float std, uint64_t seed);
/* Fill with a constant (LayerNorm weight 1, biases 0). */
void ag_init_const(ag_params *p, int idx, float value);

/* Backward scratch shared by the blocks of one model (one backward runs at a time):
 * gradient buffers a block needs only while its own backward runs. */
typedef struct {
    size_t cap_tok, cap_inter, cap_att;  /* B*T*C, B*T*I, B*H*Tq*Tk floats */
    float *d_res, *d_tmp, *dq, *dk, *dv;  /* [B,T,C] each */
    float *d_inter, *d_pre;               /* [B,T,I] each */
    float *d_att;                         /* [B,H,Tq,Tk] */
} ag_block_ws;
/* Grow the scratch to at least these sizes (floats). */
int ag_block_ws_reserve(const ag_ops *ops, ag_block_ws *ws, size_t tok_c, size_t tok_i,
                        size_t att);
void ag_block_ws_free(const ag_ops *ops, ag_block_ws *ws);

/* ------------------------------------------------------------------------------------
 * Embeddings block. Names: {prefix}embeddings.word_embeddings.weight [V,C],
 * .position_embeddings.weight [P,C], .token_type_embeddings.weight [TV,C] (absent when
 * type_vocab_size == 0), .LayerNorm.weight/.bias [C]. */
typedef struct { int wte, wpe, wtt, ln_w, ln_b; } ag_emb_weights;

typedef struct {
    size_t cap;        /* capacity in tokens (B*T) */
    float *sum;        /* [B,T,C] word + pos + type, LayerNorm input */
    float *mean, *rstd;/* [B,T] */
    float *out;        /* [B,T,C] after LayerNorm and dropout */
    uint8_t *mask;     /* [B,T,C] dropout keep mask */
    int B, T;          /* shape of the last forward */
    float p;           /* dropout used by the last forward */
} ag_emb_acts;

/* Registers the tensors under "{prefix}embeddings.*" (prefix "" or "bert."). */
int ag_emb_register(ag_emb_weights *w, const ag_bert_config *cfg, ag_params *p, const char *prefix);
/* ids, types: [B,T] int32 backend pointers (types may be NULL: all 0), already validated
 * (0 <= id < V, 0 <= type < TV, T <= max positions). sample_idx [B] int64 backend (may be
 * NULL when p_drop == 0). Uses dropout site `site`. Output in a->out. */
int ag_emb_forward(const ag_ops *ops, const ag_params *p, const ag_emb_weights *w,
                   ag_emb_acts *a, const int32_t *ids, const int32_t *types, int B, int T,
                   int C, float eps, const int64_t *sample_idx, uint64_t seed, uint32_t site,
                   float p_drop);
/* dout [B,T,C] (not modified); ids/types as given to the forward. Accumulates into the
 * embedding tables' gradients, skipping tokens with id == pad_id (the config's
 * pad_token_id); ws must hold B*T*C (ag_block_ws_reserve). */
int ag_emb_backward(const ag_ops *ops, ag_params *p, const ag_emb_weights *w,
                    const ag_emb_acts *a, ag_block_ws *ws, const float *dout,
                    const int32_t *ids, const int32_t *types, int pad_id);
void ag_emb_acts_free(const ag_ops *ops, ag_emb_acts *a);

/* ------------------------------------------------------------------------------------
 * Attention block (BertAttention). Names under {prefix} (e.g. "encoder.layer.3.attention"
 * or "encoder.layer.3.crossattention"): .self.query/.key/.value.weight [C,C] and .bias [C],
 * .output.dense.weight [C,C] /.bias, .output.LayerNorm.weight/.bias [C]. */
typedef struct { int q_w, q_b, k_w, k_b, v_w, v_b, o_w, o_b, ln_w, ln_b; } ag_attn_weights;

typedef struct {
    size_t cap_q, cap_kv, cap_att;  /* capacities: B*Tq, B*Tk, B*H*Tq*Tk */
    float *q;           /* [B,Tq,C] */
    float *k, *v;       /* [B,Tk,C] */
    float *probs;       /* [B,H,Tq,Tk] softmax before dropout */
    uint8_t *pmask;     /* [B,H,Tq,Tk] attention dropout mask */
    float *ctx;         /* [B,Tq,C] attention output (input of output.dense) */
    uint8_t *hmask;     /* [B,Tq,C] hidden dropout mask after output.dense */
    float *res;         /* [B,Tq,C] x_q + drop(dense): LayerNorm input */
    float *mean, *rstd; /* [B,Tq] */
    float *out;         /* [B,Tq,C] block output */
    const float *xq, *xkv;  /* inputs of the last forward (caller keeps them alive) */
    int B, Tq, Tk;
    float p_att, p_hid;
} ag_attn_acts;

int ag_attn_register(ag_attn_weights *w, int C, ag_params *p, const char *prefix);
/* x_q [B,Tq,C], x_kv [B,Tk,C] (pass x_q for self-attention). key_mask [B,Tk] float backend
 * pointer (NULL: no padding). causal: decoder self-attention. Sites: `site` for the
 * attention-probs dropout, site + 1 for the output dropout (sample_idx is required when
 * either probability is > 0). Output in a->out. The inputs must stay unchanged until
 * backward. */
int ag_attn_forward(const ag_ops *ops, const ag_params *p, const ag_attn_weights *w,
                    ag_attn_acts *a, const float *x_q, const float *x_kv,
                    const float *key_mask, int causal, int B, int Tq, int Tk, int C, int H,
                    float eps, const int64_t *sample_idx, uint64_t seed, uint32_t site,
                    float p_att, float p_hid);
/* dout [B,Tq,C] (not modified; must not alias dx_q/dx_kv). dx_q [B,Tq,C] += ...,
 * dx_kv [B,Tk,C] += ... (for self-attention pass the same buffer twice; dx_kv may be NULL
 * for a memory that needs no gradient). ws must hold B*max(Tq,Tk)*C and B*H*Tq*Tk
 * (ag_block_ws_reserve). */
int ag_attn_backward(const ag_ops *ops, ag_params *p, const ag_attn_weights *w,
                     const ag_attn_acts *a, ag_block_ws *ws, const float *dout,
                     float *dx_q, float *dx_kv, int C, int H);
void ag_attn_acts_free(const ag_ops *ops, ag_attn_acts *a);

/* ------------------------------------------------------------------------------------
 * Feed-forward block (BertIntermediate + BertOutput). Names under {prefix} (e.g.
 * "encoder.layer.3"): .intermediate.dense.weight [I,C] /.bias [I],
 * .output.dense.weight [C,I] /.bias [C], .output.LayerNorm.weight/.bias [C]. */
typedef struct { int i_w, i_b, o_w, o_b, ln_w, ln_b; } ag_ffn_weights;

typedef struct {
    size_t cap_tok;     /* B*T */
    float *pre;         /* [B,T,I] intermediate.dense output (GELU input) */
    float *act;         /* [B,T,I] GELU output */
    uint8_t *hmask;     /* [B,T,C] */
    float *res;         /* [B,T,C] LayerNorm input */
    float *mean, *rstd; /* [B,T] */
    float *out;         /* [B,T,C] block output */
    const float *x;
    int N;              /* B*T of the last forward */
    int B;
    float p_hid;
} ag_ffn_acts;

int ag_ffn_register(ag_ffn_weights *w, int C, int inter, ag_params *p, const char *prefix);
/* x [B,T,C] -> a->out (x must stay unchanged until backward). Dropout site `site`
 * (sample_idx required when p_hid > 0). */
int ag_ffn_forward(const ag_ops *ops, const ag_params *p, const ag_ffn_weights *w,
                   ag_ffn_acts *a, const float *x, int B, int T, int C, int inter, float eps,
                   const int64_t *sample_idx, uint64_t seed, uint32_t site, float p_hid);
/* dout [B,T,C] (not modified, must not alias dx); dx [B,T,C] += ...;
 * ws must hold B*T*C and B*T*I. */
int ag_ffn_backward(const ag_ops *ops, ag_params *p, const ag_ffn_weights *w,
                    const ag_ffn_acts *a, ag_block_ws *ws, const float *dout, float *dx,
                    int C, int inter);
void ag_ffn_acts_free(const ag_ops *ops, ag_ffn_acts *a);

/* ------------------------------------------------------------------------------------
 * The encoder. */
typedef struct { ag_attn_weights attn; ag_ffn_weights ffn; } ag_bert_layer_weights;
typedef struct { ag_attn_acts attn; ag_ffn_acts ffn; } ag_bert_layer_acts;

/* One batch, HOST arrays (the model uploads them). All [B,T] row-major int32. */
typedef struct {
    int B, T;
    const int32_t *ids;          /* token ids, 0 <= id < vocab_size */
    const int32_t *types;        /* token types (NULL: all 0) */
    const int32_t *mask;         /* attention mask, 1 = real token, 0 = padding (NULL: all 1) */
    const int64_t *sample_idx;   /* [B] global sample index of each row, for dropout
                                    (NULL: row b is sample b) */
} ag_bert_batch;

typedef struct {
    ag_bert_config cfg;
    const ag_ops *ops;
    int with_pooler;
    char prefix[64];
    /* weights */
    ag_emb_weights emb;
    ag_bert_layer_weights *layer;   /* [num_hidden_layers] */
    int pool_w, pool_b;             /* pooler.dense [C,C], [C]; -1 without pooler */
    /* activations of the last forward */
    ag_emb_acts emb_acts;
    ag_bert_layer_acts *layer_acts; /* [num_hidden_layers] */
    size_t cap_tok;                 /* B*T the input buffers hold */
    int32_t *d_ids, *d_types;       /* [B,T] backend copies of the batch */
    float *d_mask;                  /* [B,T] float key mask */
    int64_t *d_sample;              /* [B] */
    size_t cap_b;
    float *cls;                     /* [B,C] gathered [CLS] states */
    float *pooled;                  /* [B,C] tanh(dense(cls)) */
    int B, T, pooled_valid, has_types;
    /* backward scratch */
    ag_block_ws ws;
    float *d_h[2];                  /* [B,T,C] ping-pong hidden-state gradients */
    size_t cap_dh;
    float *d_cls;                   /* [B,C] */
    /* Backward hook (NULL: none; ag_bert_register clears it). ag_bert_backward calls it as
     * soon as a block's parameter gradients are final for this backward pass, with the range
     * [first, last] of params-table indices the block registered: the pooler first, then per
     * layer from the last one its FFN tensors and its attention tensors, the embeddings
     * last. A training engine starts the allreduce of those gradients there and lets
     * reductions in flight progress (jobs/engine.h). A non-zero return stops the backward,
     * which then returns -1 with the hook's message. */
    int (*grad_hook)(void *ctx, int first, int last);
    void *grad_hook_ctx;
} ag_bert;

/* Registers every tensor under its Hugging Face name with `prefix` ("" for a
 * sentence-transformers bi-encoder, "bert." for BertForSequenceClassification);
 * with_pooler adds pooler.dense.weight/bias. Uses ag_ops_cpu; set m->ops afterwards for
 * another backend. Call before ag_params_alloc. */
int ag_bert_register(ag_bert *m, const ag_bert_config *cfg, ag_params *p, const char *prefix,
                     int with_pooler);
/* Hugging Face _init_weights: Linear and Embedding weights ~ N(0, 0.02), the
 * pad_token_id row of the word embeddings zero, biases 0, LayerNorm weight 1 / bias 0. Host data. */
void ag_bert_init_weights(const ag_bert *m, ag_params *p, uint64_t seed);
/* Forward over one batch. training != 0 applies dropout with the config's probabilities
 * (keyed on seed and sample indices; sites AG_SITE_ENCODER + 16*slot + k as in ops.h:
 * slot 0 embeddings, slot l+1 layer l); 0 is eval (no dropout). want_pooled computes the
 * pooler output too (needs with_pooler). Validates ids, types, mask values and T. */
int ag_bert_forward(ag_bert *m, const ag_params *p, const ag_bert_batch *in, int training,
                    uint64_t seed, int want_pooled);
/* Last hidden states [B,T,C] of the last forward (backend pointer, valid until the next
 * forward), the pooler output [B,C] (NULL if not computed), the float key mask [B,T]
 * (1 real, 0 padding) as a backend pointer. The shape is m->B, m->T. */
const float *ag_bert_hidden(const ag_bert *m);
const float *ag_bert_pooled(const ag_bert *m);
const float *ag_bert_mask(const ag_bert *m);
/* Backward of the last forward: d_hidden [B,T,C] and/or d_pooled [B,C] (backend
 * pointers; either may be NULL, not modified). Accumulates every parameter gradient into
 * p->grad (zero it first, e.g. ag_params_zero_grad, once per optimiser step). */
int ag_bert_backward(ag_bert *m, ag_params *p, const float *d_hidden, const float *d_pooled);
/* Calls m->grad_hook (if set) on the [lo, hi] range of the params-table indices ints[0..n)
 * (-1 entries are absent tensors; a block registers its tensors consecutively, so the range
 * holds exactly that block's). 0, or -1 with the hook's message in the context of
 * "OWNER [layer LAYER] WHAT backward hook" (layer < 0: none). ag_bert_backward reports its
 * blocks through it (owner "bert"); so does the TSDAE decoder for its own tensors. */
int ag_bert_grad_ready(const ag_bert *m, const int *ints, int n, const char *owner, const char *what, int layer);
/* Frees activations and scratch (not the params table). */
void ag_bert_free(ag_bert *m);

#endif
