/* The BERT encoder and its reusable blocks (embeddings, attention sub-layer, FFN sub-layer),
 * forward and backward over the op interface; see bert.h for the conventions. */
#include "nn/bert.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"
#include "nn/rng.h"

/* ---------------------------------------------------------------- config and init */

void ag_bert_config_base(ag_bert_config *cfg) {
    cfg->vocab_size = 30522;
    cfg->hidden_size = 768;
    cfg->num_hidden_layers = 12;
    cfg->num_attention_heads = 12;
    cfg->intermediate_size = 3072;
    cfg->max_position_embeddings = 512;
    cfg->type_vocab_size = 2;
    cfg->layer_norm_eps = 1e-12f;
    cfg->hidden_dropout_prob = 0.1f;
    cfg->attention_probs_dropout_prob = 0.1f;
    cfg->pad_token_id = 0;
}

int ag_bert_config_check(const ag_bert_config *c) {
    if (c->vocab_size <= 0) return ag_err("bert config: vocab_size %d, expected > 0", c->vocab_size);
    if (c->hidden_size <= 0) return ag_err("bert config: hidden_size %d, expected > 0", c->hidden_size);
    if (c->num_hidden_layers < 0)
        return ag_err("bert config: num_hidden_layers %d, expected >= 0", c->num_hidden_layers);
    if (c->num_attention_heads <= 0 || c->hidden_size % c->num_attention_heads != 0)
        return ag_err("bert config: num_attention_heads %d must be > 0 and divide hidden_size %d",
                      c->num_attention_heads, c->hidden_size);
    if (c->intermediate_size <= 0)
        return ag_err("bert config: intermediate_size %d, expected > 0", c->intermediate_size);
    if (c->max_position_embeddings <= 0)
        return ag_err("bert config: max_position_embeddings %d, expected > 0",
                      c->max_position_embeddings);
    if (c->pad_token_id < -1 || c->pad_token_id >= c->vocab_size)
        return ag_err("bert config: pad_token_id %d, expected -1 (none) or an id below vocab_size %d",
                      c->pad_token_id, c->vocab_size);
    if (c->type_vocab_size < 0)
        return ag_err("bert config: type_vocab_size %d, expected >= 0", c->type_vocab_size);
    if (!(c->layer_norm_eps > 0.0f))
        return ag_err("bert config: layer_norm_eps %g, expected > 0", (double)c->layer_norm_eps);
    if (!(c->hidden_dropout_prob >= 0.0f && c->hidden_dropout_prob < 1.0f))
        return ag_err("bert config: hidden_dropout_prob %g, expected in [0, 1)",
                      (double)c->hidden_dropout_prob);
    if (!(c->attention_probs_dropout_prob >= 0.0f && c->attention_probs_dropout_prob < 1.0f))
        return ag_err("bert config: attention_probs_dropout_prob %g, expected in [0, 1)",
                      (double)c->attention_probs_dropout_prob);
    return 0;
}

/* FNV-1a: init draws are keyed on the tensor's name, not its position in the table. */
static uint64_t name_hash(const char *s) {
    uint64_t h = 1469598103934665603ull;
    for (; *s; s++) { h ^= (unsigned char)*s; h *= 1099511628211ull; }
    return h;
}

void ag_init_normal(ag_params *p, int idx, float std, uint64_t seed) {
    if (idx < 0 || !p->data) return;
    float *x = ag_params_data(p, idx);
    uint64_t a = name_hash(p->t[idx].name);
    size_t n = p->t[idx].numel;
    #pragma omp parallel for if (n > 65536)
    for (size_t i = 0; i < n; i++) x[i] = std * ag_rng_normal(seed, AG_RNG_INIT, a, 0, i);
}

void ag_init_const(ag_params *p, int idx, float value) {
    if (idx < 0 || !p->data) return;
    float *x = ag_params_data(p, idx);
    for (size_t i = 0; i < p->t[idx].numel; i++) x[i] = value;
}

/* ---------------------------------------------------------------- buffers */

/* Make *buf hold at least `need` elements of `elem` bytes (contents lost when it grows). */
static int grow(const ag_ops *ops, void **buf, size_t need, size_t elem, const char *what) {
    ops->free(*buf);
    *buf = ops->alloc(need * elem);
    if (!*buf && need) return ag_err("bert: out of memory allocating %s (%zu bytes)", what, need * elem);
    return 0;
}
#define GROW(ops, ptr, need, what) grow((ops), (void **)&(ptr), (need), sizeof *(ptr), (what))
/* Activations (nn/ops.h, "activation storage"): ops->act_bytes per element (2 on the 16-bit
 * tables). GROW stays for fp32 buffers (mean, rstd, key mask, attention probs/scratch),
 * masks and indices. */
#define GROW_ACT(ops, ptr, need, what) grow((ops), (void **)&(ptr), (need), (ops)->act_bytes, (what))

int ag_block_ws_reserve(const ag_ops *ops, ag_block_ws *ws, size_t tok_c, size_t tok_i,
                        size_t att) {
    if (tok_c > ws->cap_tok) {
        ws->cap_tok = 0;
        if (GROW_ACT(ops, ws->d_res, tok_c, "gradient scratch") ||
            GROW_ACT(ops, ws->d_tmp, tok_c, "gradient scratch") ||
            GROW_ACT(ops, ws->dq, tok_c, "gradient scratch") || GROW_ACT(ops, ws->dk, tok_c, "gradient scratch") ||
            GROW_ACT(ops, ws->dv, tok_c, "gradient scratch"))
            return -1;
        ws->cap_tok = tok_c;
    }
    if (tok_i > ws->cap_inter) {
        ws->cap_inter = 0;
        if (GROW_ACT(ops, ws->d_inter, tok_i, "FFN gradient scratch") ||
            GROW_ACT(ops, ws->d_pre, tok_i, "FFN gradient scratch"))
            return -1;
        ws->cap_inter = tok_i;
    }
    if (att > ws->cap_att) {
        ws->cap_att = 0;
        if (GROW(ops, ws->d_att, att, "attention gradient scratch")) return -1;
        ws->cap_att = att;
    }
    return 0;
}

void ag_block_ws_free(const ag_ops *ops, ag_block_ws *ws) {
    ops->free(ws->d_res); ops->free(ws->d_tmp); ops->free(ws->dq); ops->free(ws->dk);
    ops->free(ws->dv); ops->free(ws->d_inter); ops->free(ws->d_pre); ops->free(ws->d_att);
    memset(ws, 0, sizeof *ws);
}

/* Registration helper: "{prefix}{name}" with a shape; the error names the tensor. */
static int reg(ag_params *p, int *idx, const char *prefix, const char *name, int ndim,
               int64_t d0, int64_t d1) {
    char full[AG_NAME_MAX];
    int k = snprintf(full, sizeof full, "%s%s", prefix, name);
    if (k < 0 || k >= (int)sizeof full)
        return ag_err("bert: parameter name '%s%s' longer than %d characters", prefix, name,
                      AG_NAME_MAX - 1);
    int64_t shape[2] = {d0, d1};
    *idx = ag_params_add(p, full, ndim, shape);
    if (*idx < 0)
        return ag_err("bert: cannot register parameter '%s' (name already registered, or "
                      "the table was already allocated)", full);
    return 0;
}

#define PD(p, i) ag_params_data((p), (i))
#define PG(p, i) ((i) >= 0 ? ag_params_grad((p), (i)) : NULL)

/* ---------------------------------------------------------------- embeddings block */

int ag_emb_register(ag_emb_weights *w, const ag_bert_config *cfg, ag_params *p, const char *prefix) {
    int C = cfg->hidden_size;
    w->wtt = -1;
    if (reg(p, &w->wte, prefix, "embeddings.word_embeddings.weight", 2, cfg->vocab_size, C) ||
        reg(p, &w->wpe, prefix, "embeddings.position_embeddings.weight", 2,
            cfg->max_position_embeddings, C))
        return -1;
    p->t[w->wte].row_sparse = 1;   /* only the batch's tokens get a gradient (dist/allreduce.h) */
    if (cfg->type_vocab_size > 0 &&
        reg(p, &w->wtt, prefix, "embeddings.token_type_embeddings.weight", 2, cfg->type_vocab_size, C))
        return -1;
    if (reg(p, &w->ln_w, prefix, "embeddings.LayerNorm.weight", 1, C, 0) ||
        reg(p, &w->ln_b, prefix, "embeddings.LayerNorm.bias", 1, C, 0))
        return -1;
    return 0;
}

int ag_emb_forward(const ag_ops *ops, const ag_params *p, const ag_emb_weights *w,
                   ag_emb_acts *a, const int32_t *ids, const int32_t *types, int B, int T,
                   int C, float eps, const int64_t *sample_idx, uint64_t seed, uint32_t site,
                   float p_drop) {
    size_t N = (size_t)B * T;
    if (p_drop > 0.0f && !sample_idx) return ag_err("bert embeddings: dropout %g needs sample indices", (double)p_drop);
    if (N > a->cap) {
        a->cap = 0;
        if (GROW_ACT(ops, a->sum, N * C, "embedding activations") ||
            GROW_ACT(ops, a->out, N * C, "embedding activations") ||
            GROW(ops, a->mask, N * C, "embedding dropout mask") || GROW(ops, a->mean, N, "embedding activations") ||
            GROW(ops, a->rstd, N, "embedding activations"))
            return -1;
        a->cap = N;
    }
    a->B = B; a->T = T; a->p = p_drop;
    ops->embedding_forward(a->sum, ids, types, PD(p, w->wte), PD(p, w->wpe),
                           w->wtt >= 0 ? PD(p, w->wtt) : NULL, B, T, C);
    ops->layernorm_forward(a->out, a->mean, a->rstd, a->sum, PD(p, w->ln_w), PD(p, w->ln_b),
                           (int)N, C, eps);
    if (p_drop > 0.0f)
        ops->dropout_forward(a->out, a->mask, a->out, B, (size_t)T * C, sample_idx, seed, site, p_drop);
    return 0;
}

int ag_emb_backward(const ag_ops *ops, ag_params *p, const ag_emb_weights *w,
                    const ag_emb_acts *a, ag_block_ws *ws, const float *dout,
                    const int32_t *ids, const int32_t *types, int pad_id) {
    int B = a->B, T = a->T, C = (int)p->t[w->ln_w].numel;
    size_t N = (size_t)B * T;
    if (ws->cap_tok < N * C) return ag_err("bert: embedding backward scratch holds %zu floats, needs %zu",
                                           ws->cap_tok, N * C);
    const float *g = dout;
    if (a->p > 0.0f) {
        ops->zero(ws->d_tmp, N * C);
        ops->dropout_backward(ws->d_tmp, dout, a->mask, B, (size_t)T * C, a->p);
        g = ws->d_tmp;
    }
    ops->zero(ws->d_res, N * C);
    ops->layernorm_backward(ws->d_res, PG(p, w->ln_w), PG(p, w->ln_b), g, a->sum, a->mean,
                            a->rstd, PD(p, w->ln_w), (int)N, C);
    ops->embedding_backward(PG(p, w->wte), PG(p, w->wpe), PG(p, w->wtt), ws->d_res, ids,
                            types, B, T, C, pad_id);
    return 0;
}

void ag_emb_acts_free(const ag_ops *ops, ag_emb_acts *a) {
    ops->free(a->sum); ops->free(a->out); ops->free(a->mask); ops->free(a->mean); ops->free(a->rstd);
    memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------- attention block */

int ag_attn_register(ag_attn_weights *w, int C, ag_params *p, const char *prefix) {
    char pre[AG_NAME_MAX];
    int k = snprintf(pre, sizeof pre, "%s.", prefix);
    if (k < 0 || k >= (int)sizeof pre) return ag_err("bert: prefix '%s' too long", prefix);
    if (reg(p, &w->q_w, pre, "self.query.weight", 2, C, C) || reg(p, &w->q_b, pre, "self.query.bias", 1, C, 0) ||
        reg(p, &w->k_w, pre, "self.key.weight", 2, C, C) || reg(p, &w->k_b, pre, "self.key.bias", 1, C, 0) ||
        reg(p, &w->v_w, pre, "self.value.weight", 2, C, C) || reg(p, &w->v_b, pre, "self.value.bias", 1, C, 0) ||
        reg(p, &w->o_w, pre, "output.dense.weight", 2, C, C) || reg(p, &w->o_b, pre, "output.dense.bias", 1, C, 0) ||
        reg(p, &w->ln_w, pre, "output.LayerNorm.weight", 1, C, 0) ||
        reg(p, &w->ln_b, pre, "output.LayerNorm.bias", 1, C, 0))
        return -1;
    return 0;
}

int ag_attn_forward(const ag_ops *ops, const ag_params *p, const ag_attn_weights *w,
                    ag_attn_acts *a, const float *x_q, const float *x_kv,
                    const float *key_mask, int causal, int B, int Tq, int Tk, int C, int H,
                    float eps, const int64_t *sample_idx, uint64_t seed, uint32_t site,
                    float p_att, float p_hid) {
    size_t N = (size_t)B * Tq, M = (size_t)B * Tk, A = (size_t)B * H * Tq * Tk;
    if (causal && Tq != Tk) return ag_err("bert: causal attention needs Tq == Tk, got %d and %d", Tq, Tk);
    if ((p_att > 0.0f || p_hid > 0.0f) && !sample_idx)
        return ag_err("bert attention: dropout needs sample indices");
    if (N > a->cap_q) {
        a->cap_q = 0;
        if (GROW_ACT(ops, a->q, N * C, "attention activations") ||
            GROW_ACT(ops, a->ctx, N * C, "attention activations") ||
            GROW(ops, a->hmask, N * C, "attention dropout mask") ||
            GROW_ACT(ops, a->res, N * C, "attention activations") ||
            GROW_ACT(ops, a->out, N * C, "attention activations") || GROW(ops, a->mean, N, "attention activations") ||
            GROW(ops, a->rstd, N, "attention activations"))
            return -1;
        a->cap_q = N;
    }
    if (M > a->cap_kv) {
        a->cap_kv = 0;
        if (GROW_ACT(ops, a->k, M * C, "attention activations") || GROW_ACT(ops, a->v, M * C, "attention activations"))
            return -1;
        a->cap_kv = M;
    }
    if (A > a->cap_att) {
        a->cap_att = 0;
        if (GROW(ops, a->probs, A, "attention probabilities") || GROW(ops, a->pmask, A, "attention dropout mask"))
            return -1;
        a->cap_att = A;
    }
    a->xq = x_q; a->xkv = x_kv; a->B = B; a->Tq = Tq; a->Tk = Tk;
    a->p_att = p_att; a->p_hid = p_hid;

    ops->linear_forward(a->q, x_q, PD(p, w->q_w), PD(p, w->q_b), (int)N, C, C);
    ops->linear_forward(a->k, x_kv, PD(p, w->k_w), PD(p, w->k_b), (int)M, C, C);
    ops->linear_forward(a->v, x_kv, PD(p, w->v_w), PD(p, w->v_b), (int)M, C, C);
    ops->attention_forward(a->ctx, a->probs, a->pmask, a->q, a->k, a->v, key_mask, causal, B,
                           Tq, Tk, H, C / H, sample_idx, seed, site, p_att);
    /* res = x_q + dropout(ctx . Wo^T + bo): the LayerNorm input, kept for backward. */
    ops->linear_forward(a->res, a->ctx, PD(p, w->o_w), PD(p, w->o_b), (int)N, C, C);
    if (p_hid > 0.0f)
        ops->dropout_forward(a->res, a->hmask, a->res, B, (size_t)Tq * C, sample_idx, seed, site + 1, p_hid);
    if (ops->add_layernorm_forward) {
        ops->add_layernorm_forward(a->res, a->out, a->mean, a->rstd, a->res, x_q, PD(p, w->ln_w),
                                   PD(p, w->ln_b), (int)N, C, eps);
    } else {
        ops->add(a->res, a->res, x_q, N * C);
        ops->layernorm_forward(a->out, a->mean, a->rstd, a->res, PD(p, w->ln_w), PD(p, w->ln_b),
                               (int)N, C, eps);
    }
    return 0;
}

int ag_attn_backward(const ag_ops *ops, ag_params *p, const ag_attn_weights *w,
                     const ag_attn_acts *a, ag_block_ws *ws, const float *dout,
                     float *dx_q, float *dx_kv, int C, int H) {
    int B = a->B, Tq = a->Tq, Tk = a->Tk;
    size_t N = (size_t)B * Tq, M = (size_t)B * Tk, A = (size_t)B * H * Tq * Tk;
    size_t NM = N > M ? N : M;
    if (ws->cap_tok < NM * C || ws->cap_att < A)
        return ag_err("bert: attention backward scratch too small (%zu/%zu floats, needs %zu/%zu)",
                      ws->cap_tok, ws->cap_att, NM * C, A);
    /* LayerNorm, then the residual branch straight into dx_q. */
    ops->zero(ws->d_res, N * C);
    ops->layernorm_backward(ws->d_res, PG(p, w->ln_w), PG(p, w->ln_b), dout, a->res, a->mean,
                            a->rstd, PD(p, w->ln_w), (int)N, C);
    if (dx_q) ops->acc(dx_q, ws->d_res, N * C);
    /* Output dropout, then output.dense: d_tmp = d(dense out), d_res becomes d(ctx). */
    const float *g = ws->d_res;
    if (a->p_hid > 0.0f) {
        ops->zero(ws->d_tmp, N * C);
        ops->dropout_backward(ws->d_tmp, ws->d_res, a->hmask, B, (size_t)Tq * C, a->p_hid);
        g = ws->d_tmp;
    } else {
        ops->copy(ws->d_tmp, ws->d_res, N * C);
        g = ws->d_tmp;
    }
    ops->zero(ws->d_res, N * C);
    ops->linear_backward(ws->d_res, PG(p, w->o_w), PG(p, w->o_b), g, a->ctx, PD(p, w->o_w),
                         (int)N, C, C);
    /* Attention core. */
    ops->zero(ws->dq, N * C);
    ops->zero(ws->dk, M * C);
    ops->zero(ws->dv, M * C);
    ops->attention_backward(ws->dq, ws->dk, ws->dv, ws->d_att, ws->d_res, a->q, a->k, a->v,
                            a->probs, a->pmask, B, Tq, Tk, H, C / H, a->p_att);
    /* Q from x_q, K and V from x_kv (the same buffer for self-attention: sums add up). */
    ops->linear_backward(dx_q, PG(p, w->q_w), PG(p, w->q_b), ws->dq, a->xq, PD(p, w->q_w), (int)N, C, C);
    ops->linear_backward(dx_kv, PG(p, w->k_w), PG(p, w->k_b), ws->dk, a->xkv, PD(p, w->k_w), (int)M, C, C);
    ops->linear_backward(dx_kv, PG(p, w->v_w), PG(p, w->v_b), ws->dv, a->xkv, PD(p, w->v_w), (int)M, C, C);
    return 0;
}

void ag_attn_acts_free(const ag_ops *ops, ag_attn_acts *a) {
    ops->free(a->q); ops->free(a->k); ops->free(a->v); ops->free(a->probs); ops->free(a->pmask);
    ops->free(a->ctx); ops->free(a->hmask); ops->free(a->res); ops->free(a->mean);
    ops->free(a->rstd); ops->free(a->out);
    memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------- FFN block */

int ag_ffn_register(ag_ffn_weights *w, int C, int inter, ag_params *p, const char *prefix) {
    char pre[AG_NAME_MAX];
    int k = snprintf(pre, sizeof pre, "%s.", prefix);
    if (k < 0 || k >= (int)sizeof pre) return ag_err("bert: prefix '%s' too long", prefix);
    if (reg(p, &w->i_w, pre, "intermediate.dense.weight", 2, inter, C) ||
        reg(p, &w->i_b, pre, "intermediate.dense.bias", 1, inter, 0) ||
        reg(p, &w->o_w, pre, "output.dense.weight", 2, C, inter) ||
        reg(p, &w->o_b, pre, "output.dense.bias", 1, C, 0) ||
        reg(p, &w->ln_w, pre, "output.LayerNorm.weight", 1, C, 0) ||
        reg(p, &w->ln_b, pre, "output.LayerNorm.bias", 1, C, 0))
        return -1;
    return 0;
}

int ag_ffn_forward(const ag_ops *ops, const ag_params *p, const ag_ffn_weights *w,
                   ag_ffn_acts *a, const float *x, int B, int T, int C, int inter, float eps,
                   const int64_t *sample_idx, uint64_t seed, uint32_t site, float p_hid) {
    size_t N = (size_t)B * T;
    if (p_hid > 0.0f && !sample_idx) return ag_err("bert FFN: dropout %g needs sample indices", (double)p_hid);
    if (N > a->cap_tok) {
        a->cap_tok = 0;
        if (GROW_ACT(ops, a->pre, N * inter, "FFN activations") || GROW_ACT(ops, a->act, N * inter, "FFN activations") ||
            GROW(ops, a->hmask, N * C, "FFN dropout mask") || GROW_ACT(ops, a->res, N * C, "FFN activations") ||
            GROW_ACT(ops, a->out, N * C, "FFN activations") || GROW(ops, a->mean, N, "FFN activations") ||
            GROW(ops, a->rstd, N, "FFN activations"))
            return -1;
        a->cap_tok = N;
    }
    a->x = x; a->N = (int)N; a->B = B; a->p_hid = p_hid;
    if (ops->linear_gelu_forward) {
        ops->linear_gelu_forward(a->pre, a->act, x, PD(p, w->i_w), PD(p, w->i_b), (int)N, C, inter);
    } else {
        ops->linear_forward(a->pre, x, PD(p, w->i_w), PD(p, w->i_b), (int)N, C, inter);
        ops->gelu_forward(a->act, a->pre, N * inter);
    }
    ops->linear_forward(a->res, a->act, PD(p, w->o_w), PD(p, w->o_b), (int)N, inter, C);
    if (p_hid > 0.0f)
        ops->dropout_forward(a->res, a->hmask, a->res, B, (size_t)T * C, sample_idx, seed, site, p_hid);
    if (ops->add_layernorm_forward) {
        ops->add_layernorm_forward(a->res, a->out, a->mean, a->rstd, a->res, x, PD(p, w->ln_w),
                                   PD(p, w->ln_b), (int)N, C, eps);
    } else {
        ops->add(a->res, a->res, x, N * C);
        ops->layernorm_forward(a->out, a->mean, a->rstd, a->res, PD(p, w->ln_w), PD(p, w->ln_b),
                               (int)N, C, eps);
    }
    return 0;
}

int ag_ffn_backward(const ag_ops *ops, ag_params *p, const ag_ffn_weights *w,
                    const ag_ffn_acts *a, ag_block_ws *ws, const float *dout, float *dx,
                    int C, int inter) {
    size_t N = (size_t)a->N;
    if (ws->cap_tok < N * C || ws->cap_inter < N * inter)
        return ag_err("bert: FFN backward scratch too small (%zu/%zu floats, needs %zu/%zu)",
                      ws->cap_tok, ws->cap_inter, N * C, N * inter);
    ops->zero(ws->d_res, N * C);
    ops->layernorm_backward(ws->d_res, PG(p, w->ln_w), PG(p, w->ln_b), dout, a->res, a->mean,
                            a->rstd, PD(p, w->ln_w), (int)N, C);
    if (dx) ops->acc(dx, ws->d_res, N * C);
    const float *g = ws->d_res;
    if (a->p_hid > 0.0f) {
        ops->zero(ws->d_tmp, N * C);
        ops->dropout_backward(ws->d_tmp, ws->d_res, a->hmask, a->B, N / a->B * C, a->p_hid);
        g = ws->d_tmp;
    }
    ops->zero(ws->d_inter, N * inter);
    ops->linear_backward(ws->d_inter, PG(p, w->o_w), PG(p, w->o_b), g, a->act, PD(p, w->o_w),
                         (int)N, inter, C);
    ops->zero(ws->d_pre, N * inter);
    ops->gelu_backward(ws->d_pre, a->pre, ws->d_inter, N * inter);
    ops->linear_backward(dx, PG(p, w->i_w), PG(p, w->i_b), ws->d_pre, a->x, PD(p, w->i_w),
                         (int)N, C, inter);
    return 0;
}

void ag_ffn_acts_free(const ag_ops *ops, ag_ffn_acts *a) {
    ops->free(a->pre); ops->free(a->act); ops->free(a->hmask); ops->free(a->res);
    ops->free(a->mean); ops->free(a->rstd); ops->free(a->out);
    memset(a, 0, sizeof *a);
}

/* ---------------------------------------------------------------- the encoder */

int ag_bert_register(ag_bert *m, const ag_bert_config *cfg, ag_params *p, const char *prefix,
                     int with_pooler) {
    memset(m, 0, sizeof *m);
    m->pool_w = m->pool_b = -1;
    if (ag_bert_config_check(cfg)) return -1;
    if (!prefix) prefix = "";
    if (strlen(prefix) >= sizeof m->prefix)
        return ag_err("bert: prefix '%s' longer than %zu characters", prefix, sizeof m->prefix - 1);
    m->cfg = *cfg;
    m->ops = &ag_ops_cpu;
    m->with_pooler = with_pooler;
    snprintf(m->prefix, sizeof m->prefix, "%s", prefix);
    int L = cfg->num_hidden_layers, C = cfg->hidden_size;
    if (L > 0) {
        m->layer = calloc((size_t)L, sizeof *m->layer);
        m->layer_acts = calloc((size_t)L, sizeof *m->layer_acts);
        if (!m->layer || !m->layer_acts) {
            ag_bert_free(m);
            return ag_err("bert: out of memory for %d layers", L);
        }
    }
    if (ag_emb_register(&m->emb, cfg, p, prefix)) goto fail;
    for (int l = 0; l < L; l++) {
        char pre[AG_NAME_MAX];
        snprintf(pre, sizeof pre, "%sencoder.layer.%d.attention", prefix, l);
        if (ag_attn_register(&m->layer[l].attn, C, p, pre)) goto fail;
        snprintf(pre, sizeof pre, "%sencoder.layer.%d", prefix, l);
        if (ag_ffn_register(&m->layer[l].ffn, C, cfg->intermediate_size, p, pre)) goto fail;
    }
    if (with_pooler &&
        (reg(p, &m->pool_w, prefix, "pooler.dense.weight", 2, C, C) ||
         reg(p, &m->pool_b, prefix, "pooler.dense.bias", 1, C, 0)))
        goto fail;
    return 0;
fail:
    ag_err_ctx("registering BERT parameters (prefix '%s')", prefix);
    ag_bert_free(m);
    return -1;
}

void ag_bert_init_weights(const ag_bert *m, ag_params *p, uint64_t seed) {
    const float std = 0.02f;
    int C = m->cfg.hidden_size;
    ag_init_normal(p, m->emb.wte, std, seed);
    /* nn.Embedding(padding_idx=pad_token_id): HF zeroes the [PAD] row after init. */
    int pad = m->cfg.pad_token_id;
    if (pad >= 0 && pad < m->cfg.vocab_size)
        memset(ag_params_data(p, m->emb.wte) + (size_t)pad * C, 0, (size_t)C * sizeof(float));
    ag_init_normal(p, m->emb.wpe, std, seed);
    ag_init_normal(p, m->emb.wtt, std, seed);
    ag_init_const(p, m->emb.ln_w, 1.0f);
    ag_init_const(p, m->emb.ln_b, 0.0f);
    for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
        const ag_attn_weights *a = &m->layer[l].attn;
        const ag_ffn_weights *f = &m->layer[l].ffn;
        int ws[] = {a->q_w, a->k_w, a->v_w, a->o_w, f->i_w, f->o_w};
        int bs[] = {a->q_b, a->k_b, a->v_b, a->o_b, f->i_b, f->o_b, a->ln_b, f->ln_b};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) ag_init_normal(p, ws[i], std, seed);
        for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) ag_init_const(p, bs[i], 0.0f);
        ag_init_const(p, a->ln_w, 1.0f);
        ag_init_const(p, f->ln_w, 1.0f);
    }
    ag_init_normal(p, m->pool_w, std, seed);
    ag_init_const(p, m->pool_b, 0.0f);
}

/* Checks a batch against the config; the message names the row and column. */
static int check_batch(const ag_bert *m, const ag_bert_batch *in) {
    const ag_bert_config *c = &m->cfg;
    if (in->B <= 0 || in->T <= 0) return ag_err("bert: batch shape %d x %d, expected positive", in->B, in->T);
    if (in->T > c->max_position_embeddings)
        return ag_err("bert: sequence length %d exceeds max_position_embeddings %d "
                      "(truncate inputs to at most %d tokens)", in->T,
                      c->max_position_embeddings, c->max_position_embeddings);
    if (!in->ids) return ag_err("bert: batch has no token ids");
    for (int i = 0; i < in->B * in->T; i++) {
        if (in->ids[i] < 0 || in->ids[i] >= c->vocab_size)
            return ag_err("bert: token id %d at row %d, position %d is outside the vocabulary "
                          "[0, %d)", in->ids[i], i / in->T, i % in->T, c->vocab_size);
        if (in->types && (in->types[i] < 0 || in->types[i] >= (c->type_vocab_size ? c->type_vocab_size : 1)))
            return ag_err("bert: token type %d at row %d, position %d, expected 0..%d",
                          in->types[i], i / in->T, i % in->T,
                          c->type_vocab_size ? c->type_vocab_size - 1 : 0);
        if (in->mask && in->mask[i] != 0 && in->mask[i] != 1)
            return ag_err("bert: attention mask value %d at row %d, position %d, expected 0 or 1",
                          in->mask[i], i / in->T, i % in->T);
    }
    return 0;
}

int ag_bert_forward(ag_bert *m, const ag_params *p, const ag_bert_batch *in, int training,
                    uint64_t seed, int want_pooled) {
    const ag_ops *ops = m->ops;
    const ag_bert_config *c = &m->cfg;
    int B = in->B, T = in->T, C = c->hidden_size, H = c->num_attention_heads;
    if (!p->data) return ag_err("bert: parameters not allocated (call ag_params_alloc)");
    if (check_batch(m, in)) return -1;
    if (want_pooled && !m->with_pooler)
        return ag_err("bert: pooler output asked for, but the model was registered without a pooler");
    size_t N = (size_t)B * T;
    if (N > m->cap_tok) {
        m->cap_tok = 0;
        if (GROW(ops, m->d_ids, N, "token ids") || GROW(ops, m->d_types, N, "token types") ||
            GROW(ops, m->d_mask, N, "attention mask"))
            return -1;
        m->cap_tok = N;
    }
    if ((size_t)B > m->cap_b) {
        m->cap_b = 0;
        if (GROW(ops, m->d_sample, (size_t)B, "sample indices") ||
            GROW_ACT(ops, m->cls, (size_t)B * C, "pooler activations") ||
            GROW_ACT(ops, m->pooled, (size_t)B * C, "pooler activations") ||
            GROW_ACT(ops, m->d_cls, (size_t)B * C, "pooler gradient"))
            return -1;
        m->cap_b = (size_t)B;
    }
    /* Stage the host inputs: the mask becomes float (the attention op's additive-mask
     * input) and missing sample indices become 0..B-1. */
    float *hmask = malloc(N * sizeof *hmask);
    int64_t *hsamp = malloc((size_t)B * sizeof *hsamp);
    if (!hmask || !hsamp) { free(hmask); free(hsamp); return ag_err("bert: out of memory staging a batch"); }
    for (size_t i = 0; i < N; i++) hmask[i] = in->mask ? (float)in->mask[i] : 1.0f;
    for (int b = 0; b < B; b++) hsamp[b] = in->sample_idx ? in->sample_idx[b] : b;
    ops->upload(m->d_ids, in->ids, N * sizeof *m->d_ids);
    if (in->types) ops->upload(m->d_types, in->types, N * sizeof *m->d_types);
    ops->upload(m->d_mask, hmask, N * sizeof *hmask);
    ops->upload(m->d_sample, hsamp, (size_t)B * sizeof *hsamp);
    free(hmask);
    free(hsamp);
    const int32_t *types = in->types ? m->d_types : NULL;
    /* B stays 0 until the forward completes, so a backward after a failed one is refused. */
    m->B = 0; m->T = T; m->pooled_valid = 0; m->has_types = in->types != NULL;

    float ph = training ? c->hidden_dropout_prob : 0.0f;
    float pa = training ? c->attention_probs_dropout_prob : 0.0f;
    float eps = c->layer_norm_eps;
    if (ag_emb_forward(ops, p, &m->emb, &m->emb_acts, m->d_ids, types, B, T, C, eps,
                       m->d_sample, seed, AG_SITE_ENCODER, ph))
        return -1;
    const float *x = m->emb_acts.out;
    for (int l = 0; l < c->num_hidden_layers; l++) {
        ag_bert_layer_acts *la = &m->layer_acts[l];
        uint32_t site = AG_SITE_ENCODER + 16u * (uint32_t)(l + 1);
        if (ag_attn_forward(ops, p, &m->layer[l].attn, &la->attn, x, x, m->d_mask, 0, B, T, T,
                            C, H, eps, m->d_sample, seed, site, pa, ph) ||
            ag_ffn_forward(ops, p, &m->layer[l].ffn, &la->ffn, la->attn.out, B, T, C,
                           c->intermediate_size, eps, m->d_sample, seed, site + 2, ph))
            return ag_err_ctx("bert layer %d", l);
        x = la->ffn.out;
    }
    if (want_pooled) {
        /* pooler: tanh(dense(hidden[:, 0])) */
        ops->copy2d(m->cls, (size_t)C, x, (size_t)T * C, (size_t)B, (size_t)C);
        ops->linear_forward(m->pooled, m->cls, PD(p, m->pool_w), PD(p, m->pool_b), B, C, C);
        ops->tanh_forward(m->pooled, m->pooled, (size_t)B * C);
        m->pooled_valid = 1;
    }
    m->B = B;
    return 0;
}

const float *ag_bert_hidden(const ag_bert *m) {
    int L = m->cfg.num_hidden_layers;
    return L > 0 ? m->layer_acts[L - 1].ffn.out : m->emb_acts.out;
}
const float *ag_bert_pooled(const ag_bert *m) { return m->pooled_valid ? m->pooled : NULL; }
const float *ag_bert_mask(const ag_bert *m) { return m->d_mask; }

int ag_bert_grad_ready(const ag_bert *m, const int *ints, int n, const char *owner, const char *what, int layer) {
    if (!m->grad_hook) return 0;
    int lo = -1, hi = -1;
    for (int i = 0; i < n; i++) {
        if (ints[i] < 0) continue;
        if (lo < 0 || ints[i] < lo) lo = ints[i];
        if (ints[i] > hi) hi = ints[i];
    }
    if (lo < 0 || !m->grad_hook(m->grad_hook_ctx, lo, hi)) return 0;
    return layer >= 0 ? ag_err_ctx("%s layer %d %s backward hook", owner, layer, what)
                      : ag_err_ctx("%s %s backward hook", owner, what);
}

int ag_bert_backward(ag_bert *m, ag_params *p, const float *d_hidden, const float *d_pooled) {
    const ag_ops *ops = m->ops;
    const ag_bert_config *c = &m->cfg;
    int B = m->B, T = m->T, C = c->hidden_size, H = c->num_attention_heads, inter = c->intermediate_size;
    if (B <= 0) return ag_err("bert: backward called before a forward");
    if (!p->grad) return ag_err("bert: parameters not allocated (call ag_params_alloc)");
    if (d_pooled && !m->pooled_valid)
        return ag_err("bert: pooler gradient given, but the last forward computed no pooler output");
    size_t N = (size_t)B * T;
    if (N * C > m->cap_dh) {
        m->cap_dh = 0;
        if (GROW_ACT(ops, m->d_h[0], N * C, "hidden gradients") || GROW_ACT(ops, m->d_h[1], N * C, "hidden gradients"))
            return -1;
        m->cap_dh = N * C;
    }
    if (ag_block_ws_reserve(ops, &m->ws, N * C, N * inter, (size_t)B * H * T * T)) return -1;
    float *cur = m->d_h[0], *nxt = m->d_h[1];
    if (d_hidden) ops->copy(cur, d_hidden, N * C);
    else ops->zero(cur, N * C);
    if (d_pooled) {
        /* Through tanh (reads its output) and dense, into the [CLS] rows. */
        ops->zero(m->ws.d_tmp, (size_t)B * C);
        ops->tanh_backward(m->ws.d_tmp, m->pooled, d_pooled, (size_t)B * C);
        ops->zero(m->d_cls, (size_t)B * C);
        ops->linear_backward(m->d_cls, PG(p, m->pool_w), PG(p, m->pool_b), m->ws.d_tmp, m->cls,
                             PD(p, m->pool_w), B, C, C);
        ops->acc2d(cur, (size_t)T * C, m->d_cls, (size_t)C, (size_t)B, (size_t)C);
    }
    /* The pooler's gradients are final now (zero when no pooler gradient was given). */
    if (m->with_pooler && ag_bert_grad_ready(m, (const int[]){m->pool_w, m->pool_b}, 2, "bert", "pooler", -1))
        return -1;
    for (int l = c->num_hidden_layers - 1; l >= 0; l--) {
        ag_bert_layer_acts *la = &m->layer_acts[l];
        /* cur = d(layer output); FFN backward puts d(attention output) in nxt, attention
         * backward puts d(layer input) back in cur. */
        ops->zero(nxt, N * C);
        if (ag_ffn_backward(ops, p, &m->layer[l].ffn, &la->ffn, &m->ws, cur, nxt, C, inter))
            return ag_err_ctx("bert layer %d backward", l);
        const ag_ffn_weights *fw = &m->layer[l].ffn;
        if (ag_bert_grad_ready(m, (const int[]){fw->i_w, fw->i_b, fw->o_w, fw->o_b, fw->ln_w, fw->ln_b}, 6, "bert",
                               "ffn", l))
            return -1;
        ops->zero(cur, N * C);
        if (ag_attn_backward(ops, p, &m->layer[l].attn, &la->attn, &m->ws, nxt, cur, cur, C, H))
            return ag_err_ctx("bert layer %d backward", l);
        const ag_attn_weights *aw = &m->layer[l].attn;
        if (ag_bert_grad_ready(m, (const int[]){aw->q_w, aw->q_b, aw->k_w, aw->k_b, aw->v_w, aw->v_b, aw->o_w,
                                                aw->o_b, aw->ln_w, aw->ln_b}, 10, "bert", "attention", l))
            return -1;
    }
    if (ag_emb_backward(ops, p, &m->emb, &m->emb_acts, &m->ws, cur, m->d_ids,
                        m->has_types ? m->d_types : NULL, c->pad_token_id))
        return -1;
    const ag_emb_weights *ew = &m->emb;
    return ag_bert_grad_ready(m, (const int[]){ew->wte, ew->wpe, ew->wtt, ew->ln_w, ew->ln_b}, 5, "bert", "embeddings",
                              -1);
}

void ag_bert_free(ag_bert *m) {
    const ag_ops *ops = m->ops ? m->ops : &ag_ops_cpu;
    ag_emb_acts_free(ops, &m->emb_acts);
    if (m->layer_acts)
        for (int l = 0; l < m->cfg.num_hidden_layers; l++) {
            ag_attn_acts_free(ops, &m->layer_acts[l].attn);
            ag_ffn_acts_free(ops, &m->layer_acts[l].ffn);
        }
    free(m->layer_acts);
    free(m->layer);
    ops->free(m->d_ids); ops->free(m->d_types); ops->free(m->d_mask); ops->free(m->d_sample);
    ops->free(m->cls); ops->free(m->pooled); ops->free(m->d_cls);
    ops->free(m->d_h[0]); ops->free(m->d_h[1]);
    ag_block_ws_free(ops, &m->ws);
    memset(m, 0, sizeof *m);
    m->pool_w = m->pool_b = -1;
}
