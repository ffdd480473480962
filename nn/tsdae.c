/* The TSDAE decoder (BERT layers with causal self-attention and cross-attention to the
 * sentence embedding, tied to the encoder), the BERT LM head and the token cross-entropy,
 * forward and backward; see tsdae.h for the exact computation and the naming. */
#include "nn/tsdae.h"

#include <float.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "nn/error.h"

#define PD(p, i) ag_params_data((p), (i))
#define PG(p, i) ag_params_grad((p), (i))

/* ---------------------------------------------------------------- buffers */

/* Backend buffer of at least `need` elements (contents lost when it grows). */
static int grow(const ag_ops *ops, void **buf, size_t need, size_t elem, const char *what) {
    ops->free(*buf);
    *buf = ops->alloc(need * elem);
    if (!*buf && need) return ag_err("tsdae: out of memory allocating %s (%zu bytes)", what, need * elem);
    return 0;
}
#define GROW(ops, ptr, need, what) grow((ops), (void **)&(ptr), (need), sizeof *(ptr), (what))
/* Activations: ops->act_bytes per element (nn/ops.h, "activation storage"); GROW stays for
 * fp32 buffers (LayerNorm statistics), ids and sample indices. */
#define GROW_ACT(ops, ptr, need, what) grow((ops), (void **)&(ptr), (need), (ops)->act_bytes, (what))

/* Host buffer, same contract. */
static int grow_host(void **buf, size_t need, size_t elem, const char *what) {
    free(*buf);
    *buf = malloc(need * elem);
    if (!*buf && need) return ag_err("tsdae: out of memory allocating %s (%zu bytes)", what, need * elem);
    return 0;
}
#define GROW_HOST(ptr, need, what) grow_host((void **)&(ptr), (need), sizeof *(ptr), (what))

/* With the CPU table, backend pointers are host pointers: the loss works in place. */
static int host_backend(const ag_tsdae *d) { return d->ops == &ag_ops_cpu; }

/* ---------------------------------------------------------------- registration */

/* The tensor at index idx of p must be called "{prefix}{name}": proof that the encoder was
 * registered in this table. */
static int check_name(const ag_params *p, int idx, const char *prefix, const char *name) {
    char want[2 * AG_NAME_MAX];
    snprintf(want, sizeof want, "%s%s", prefix, name);
    if (idx < 0 || idx >= p->n || strcmp(p->t[idx].name, want) != 0)
        return ag_err("tsdae: the encoder's tensor '%s' is not at index %d of this parameter "
                      "table (register the encoder and the decoder in the same table)", want, idx);
    return 0;
}

static int add(ag_params *p, int *idx, int ndim, int64_t d0, int64_t d1, const char *name) {
    int64_t shape[2] = {d0, d1};
    *idx = ag_params_add(p, name, ndim, shape);
    if (*idx < 0)
        return ag_err("tsdae: cannot register parameter '%s' (name already registered, or the "
                      "table was already allocated: register before ag_params_alloc)", name);
    return 0;
}

int ag_tsdae_register(ag_tsdae *d, const ag_bert *enc, ag_params *p) {
    memset(d, 0, sizeof *d);
    d->tr_w = d->tr_b = d->tr_ln_w = d->tr_ln_b = d->out_b = -1;
    if (!enc || !p) return ag_err("tsdae: register needs the encoder and the parameter table");
    const ag_bert_config *c = &enc->cfg;
    int L = c->num_hidden_layers, C = c->hidden_size;
    if (L > 0 && !enc->layer) return ag_err("tsdae: the encoder is not registered (call ag_bert_register first)");
    if (p->data) return ag_err("tsdae: register the decoder before ag_params_alloc");
    if (check_name(p, enc->emb.wte, enc->prefix, "embeddings.word_embeddings.weight")) return -1;
    d->cfg = *c;
    d->ops = enc->ops ? enc->ops : &ag_ops_cpu;
    d->label_pad_id = c->pad_token_id;
    d->emb = enc->emb;
    if (L > 0) {
        d->layer = calloc((size_t)L, sizeof *d->layer);
        d->layer_acts = calloc((size_t)L, sizeof *d->layer_acts);
        if (!d->layer || !d->layer_acts) {
            ag_tsdae_free(d);
            return ag_err("tsdae: out of memory for %d layers", L);
        }
    }
    for (int l = 0; l < L; l++) {
        char pre[AG_NAME_MAX];
        d->layer[l].self = enc->layer[l].attn;
        d->layer[l].ffn = enc->layer[l].ffn;
        snprintf(pre, sizeof pre, "decoder.bert.encoder.layer.%d.crossattention", l);
        if (ag_attn_register(&d->layer[l].cross, C, p, pre)) goto fail;
    }
    if (add(p, &d->tr_w, 2, C, C, "decoder.cls.predictions.transform.dense.weight") ||
        add(p, &d->tr_b, 1, C, 0, "decoder.cls.predictions.transform.dense.bias") ||
        add(p, &d->tr_ln_w, 1, C, 0, "decoder.cls.predictions.transform.LayerNorm.weight") ||
        add(p, &d->tr_ln_b, 1, C, 0, "decoder.cls.predictions.transform.LayerNorm.bias") ||
        add(p, &d->out_b, 1, c->vocab_size, 0, "decoder.cls.predictions.bias"))
        goto fail;
    return 0;
fail:
    ag_err_ctx("registering the TSDAE decoder");
    ag_tsdae_free(d);
    return -1;
}

void ag_tsdae_init_weights(const ag_tsdae *d, ag_params *p, uint64_t seed) {
    const float std = 0.02f;  /* BertConfig.initializer_range */
    for (int l = 0; l < d->cfg.num_hidden_layers; l++) {
        const ag_attn_weights *a = &d->layer[l].cross;
        int ws[] = {a->q_w, a->k_w, a->v_w, a->o_w};
        int bs[] = {a->q_b, a->k_b, a->v_b, a->o_b, a->ln_b};
        for (size_t i = 0; i < sizeof ws / sizeof *ws; i++) ag_init_normal(p, ws[i], std, seed);
        for (size_t i = 0; i < sizeof bs / sizeof *bs; i++) ag_init_const(p, bs[i], 0.0f);
        ag_init_const(p, a->ln_w, 1.0f);
    }
    ag_init_normal(p, d->tr_w, std, seed);
    ag_init_const(p, d->tr_b, 0.0f);
    ag_init_const(p, d->tr_ln_w, 1.0f);
    ag_init_const(p, d->tr_ln_b, 0.0f);
    ag_init_const(p, d->out_b, 0.0f);
}

int ag_tsdae_find_hf(const ag_tsdae *d, const ag_bert *enc, const ag_params *p,
                     const char *hf_name) {
    char name[2 * AG_NAME_MAX];
    if (!hf_name) return -1;
    if (strcmp(hf_name, "cls.predictions.decoder.weight") == 0) return d->emb.wte;
    if (strcmp(hf_name, "cls.predictions.decoder.bias") == 0) return d->out_b;
    if (strncmp(hf_name, "cls.", 4) == 0 ||
        (strncmp(hf_name, "bert.", 5) == 0 && strstr(hf_name, ".crossattention.")))
        snprintf(name, sizeof name, "decoder.%s", hf_name);
    else if (strncmp(hf_name, "bert.", 5) == 0)
        snprintf(name, sizeof name, "%s%s", enc->prefix, hf_name + 5);
    else
        return -1;
    return ag_params_find(p, name);
}

/* ---------------------------------------------------------------- forward */

int ag_tsdae_tokens(const ag_tsdae *d) { return d->valid ? d->n_tokens : 0; }
const float *ag_tsdae_logits(const ag_tsdae *d) { return d->valid ? d->logits : NULL; }
const float *ag_tsdae_embedding(const ag_tsdae *d) { return d->valid ? d->mem : NULL; }

/* Checks the target batch; counts the labels that enter the loss. */
static int check_targets(const ag_tsdae *d, const int32_t *tgt, int B, int Tt, int *count) {
    const ag_bert_config *c = &d->cfg;
    if (!tgt) return ag_err("tsdae: no target ids");
    if (Tt < 2)
        return ag_err("tsdae: target length %d, expected at least 2 ([CLS] ... [SEP]): the "
                      "decoder reads ids[:, :-1] and predicts ids[:, 1:]", Tt);
    if (Tt - 1 > c->max_position_embeddings)
        return ag_err("tsdae: target length %d exceeds max_position_embeddings + 1 = %d "
                      "(truncate targets to at most %d tokens)", Tt,
                      c->max_position_embeddings + 1, c->max_position_embeddings + 1);
    int n = 0;
    for (int b = 0; b < B; b++)
        for (int t = 0; t < Tt; t++) {
            int32_t id = tgt[(size_t)b * Tt + t];
            if (id < 0 || id >= c->vocab_size)
                return ag_err("tsdae: target id %d at row %d, position %d is outside the "
                              "vocabulary [0, %d)", id, b, t, c->vocab_size);
            if (t > 0 && id != d->label_pad_id) n++;
        }
    if (n == 0)
        return ag_err("tsdae: no target label to predict: every id after the first column "
                      "is the pad id %d (targets must be tokenized sentences, [CLS] ... [SEP])",
                      d->label_pad_id);
    *count = n;
    return 0;
}

static int reserve_forward(ag_tsdae *d, int B, size_t N) {
    const ag_ops *ops = d->ops;
    int C = d->cfg.hidden_size;
    size_t V = (size_t)d->cfg.vocab_size;
    if ((size_t)B > d->cap_b) {
        d->cap_b = 0;
        if (GROW_ACT(ops, d->mem, (size_t)B * C, "sentence embeddings") ||
            GROW(ops, d->d_sample, (size_t)B, "sample indices"))
            return -1;
        d->cap_b = (size_t)B;
    }
    if (N > d->cap_n) {
        d->cap_n = 0;
        if (GROW(ops, d->d_ids, N, "decoder ids") || GROW_HOST(d->labels, N, "labels") ||
            GROW_HOST(d->lse, N, "log-sum-exp") ||
            GROW_ACT(ops, d->head_pre, N * C, "LM head activations") ||
            GROW_ACT(ops, d->head_act, N * C, "LM head activations") ||
            GROW_ACT(ops, d->head_out, N * C, "LM head activations") ||
            GROW(ops, d->head_mean, N, "LM head activations") ||
            GROW(ops, d->head_rstd, N, "LM head activations") ||
            GROW_ACT(ops, d->logits, N * V, "logits") ||
            (!host_backend(d) && GROW_HOST(d->h_logits, N * V, "host logits")))
            return -1;
        d->cap_n = N;
    }
    return 0;
}

/* Mean cross-entropy over the counted rows of logits [N,V] (host); keeps each row's
 * log-sum-exp for the backward. Sums of exponentials in double: a vocabulary row of
 * 30k terms stays exact to float precision. */
static double loss_host(ag_tsdae *d, const float *logits, size_t N, int V) {
    double total = 0.0;
    const int32_t *lab = d->labels;
    int ign = d->label_pad_id;
    #pragma omp parallel for reduction(+ : total) schedule(static) if (N * (size_t)V > 65536)
    for (size_t r = 0; r < N; r++) {
        if (lab[r] == ign) { d->lse[r] = 0.0; continue; }
        const float *x = logits + r * (size_t)V;
        float mx = -INFINITY;
        for (int j = 0; j < V; j++) if (x[j] > mx) mx = x[j];
        double s = 0.0;
        for (int j = 0; j < V; j++) s += expf(x[j] - mx);
        double lse = (double)mx + log(s);
        d->lse[r] = lse;
        total += lse - (double)x[lab[r]];
    }
    return total / d->n_tokens;
}

int ag_tsdae_forward(ag_tsdae *d, ag_bert *enc, const ag_params *p, const ag_bert_batch *noisy,
                     const int32_t *target_ids, int Tt, int training, uint64_t seed,
                     double *loss) {
    const ag_bert_config *c = &d->cfg;
    int L = c->num_hidden_layers, C = c->hidden_size, H = c->num_attention_heads;
    int V = c->vocab_size, inter = c->intermediate_size;
    d->valid = 0;
    if (!d->ops || d->out_b < 0 || (L > 0 && !d->layer))
        return ag_err("tsdae: decoder not registered (call ag_tsdae_register)");
    if (!enc || !p || !noisy || !loss) return ag_err("tsdae: forward needs the encoder, the parameters, the noisy batch and a loss pointer");
    if (!p->data) return ag_err("tsdae: parameters not allocated (call ag_params_alloc)");
    if (memcmp(&enc->emb, &d->emb, sizeof d->emb) != 0 || enc->cfg.num_hidden_layers != L)
        return ag_err("tsdae: the decoder was registered against another encoder");
    if (enc->ops != d->ops)
        return ag_err("tsdae: encoder (%s) and decoder (%s) use different op tables; set both",
                      enc->ops ? enc->ops->name : "none", d->ops->name);
    const ag_ops *ops = d->ops;
    int B = noisy->B;
    if (B <= 0) return ag_err("tsdae: batch size %d, expected > 0", B);
    int count = 0;
    if (check_targets(d, target_ids, B, Tt, &count)) return -1;

    /* Encoder over the noisy sentences; s = h[:, 0] (CLS pooling). */
    if (ag_bert_forward(enc, p, noisy, training, seed, 0))
        return ag_err_ctx("tsdae: encoder forward over the noisy batch");
    int Ts = noisy->T, Tq = Tt - 1;
    size_t N = (size_t)B * Tq;
    if (reserve_forward(d, B, N)) return -1;
    ops->copy2d(d->mem, (size_t)C, ag_bert_hidden(enc), (size_t)Ts * C, (size_t)B, (size_t)C);

    /* Stage the decoder input target[:, :-1] and the labels target[:, 1:]. */
    int32_t *hids = malloc(N * sizeof *hids);
    int64_t *hsamp = malloc((size_t)B * sizeof *hsamp);
    if (!hids || !hsamp) { free(hids); free(hsamp); return ag_err("tsdae: out of memory staging a batch"); }
    for (int b = 0; b < B; b++) {
        const int32_t *row = target_ids + (size_t)b * Tt;
        memcpy(hids + (size_t)b * Tq, row, (size_t)Tq * sizeof *hids);
        memcpy(d->labels + (size_t)b * Tq, row + 1, (size_t)Tq * sizeof *hids);
        hsamp[b] = noisy->sample_idx ? noisy->sample_idx[b] : b;
    }
    ops->upload(d->d_ids, hids, N * sizeof *hids);
    ops->upload(d->d_sample, hsamp, (size_t)B * sizeof *hsamp);
    free(hids);
    free(hsamp);
    d->B = B; d->Ts = Ts; d->Tq = Tq; d->n_tokens = count;

    float ph = training ? c->hidden_dropout_prob : 0.0f;
    float pa = training ? c->attention_probs_dropout_prob : 0.0f;
    float eps = c->layer_norm_eps;
    if (ag_emb_forward(ops, p, &d->emb, &d->emb_acts, d->d_ids, NULL, B, Tq, C, eps,
                       d->d_sample, seed, AG_SITE_DECODER, ph))
        return ag_err_ctx("tsdae decoder embeddings");
    const float *x = d->emb_acts.out;
    for (int l = 0; l < L; l++) {
        ag_tsdae_layer_acts *la = &d->layer_acts[l];
        uint32_t site = AG_SITE_DECODER + 16u * (uint32_t)(l + 1);
        /* attention_mask=None in the reference: causal, no key mask. Memory of length 1. */
        if (ag_attn_forward(ops, p, &d->layer[l].self, &la->self, x, x, NULL, 1, B, Tq, Tq, C,
                            H, eps, d->d_sample, seed, site, pa, ph) ||
            ag_attn_forward(ops, p, &d->layer[l].cross, &la->cross, la->self.out, d->mem, NULL,
                            0, B, Tq, 1, C, H, eps, d->d_sample, seed, site + 3, pa, ph) ||
            ag_ffn_forward(ops, p, &d->layer[l].ffn, &la->ffn, la->cross.out, B, Tq, C, inter,
                           eps, d->d_sample, seed, site + 2, ph))
            return ag_err_ctx("tsdae decoder layer %d", l);
        x = la->ffn.out;
    }
    /* LM head: dense + GELU + LayerNorm, then the tied projection onto the vocabulary. */
    if (ops->linear_gelu_forward) {
        ops->linear_gelu_forward(d->head_pre, d->head_act, x, PD(p, d->tr_w), PD(p, d->tr_b), (int)N, C, C);
    } else {
        ops->linear_forward(d->head_pre, x, PD(p, d->tr_w), PD(p, d->tr_b), (int)N, C, C);
        ops->gelu_forward(d->head_act, d->head_pre, N * C);
    }
    ops->layernorm_forward(d->head_out, d->head_mean, d->head_rstd, d->head_act,
                           PD(p, d->tr_ln_w), PD(p, d->tr_ln_b), (int)N, C, eps);
    ops->linear_forward(d->logits, d->head_out, PD(p, d->emb.wte), PD(p, d->out_b), (int)N, C, V);

    const float *hl = d->logits;
    if (!host_backend(d)) {
        ops->download_act(d->h_logits, d->logits, N * (size_t)V);  /* widened to fp32 */
        hl = d->h_logits;
    }
    d->loss = loss_host(d, hl, N, V);
    if (!isfinite(d->loss))
        return ag_err("tsdae: the loss is not finite (%g): diverged weights or inputs", d->loss);
    *loss = d->loss;
    d->valid = 1;
    return 0;
}

/* ---------------------------------------------------------------- backward */

static int reserve_backward(ag_tsdae *d) {
    const ag_ops *ops = d->ops;
    const ag_bert_config *c = &d->cfg;
    int B = d->B, C = c->hidden_size, H = c->num_attention_heads;
    size_t N = (size_t)B * d->Tq, V = (size_t)c->vocab_size;
    if (N > d->bcap_n) {
        d->bcap_n = 0;
        if (GROW_ACT(ops, d->d_h[0], N * C, "decoder gradients") ||
            GROW_ACT(ops, d->d_h[1], N * C, "decoder gradients") ||
            GROW_ACT(ops, d->d_head[0], N * C, "LM head gradients") ||
            GROW_ACT(ops, d->d_head[1], N * C, "LM head gradients") ||
            GROW_ACT(ops, d->d_logits, N * V, "logit gradients") ||
            (!host_backend(d) && GROW_HOST(d->h_dlogits, N * V, "host logit gradients")))
            return -1;
        d->bcap_n = N;
    }
    if ((size_t)B > d->bcap_b) {
        d->bcap_b = 0;
        if (GROW_ACT(ops, d->d_mem, (size_t)B * C, "sentence embedding gradients")) return -1;
        d->bcap_b = (size_t)B;
    }
    size_t src = (size_t)B * d->Ts * C;
    if (src > d->cap_src) {
        d->cap_src = 0;
        if (GROW_ACT(ops, d->d_enc, src, "encoder hidden gradients")) return -1;
        d->cap_src = src;
    }
    return ag_block_ws_reserve(ops, &d->ws, N * C, N * (size_t)c->intermediate_size,
                               N * (size_t)H * d->Tq);
}

/* dlogits[N,V] = w · (softmax(logits) - onehot(label)) on counted rows, 0 on ignored ones;
 * w = gscale / counted labels (the mean's factor). Host. */
static void dlogits_host(const ag_tsdae *d, const float *logits, float *dl, size_t N, int V,
                         float gscale) {
    const int32_t *lab = d->labels;
    int ign = d->label_pad_id;
    double w = (double)gscale / d->n_tokens;
    #pragma omp parallel for schedule(static) if (N * (size_t)V > 65536)
    for (size_t r = 0; r < N; r++) {
        float *g = dl + r * (size_t)V;
        if (lab[r] == ign) { memset(g, 0, (size_t)V * sizeof *g); continue; }
        const float *x = logits + r * (size_t)V;
        double lse = d->lse[r];
        for (int j = 0; j < V; j++) g[j] = (float)(w * exp((double)x[j] - lse));
        g[lab[r]] = (float)(w * (exp((double)x[lab[r]] - lse) - 1.0));
    }
}

int ag_tsdae_backward(ag_tsdae *d, ag_bert *enc, ag_params *p, float gscale) {
    const ag_bert_config *c = &d->cfg;
    int L = c->num_hidden_layers, C = c->hidden_size, H = c->num_attention_heads;
    int V = c->vocab_size, inter = c->intermediate_size;
    if (!d->valid) return ag_err("tsdae: backward called without a successful forward");
    if (!enc || !p || !p->grad) return ag_err("tsdae: backward needs the encoder and allocated parameters");
    if (enc->B != d->B || enc->T != d->Ts)
        return ag_err("tsdae: the encoder ran another batch (%d x %d) since the TSDAE forward "
                      "(%d x %d)", enc->B, enc->T, d->B, d->Ts);
    if (!isfinite(gscale)) return ag_err("tsdae: gradient scale %g is not finite", (double)gscale);
    const ag_ops *ops = d->ops;
    int B = d->B;
    size_t N = (size_t)B * d->Tq;
    if (reserve_backward(d)) return -1;

    /* Loss -> logits (host), then the tied projection and the head transform. */
    if (host_backend(d)) {
        dlogits_host(d, d->logits, d->d_logits, N, V, gscale);
    } else {
        dlogits_host(d, d->h_logits, d->h_dlogits, N, V, gscale);
        ops->upload_act(d->d_logits, d->h_dlogits, N * (size_t)V);  /* rounded to the table's type */
    }
    const float *x_last = L > 0 ? d->layer_acts[L - 1].ffn.out : d->emb_acts.out;
    float *g0 = d->d_head[0], *g1 = d->d_head[1];
    if (d->lm_grad && !host_backend(d))
        return ag_err("tsdae: a separate LM-head gradient (lm_grad) needs the CPU backend");
    ops->zero(g0, N * C);
    ops->linear_backward(g0, d->lm_grad ? d->lm_grad : PG(p, d->emb.wte), PG(p, d->out_b), d->d_logits,
                         d->head_out, PD(p, d->emb.wte), (int)N, C, V);
    /* The LM head's share of the tied embeddings is final (first: it starts before all). */
    if (d->lm_grad && d->lm_grad_ready && d->lm_grad_ready(d->lm_grad_ctx))
        return ag_err_ctx("tsdae: LM-head gradient ready hook");
    ops->zero(g1, N * C);
    ops->layernorm_backward(g1, PG(p, d->tr_ln_w), PG(p, d->tr_ln_b), g0, d->head_act,
                            d->head_mean, d->head_rstd, PD(p, d->tr_ln_w), (int)N, C);
    ops->zero(g0, N * C);
    ops->gelu_backward(g0, d->head_pre, g1, N * C);
    float *cur = d->d_h[0], *nxt = d->d_h[1];
    ops->zero(cur, N * C);
    ops->linear_backward(cur, PG(p, d->tr_w), PG(p, d->tr_b), g0, x_last, PD(p, d->tr_w),
                         (int)N, C, C);
    /* The LM head's own tensors (its projection is the tied word embeddings) are final:
     * reported through the encoder's hook so that their allreduce starts now (the tied
     * tensors are reported by the encoder's backward, their last use). */
    if (ag_bert_grad_ready(enc, (const int[]){d->tr_w, d->tr_b, d->tr_ln_w, d->tr_ln_b, d->out_b}, 5,
                           "tsdae decoder", "LM head", -1))
        return -1;

    /* Decoder layers, last first. cur = d(layer output) on entry, d(layer input) on exit;
     * every cross-attention adds its share of d(s) into d_mem. */
    ops->zero(d->d_mem, (size_t)B * C);
    for (int l = L - 1; l >= 0; l--) {
        ag_tsdae_layer_acts *la = &d->layer_acts[l];
        ops->zero(nxt, N * C);
        if (ag_ffn_backward(ops, p, &d->layer[l].ffn, &la->ffn, &d->ws, cur, nxt, C, inter))
            return ag_err_ctx("tsdae decoder layer %d backward (FFN)", l);
        ops->zero(cur, N * C);
        if (ag_attn_backward(ops, p, &d->layer[l].cross, &la->cross, &d->ws, nxt, cur, d->d_mem, C, H))
            return ag_err_ctx("tsdae decoder layer %d backward (cross-attention)", l);
        const ag_attn_weights *cw = &d->layer[l].cross;
        if (ag_bert_grad_ready(enc, (const int[]){cw->q_w, cw->q_b, cw->k_w, cw->k_b, cw->v_w, cw->v_b, cw->o_w,
                                                  cw->o_b, cw->ln_w, cw->ln_b}, 10, "tsdae decoder",
                               "cross-attention", l))
            return -1;
        ops->zero(nxt, N * C);
        if (ag_attn_backward(ops, p, &d->layer[l].self, &la->self, &d->ws, cur, nxt, nxt, C, H))
            return ag_err_ctx("tsdae decoder layer %d backward (self-attention)", l);
        float *t = cur; cur = nxt; nxt = t;
    }
    if (ag_emb_backward(ops, p, &d->emb, &d->emb_acts, &d->ws, cur, d->d_ids, NULL,
                        c->pad_token_id))
        return ag_err_ctx("tsdae decoder embeddings backward");

    /* s = h[:, 0]: its gradient goes to position 0 of the encoder's last hidden states. */
    size_t src = (size_t)B * d->Ts * C;
    ops->zero(d->d_enc, src);
    ops->acc2d(d->d_enc, (size_t)d->Ts * C, d->d_mem, (size_t)C, (size_t)B, (size_t)C);
    if (ag_bert_backward(enc, p, d->d_enc, NULL)) return ag_err_ctx("tsdae: encoder backward");
    return 0;
}

void ag_tsdae_free(ag_tsdae *d) {
    const ag_ops *ops = d->ops ? d->ops : &ag_ops_cpu;
    ag_emb_acts_free(ops, &d->emb_acts);
    if (d->layer_acts)
        for (int l = 0; l < d->cfg.num_hidden_layers; l++) {
            ag_attn_acts_free(ops, &d->layer_acts[l].self);
            ag_attn_acts_free(ops, &d->layer_acts[l].cross);
            ag_ffn_acts_free(ops, &d->layer_acts[l].ffn);
        }
    free(d->layer_acts);
    free(d->layer);
    ops->free(d->mem); ops->free(d->d_ids); ops->free(d->d_sample);
    ops->free(d->head_pre); ops->free(d->head_act); ops->free(d->head_out);
    ops->free(d->head_mean); ops->free(d->head_rstd); ops->free(d->logits);
    ops->free(d->d_h[0]); ops->free(d->d_h[1]); ops->free(d->d_head[0]); ops->free(d->d_head[1]);
    ops->free(d->d_logits); ops->free(d->d_mem); ops->free(d->d_enc);
    free(d->labels); free(d->lse); free(d->h_logits); free(d->h_dlogits);
    ag_block_ws_free(ops, &d->ws);
    memset(d, 0, sizeof *d);
    d->tr_w = d->tr_b = d->tr_ln_w = d->tr_ln_b = d->out_b = -1;
}
