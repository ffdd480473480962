/* The cross-encoder as the stages use it (train-cross, label, eval): Hugging Face's
 * BertForSequenceClassification, i.e. BERT ("bert." names) -> pooler on [CLS] -> dropout ->
 * classifier (nn/head.h), fed with pairs of a dataset (io/dataset.h) built as
 * "[CLS] a [SEP] b [SEP]" by ag_tok_build_pair (longest_first truncation to max_len) and
 * padded to the longest pair of each batch.
 *
 *   ag_cross x;
 *   ag_cross_load(&x, "run/model.h5", NULL, 0);             a trained cross-encoder, or
 *   ag_cross_from_pretrained(&x, "minilm.h5", 2, NULL, seed, &fresh);   encoder + new head
 *   ag_cross_check_data(&x, &ds, "pairs.h5");               same vocab, tokenised pairs
 *   ag_cross_predict(&x, &ds, pairs, n, 64, logits);         logits [n, L], input order
 *   ag_cross_free(&x);
 *
 * Training goes through ag_cross_forward / ag_cross_backward on one batch (the caller owns
 * the loss: ag_xhead_loss on the logits). Dropout is keyed on the caller's per-pair keys, so
 * a pair gets the same mask whatever batch or rank it lands in.
 * Every function returns 0 on success, -1 with ag_errmsg() naming the file or the pair. */
#ifndef ARGENT_JOBS_CROSSENC_H
#define ARGENT_JOBS_CROSSENC_H
#include <stddef.h>
#include <stdint.h>

#include "io/dataset.h"
#include "io/hfmodel.h"
#include "io/tokenizer.h"
#include "nn/bert.h"
#include "nn/head.h"
#include "nn/params.h"

typedef struct {
    ag_model_desc md;        /* kind AG_MODEL_CROSS_ENCODER; md.max_seq_length = max_len */
    ag_bert m;               /* encoder with pooler, prefix "bert." */
    ag_xhead head;           /* classifier.weight [L,C], classifier.bias [L] */
    ag_params p;             /* the whole table: encoder, pooler, classifier */
    /* Where the encoder runs (set after loading; zero = the CPU): run_p, a device mirror of p
     * whose encoder tensors the forward/backward use (m.ops its table; the classifier stays
     * on the host, on p); grad_scale, the fp16 loss scale applied to the pooler gradient
     * uploaded for the backward (0 or 1: none). See jobs/device.h. */
    ag_params *run_p;
    float grad_scale;
    ag_tokenizer *tk;        /* the checkpoint's own vocab (special ids for building pairs) */
    char vocab_sha256[65];   /* sha256 of the vocab bytes: datasets must carry the same */
    int max_len;             /* tokens per pair including [CLS] and two [SEP] */
    /* scratch of the last batch (host) */
    int B, T;
    size_t cap_tok, cap_b;
    int32_t *ids, *types, *mask;   /* [B,T] */
    int64_t *keys;                 /* [B] dropout keys */
    float *pooled, *xdrop, *dpooled;  /* [B,C] */
} ag_cross;

/* Resolve a model argument: a checkpoint file is taken as it is; a run directory gives its
 * model.h5 when present, else its newest checkpoint (ckpt-*.h5). out gets the file. */
int ag_cross_resolve(const char *path, char *out, size_t cap);

/* Load a trained cross-encoder (file or run directory, see ag_cross_resolve; `resolved`
 * receives the file used, may be NULL). A bi-encoder or TSDAE checkpoint is an error that
 * says so. max_len comes from the checkpoint's max_seq_length. */
int ag_cross_load(ag_cross *x, const char *path, char *resolved, size_t cap);

/* A cross-encoder to fine-tune, from a pretrained model: an argent checkpoint (bi-encoder,
 * TSDAE encoder or cross-encoder; file or run directory) or a Hugging Face model folder
 * (config.json + model.safetensors). The encoder (and the pooler, when the source has one)
 * is copied under "bert."; a missing pooler and the classifier are initialised as Hugging
 * Face does (N(0, 0.02), bias 0) from `seed`. A cross-encoder source with num_labels labels
 * keeps its head; with another count its head is replaced. num_labels 1..AG_MAX_LABELS;
 * label_names (may be NULL: LABEL_i) name the classes. *fresh_head (may be NULL) tells
 * whether the head is new. */
int ag_cross_from_pretrained(ag_cross *x, const char *path, int num_labels, const char *const *label_names,
                             uint64_t seed, int *fresh_head);

/* Tokens per pair (3 .. max_position_embeddings); also sets md.max_seq_length. */
int ag_cross_set_max_len(ag_cross *x, int max_len);

/* The dataset can be fed to this model: pairs present, sentences tokenised with the same
 * vocab (sha256), every piece id inside the model's vocab. path is for messages. */
int ag_cross_check_data(const ag_cross *x, const ag_dataset *ds, const char *path);

/* Length of pair `pair` as the model sees it: min(na + nb + 3, max_len). */
int ag_cross_pair_len(const ag_cross *x, const ag_dataset *ds, int64_t pair);
/* pos[0..n) = positions into pairs (pairs NULL: the pair indices 0..n-1) ordered by truncated
 * length, longest first, ties by position: the order predictions run in. 0, or -1 (a pair
 * index outside the dataset, out of memory) with ag_err() set. */
int ag_cross_longest_first(const ag_cross *x, const ag_dataset *ds, const int64_t *pairs, int64_t n, int64_t *pos);

/* Forward of pairs[0..n) (dataset pair indices): logits [n, L] (host). training != 0 applies
 * dropout keyed on keys[i] (required then) and seed; eval needs no keys. */
int ag_cross_forward(ag_cross *x, const ag_dataset *ds, const int64_t *pairs, int n, const int64_t *keys,
                     int training, uint64_t seed, float *logits);

/* Backward of the last forward: dlogits [n, L] (host) -> gradients accumulated into x->p.grad
 * (classifier, pooler, encoder). Set x->m.grad_hook first to overlap communication. */
int ag_cross_backward(ag_cross *x, const float *dlogits, int training, uint64_t seed);

/* Eval-mode logits [n, L] of pairs[0..n), in that order, computed in batches of up to
 * batch_size pairs sorted by length (longest first, ties by position), so padding is
 * small; the result depends only on the pairs given, not on how a caller splits work. */
int ag_cross_predict(ag_cross *x, const ag_dataset *ds, const int64_t *pairs, int64_t n, int batch_size,
                     float *logits);

/* Number of labels (classifier rows). */
static inline int ag_cross_labels(const ag_cross *x) { return x->head.num_labels; }

void ag_cross_free(ag_cross *x);
#endif
