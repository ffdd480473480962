/* Cross-encoder classification head, as Hugging Face's BertForSequenceClassification puts it
 * on top of the BERT pooler: pooled [CLS] vector -> dropout -> Linear(C -> L), with the
 * tensors registered as `classifier.weight` [L,C] and `classifier.bias` [L]. The encoder
 * (nn/bert.h) computes the pooler output; this file starts from it, a host float[B,C].
 *
 * Loss as sentence-transformers' CrossEncoder trains it: one label (L = 1) -> mean
 * BCE-with-logits on float labels, predict = sigmoid; L >= 2 -> mean cross-entropy on class
 * ids, predict = logits (or softmax when asked).
 *
 * Dropout is counter-based: element c of sample s is kept when
 * ag_rng_uniform(seed, AG_RNG_DROPOUT, s, AG_XHEAD_DROPOUT_SITE, c) >= p and then scaled by
 * 1/(1-p), so the mask depends on the global sample index only, never on the batch row,
 * the batch composition or the rank count. The backward recomputes the same mask. */
#ifndef ARGENT_NN_HEAD_H
#define ARGENT_NN_HEAD_H
#include <stdint.h>

#include "nn/params.h"

/* The RNG `b` argument (site) for the head's dropout: AG_SITE_HEAD + 0 in nn/ops.h's layout
 * (encoder sites from 0, decoder from 1 << 12, heads from 1 << 13), spelt out here so that
 * the head does not depend on the op interface. */
#define AG_XHEAD_DROPOUT_SITE (1u << 13)

typedef struct {
    int w, b;            /* indices in the params table */
    int C, num_labels;
    float dropout;       /* classifier dropout p (HF: classifier_dropout, else hidden_dropout_prob) */
} ag_xhead;

/* Register classifier.weight [L,C] and classifier.bias [L] (before ag_params_alloc).
 * 0, or -1 with ag_err. */
int ag_xhead_register(ag_xhead *h, ag_params *p, int C, int num_labels, float dropout);
/* Hugging Face's _init_weights for a new head: weight ~ N(0, 0.02²), bias 0. The normal draws
 * are ag_rng_normal(seed, AG_RNG_INIT, ag_name_hash("classifier.weight"), 0, element). */
int ag_xhead_init(const ag_xhead *h, ag_params *p, uint64_t seed);

/* pooled[B,C] -> logits[B,L]. training != 0 applies dropout keyed on (seed, sample[b]);
 * sample[B] holds the global sample index of each row (may be NULL when not training).
 * xdrop[B,C] (optional in eval) receives the classifier's input, which the backward needs. */
int ag_xhead_forward(const ag_xhead *h, const ag_params *p, const float *pooled, int B,
                     const int64_t *sample, uint64_t seed, int training, float *xdrop,
                     float *logits);

/* Loss on logits[B,L]: L == 1 uses yf[B] (float targets, BCE-with-logits), L >= 2 uses
 * yi[B] (class ids, cross-entropy); the other label pointer is ignored. *loss = the mean;
 * dlogits[B,L] (optional) += gradient of gscale·loss. 0, or -1 with ag_err. */
int ag_xhead_loss(const ag_xhead *h, const float *logits, const float *yf, const int32_t *yi,
                  int B, float gscale, double *loss, float *dlogits);

/* dlogits[B,L] -> classifier gradients (+= into p->grad) and dpooled[B,C] (+=, optional),
 * through the same dropout mask as the forward (same sample, seed and training flag).
 * xdrop is the forward's. 0, or -1 with ag_err. */
int ag_xhead_backward(const ag_xhead *h, ag_params *p, const float *xdrop, const float *dlogits,
                      int B, const int64_t *sample, uint64_t seed, int training, float *dpooled);

/* What CrossEncoder.predict returns from logits[B,L]: L == 1 -> sigmoid (out[B]); L >= 2 ->
 * the logits, or their softmax when softmax != 0 (out[B,L]). */
void ag_xhead_predict(const ag_xhead *h, const float *logits, int B, int softmax, float *out);
#endif
