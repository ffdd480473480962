/* The TSDAE decoder and its loss, forward and backward, exactly as sentence-transformers'
 * DenoisingAutoEncoderLoss computes them with tie_encoder_decoder=True (the default):
 *
 *   s      = encoder(noisy)[:, 0]                        CLS pooling           [B,C]
 *   x      = embeddings(target[:, :-1])                  tied to the encoder   [B,Tq,C]
 *   per decoder layer l (Hugging Face BertLayer with is_decoder, add_cross_attention):
 *     x    = self-attention(x), causal, NO key mask      tied: encoder layer l
 *     x    = cross-attention(x, memory = s as [B,1,C])   new weights
 *     x    = FFN(x)                                      tied: encoder layer l
 *   logits = LN(gelu(x Wt^T + bt)) wte^T + bias          BERT LM head          [B,Tq,V]
 *   loss   = mean over labels target[:, 1:] != pad of cross-entropy(logits, label)
 * with Tq = Tt - 1 (Tt the padded target length).
 *
 * Facts of the reference this follows on purpose:
 *   - The decoder gets attention_mask=None: its self-attention is causal only, so pad
 *     positions (at the end of a row) do attend to everything before them; they carry
 *     ignored labels, and no real position can see them, so they change nothing, but their
 *     values are computed the same way as torch's.
 *   - encoder_attention_mask is the source mask's first column ([CLS], always 1) and the
 *     memory has length 1, so cross-attention weights are exactly 1: its output is the
 *     value projection of s for every query, and its query weights get a zero gradient
 *     (torch's too). The C code passes no key mask there (the result is the same).
 *   - Token types are all 0 and positions count from 0 in the decoder (HF defaults).
 *   - The ignore index is the tokenizer's pad id (label_pad_id, default the config's
 *     pad_token_id); a real id equal to it is ignored as well, as in ST.
 *   - Tied gradients sum: the embeddings get the decoder's lookups (the [PAD] row excluded,
 *     nn.Embedding padding_idx) plus the LM head's projection (all rows, [PAD] included)
 *     plus the encoder's lookups; every self-attention and FFN tensor gets both uses.
 *   - Dropout (training != 0) uses the config's probabilities at the decoder sites
 *     AG_SITE_DECODER + 16*slot + k (slot 0 embeddings, slot l+1 layer l; k 0/1 self-
 *     attention probs/output, 2 FFN output, 3/4 cross-attention probs/output), keyed on the
 *     rows' global sample indices, so a decoder mask never repeats an encoder mask. The LM
 *     head has no dropout (as HF).
 *
 * Parameter names. The decoder-only tensors are registered as "decoder." + their
 * BertLMHeadModel name, which is also their name in DenoisingAutoEncoderLoss.state_dict():
 *   decoder.bert.encoder.layer.{i}.crossattention.self.{query,key,value}.{weight,bias}
 *   decoder.bert.encoder.layer.{i}.crossattention.output.dense.{weight,bias}
 *   decoder.bert.encoder.layer.{i}.crossattention.output.LayerNorm.{weight,bias}
 *   decoder.cls.predictions.transform.dense.{weight,bias}            [C,C], [C]
 *   decoder.cls.predictions.transform.LayerNorm.{weight,bias}        [C]
 *   decoder.cls.predictions.bias                                     [V]
 * The rest of a BertLMHeadModel state dict maps onto the encoder's own tensors:
 *   bert.X (X not a crossattention tensor)  -> {encoder prefix}X
 *   cls.predictions.decoder.weight          -> {encoder prefix}embeddings.word_embeddings.weight
 *   cls.predictions.decoder.bias            -> decoder.cls.predictions.bias
 * ag_tsdae_find_hf() applies that map (for import/export of the decoder).
 *
 * Backend: every op goes through the ag_ops table (nn/ops.h), except the softmax
 * cross-entropy over the vocabulary, which is host code (the op table has no such op):
 * with the CPU table it works on the logits in place; with another backend it downloads
 * the logits [B,Tq,V] and uploads their gradient, one copy each way per step.
 *
 * Typical use (one training step):
 *   ag_bert enc; ag_tsdae dec; ag_params p; ag_params_init(&p);
 *   ag_bert_register(&enc, &cfg, &p, "", 0);  ag_tsdae_register(&dec, &enc, &p);
 *   ag_params_alloc(&p);  ag_bert_init_weights(&enc, &p, seed);  ag_tsdae_init_weights(&dec, &p, seed);
 *   ag_params_zero_grad(&p);
 *   ag_tsdae_forward(&dec, &enc, &p, &noisy, target_ids, Tt, 1, seed, &loss);
 *   ag_tsdae_backward(&dec, &enc, &p, 1.0f);          (all gradients now in p.grad)
 *   ... ag_tsdae_free(&dec); ag_bert_free(&enc); ag_params_free(&p);
 * Functions returning int give 0 on success, -1 with ag_err's message on failure. */
#ifndef ARGENT_NN_TSDAE_H
#define ARGENT_NN_TSDAE_H
#include <stddef.h>
#include <stdint.h>

#include "nn/bert.h"
#include "nn/ops.h"
#include "nn/params.h"

typedef struct {
    ag_attn_weights self;   /* the encoder layer's attention (tied) */
    ag_attn_weights cross;  /* decoder.bert.encoder.layer.{i}.crossattention.* (new) */
    ag_ffn_weights ffn;     /* the encoder layer's FFN (tied) */
} ag_tsdae_layer_weights;

typedef struct { ag_attn_acts self, cross; ag_ffn_acts ffn; } ag_tsdae_layer_acts;

typedef struct {
    ag_bert_config cfg;     /* the encoder's config (the tied decoder has the same) */
    const ag_ops *ops;
    int label_pad_id;       /* cross-entropy ignore_index (the tokenizer's pad id); -1: none */
    /* weights */
    ag_emb_weights emb;     /* the encoder's embeddings (tied) */
    ag_tsdae_layer_weights *layer;  /* [num_hidden_layers] */
    int tr_w, tr_b;         /* decoder.cls.predictions.transform.dense [C,C], [C] */
    int tr_ln_w, tr_ln_b;   /* decoder.cls.predictions.transform.LayerNorm [C] */
    int out_b;              /* decoder.cls.predictions.bias [V] */
    /* activations of the last forward */
    ag_emb_acts emb_acts;
    ag_tsdae_layer_acts *layer_acts;
    int B, Ts, Tq;          /* batch, noisy length, decoder length (Tt - 1) */
    int n_tokens;           /* labels counted in the loss */
    int valid;              /* the last forward succeeded */
    double loss;
    size_t cap_b, cap_n;    /* forward capacities: rows, B*Tq tokens */
    float *mem;             /* [B,C] sentence embeddings s (the cross-attention memory) */
    int32_t *d_ids;         /* [B,Tq] decoder input ids (backend) */
    int64_t *d_sample;      /* [B] global sample indices (backend) */
    int32_t *labels;        /* [B,Tq] labels target[:, 1:] (host) */
    double *lse;            /* [B,Tq] log-sum-exp of each counted logit row (host) */
    float *head_pre;        /* [B,Tq,C] transform.dense output */
    float *head_act;        /* [B,Tq,C] GELU output */
    float *head_out;        /* [B,Tq,C] transform.LayerNorm output */
    float *head_mean, *head_rstd;  /* [B,Tq] */
    float *logits;          /* [B,Tq,V] (backend) */
    float *h_logits;        /* [B,Tq,V] host copy (non-CPU backends only) */
    /* backward scratch */
    size_t bcap_n, bcap_b, cap_src;
    ag_block_ws ws;
    float *d_h[2];          /* [B,Tq,C] ping-pong hidden-state gradients */
    float *d_head[2];       /* [B,Tq,C] LM-head gradients */
    float *d_logits;        /* [B,Tq,V] (backend) */
    float *h_dlogits;       /* [B,Tq,V] host staging (non-CPU backends only) */
    float *d_mem;           /* [B,C] gradient of s */
    float *d_enc;           /* [B,Ts,C] encoder hidden-state gradient (position 0 only) */
    /* The LM head's share of the tied word embeddings' gradient (NULL, the default: into
     * p->grad with the lookups'). Set, a [V,C] buffer of the CPU backend: the backward
     * accumulates that share there instead and calls lm_grad_ready(lm_grad_ctx) as soon as
     * it is final, before any other report, so that a data-parallel caller reduces it while
     * the rest of the backward runs (jobs/engine.h, ag_engine_grad_part). */
    float *lm_grad;
    int (*lm_grad_ready)(void *ctx);
    void *lm_grad_ctx;
} ag_tsdae;

/* Registers the decoder-only tensors (names above) in p, after ag_bert_register(enc) and
 * before ag_params_alloc, and ties everything else to enc's tensors. enc must have
 * been registered in the same table p; its ops table is used. */
int ag_tsdae_register(ag_tsdae *d, const ag_bert *enc, ag_params *p);
/* Hugging Face _init_weights for the new tensors: Linear weights ~ N(0, 0.02), biases 0,
 * LayerNorm 1 / 0, cls.predictions.bias 0 (host data; keyed on the tensor names). */
void ag_tsdae_init_weights(const ag_tsdae *d, ag_params *p, uint64_t seed);
/* Index in p of a BertLMHeadModel state-dict name (e.g. "cls.predictions.transform.dense.weight",
 * "bert.encoder.layer.0.crossattention.self.key.bias", "cls.predictions.decoder.weight"),
 * through the tie map above; -1 if the decoder has no such tensor. */
int ag_tsdae_find_hf(const ag_tsdae *d, const ag_bert *enc, const ag_params *p,
                     const char *hf_name);

/* Encoder over the noisy batch (ag_bert_forward: its ids, mask, sample indices; validated
 * there), CLS pooling, decoder over target_ids [noisy->B, Tt] (HOST int32, the clean
 * sentences, padded at the end with the pad id; Tt >= 2, Tt - 1 <= max_position_embeddings,
 * ids in [0, V)), LM head and the loss: *loss = mean cross-entropy over the labels
 * target[:, 1:] that are not label_pad_id. Fails (ag_err) when there is no such label.
 * No target mask is taken: the reference gives the decoder attention_mask=None and ignores
 * labels by id. training != 0 applies dropout in encoder and decoder (keyed on seed and
 * sample indices). Memory: the logits and, in backward, their gradient are [B,Tt-1,V]
 * floats each (B=16, Tt=75, V=30522: 145 MB each). */
int ag_tsdae_forward(ag_tsdae *d, ag_bert *enc, const ag_params *p, const ag_bert_batch *noisy,
                     const int32_t *target_ids, int Tt, int training, uint64_t seed,
                     double *loss);
/* Backward of the last forward: accumulates the gradients of gscale * loss into p->grad,
 * decoder-only tensors and tied/encoder tensors alike (the encoder's backward runs from
 * here with d(hidden) at position 0 only). gscale = 1 for a plain step; a data-parallel
 * caller picks it so that summing over ranks gives the global loss's gradient (e.g.
 * B_local / B_global for ST's average of per-rank means, n_local / n_global tokens for a
 * global token mean; see ag_tsdae_tokens). The encoder's grad_hook (nn/bert.h), if set, is
 * called for the decoder-only tensors too, as soon as each is final: the LM head's
 * transform and bias after the head's backward, each layer's cross-attention after its
 * backward; the tied tensors are reported by the encoder's backward, the last use. */
int ag_tsdae_backward(ag_tsdae *d, ag_bert *enc, ag_params *p, float gscale);

/* Of the last forward: counted (non-pad) labels; logits [B,Tt-1,V] and the sentence
 * embeddings s [B,C] as backend pointers (valid until the next forward). */
int ag_tsdae_tokens(const ag_tsdae *d);
const float *ag_tsdae_logits(const ag_tsdae *d);
const float *ag_tsdae_embedding(const ag_tsdae *d);

/* Frees activations and scratch (not the params table, not the encoder). */
void ag_tsdae_free(ag_tsdae *d);

#endif
