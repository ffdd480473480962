/* Bi-encoder training losses on sentence embeddings, exactly as sentence-transformers 6.2
 * computes them (the modules under sentence_transformer/losses/), each with its backward.
 *
 * Conventions for every function here:
 *   - embeddings are host float rows: u, v, a, p [B,C]; labels one per row;
 *   - *loss receives the loss value (double, so that sums over ranks stay exact enough);
 *   - gradients are those of (gscale · loss) and are ACCUMULATED (+=) into du, dv, ...
 *     (zero them first). gscale = 1 for a plain step; a distributed caller passes
 *     B_local / B_global so that summing gradients over ranks gives the global mean's;
 *   - gradient pointers may be NULL: forward only (for that input);
 *   - return 0, or -1 with ag_err saying which argument was wrong (shapes, labels, NULLs,
 *     out of memory). Nothing is written to *loss or the gradients on failure.
 *
 * Cosine similarity comes in two flavours in ST, and each loss uses its own:
 *   torch.cosine_similarity (each norm clamped to >= 1e-8): CosineSimilarityLoss, ContrastiveLoss;
 *   normalize (eps 1e-12) then dot (util.cos_sim / pairwise_cos_sim): MNRL, CoSENT. */
#ifndef ARGENT_NN_LOSSES_H
#define ARGENT_NN_LOSSES_H
#include <stdint.h>

#include "nn/params.h"

#define AG_MNRL_SCALE 20.0f          /* MultipleNegativesRankingLoss default scale */
#define AG_COSENT_SCALE 20.0f        /* CoSENTLoss default scale */
#define AG_CONTRASTIVE_MARGIN 0.5f   /* ContrastiveLoss default margin */
#define AG_IGNORE_INDEX (-100)       /* torch CrossEntropyLoss default ignore_index */

/* CosineSimilarityLoss: mean_b (cos(u_b, v_b) - y_b)^2, y [B] in [0, 1]. */
int ag_loss_cosine(const float *u, const float *v, const float *y, int B, int C, float gscale,
                   double *loss, float *du, float *dv);

/* CoSENTLoss: s_b = scale·cos(u_b, v_b); loss = log(1 + Σ_{(i,j): y_i < y_j} exp(s_i - s_j)),
 * evaluated with a max shift like ST's logsumexp (no overflow for any scale). y [B]. */
int ag_loss_cosent(const float *u, const float *v, const float *y, int B, int C, float scale,
                   float gscale, double *loss, float *du, float *dv);

/* ContrastiveLoss (cosine distance d = 1 - cos, size_average=True):
 * mean_b ½[y_b·d_b² + (1 - y_b)·relu(margin - d_b)²], y [B] (0/1; other values weight the
 * two terms as in ST). */
int ag_loss_contrastive(const float *u, const float *v, const float *y, int B, int C, float margin,
                        float gscale, double *loss, float *du, float *dv);

/* MSELoss (distillation): mean over all B·C elements of (s - t)²; s student [B,C], t teacher
 * [B,C] (a constant: no gradient). For several text columns ST averages the per-column
 * losses: call once per column with gscale / ncolumns. */
int ag_loss_mse(const float *s, const float *t, int B, int C, float gscale, double *loss, float *ds);

/* ---- MultipleNegativesRankingLoss -------------------------------------------------------
 * Row i scores its anchor against every candidate: S[i,j] = scale·cos(a_i, cand_j); the row's
 * loss is the cross-entropy with target pos[i]: logsumexp_j S[i,j] - S[i,pos[i]].
 *
 * Block form, for global in-batch negatives: a rank holds its local anchors a[nl,C] and the
 * candidates gathered from all ranks cand[nc,C] (in ST's order: all positives, then each
 * hard-negative column), and pos[i] = global index in cand of local anchor i's positive.
 * *loss_sum = Σ over the local rows (not the mean); the gradients are of gscale·loss_sum, so
 * pass gscale = 1/B_global for the global mean. da[nl,C] (+=) is for the local anchors,
 * dcand[nc,C] (+=) for every candidate: sum dcand over ranks (a reduce-scatter) and each rank
 * gets the gradient of its own candidates. Either gradient pointer may be NULL. */
int ag_mnrl_block(const float *a, int nl, const float *cand, int nc, int C, const int32_t *pos,
                  float scale, float gscale, double *loss_sum, float *da, float *dcand);

/* Symmetric block (MultipleNegativesSymmetricRankingLoss, i.e. ST's MNRL with directions
 * query_to_doc + doc_to_query, per_direction): row i's loss is ½ of the forward loss above
 * plus the backward one, the positive cand[pos[i]] scored against every anchor q_k
 * (k < nq, target k = self[i]). q[nq,C] holds the anchors gathered from all ranks and
 * self[i] the global index in q of local row i (NULL: self[i] = i, for nq == nl). Gradients:
 * dq[nq,C] (+=) for every anchor, dcand[nc,C] (+=) for every candidate: reduce both over
 * ranks. */
int ag_mnrl_sym_block(const float *q, int nq, const int32_t *self, int nl, const float *cand,
                      int nc, int C, const int32_t *pos, float scale, float gscale,
                      double *loss_sum, float *dq, float *dcand);

/* Whole-batch MNRL on one rank: anchors a[B,C], positives p[B,C], optional hard negatives
 * n[nneg·B, C] (nneg columns of B rows, column after column; NULL when nneg == 0).
 * loss = mean over the B rows; symmetric != 0 gives the symmetric variant. */
int ag_loss_mnrl(const float *a, const float *p, const float *n, int nneg, int B, int C,
                 float scale, int symmetric, float gscale, double *loss, float *da, float *dp,
                 float *dn);

/* ---- Cross-entropy pieces shared by the classifiers ------------------------------------
 * Mean cross-entropy of logits[B,L] against class ids labels[B]; rows whose label is
 * AG_IGNORE_INDEX are left out of the mean (as torch.nn.CrossEntropyLoss). dlogits[B,L] (+=).
 * Every other label must be in [0, L). With no counted row the loss is NaN, as torch's. */
int ag_loss_cross_entropy(const float *logits, const int32_t *labels, int B, int L, float gscale,
                          double *loss, float *dlogits);
/* Mean binary cross-entropy with logits x[B] against float targets y[B]
 * (torch.nn.BCEWithLogitsLoss): max(x,0) - x·y + log(1 + exp(-|x|)). dx[B] (+=). */
int ag_loss_bce_logits(const float *x, const float *y, int B, float gscale, double *loss, float *dx);

/* ---- SoftmaxLoss -------------------------------------------------------------------------
 * Classifier Linear(3C -> L) on [u; v; |u - v|] plus cross-entropy on class ids, the
 * classifier trained with the model. Its tensors live in a params table as ST names them:
 * classifier.weight [L, 3C] and classifier.bias [L] (weight decays, bias does not). */
typedef struct {
    int w, b;           /* indices in the params table */
    int C, num_labels;
} ag_softmax_loss;

/* Register classifier.weight / classifier.bias (before ag_params_alloc). 0 or -1 (ag_err). */
int ag_softmax_loss_register(ag_softmax_loss *s, ag_params *p, int C, int num_labels);
/* torch.nn.Linear's default initialisation: weight and bias ~ U(-1/sqrt(3C), 1/sqrt(3C)),
 * drawn from ag_rng_uniform(seed, AG_RNG_INIT, hash of the tensor name, 0, element). */
int ag_softmax_loss_init(const ag_softmax_loss *s, ag_params *p, uint64_t seed);
/* u, v [B,C], labels [B] in [0, L) -> *loss (mean CE); logits[B,L] (optional) receives the
 * classifier output. When du or dv is non-NULL this is a training call: the classifier's
 * gradients (of gscale·loss) are accumulated into p->grad as well. */
int ag_softmax_loss_forward(const ag_softmax_loss *s, ag_params *p, const float *u, const float *v,
                            const int32_t *labels, int B, float gscale, double *loss,
                            float *logits, float *du, float *dv);

/* Helper shared with the heads: FNV-1a hash of a tensor name, the RNG's `a` for init draws,
 * so a tensor's initial values do not depend on the order tensors were registered in. */
uint64_t ag_name_hash(const char *name);
#endif
