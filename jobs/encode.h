/* Sentence encoding with a bi-encoder, shared by `argent encode`, `argent eval` and the
 * evaluations inside `argent train-bi`: model input from a dataset's word pieces
 * ([CLS] pieces [SEP], truncated to max_seq_length, padded to the longest of the batch),
 * BERT forward in eval mode, pooling and optional normalisation as sentence-transformers.
 *
 * Batches are cut from the sentences sorted by length (longest first, ties by position, as
 * SentenceTransformer.encode does) and dealt round-robin over the ranks; the embeddings come
 * back in the original order. A batch is computed the same way whatever the rank count,
 * so any np gives the same bytes.
 *
 * Embeddings file (HDF5, written by rank 0 through a temporary name + rename):
 *   /embeddings  float32 [S, C], row i = sentence i of the input
 *   /            attrs: argent_format "argent.embeddings", schema_version 1, model, input,
 *                pooling, normalize, max_seq_length */
#ifndef ARGENT_JOBS_ENCODE_H
#define ARGENT_JOBS_ENCODE_H
#include <mpi.h>
#include <stdint.h>

#include "io/dataset.h"
#include "io/hfmodel.h"
#include "nn/bert.h"
#include "nn/evaluate.h"
#include "nn/params.h"
#include "nn/pooling.h"

#define AG_EMB_FORMAT "argent.embeddings"

typedef struct {
    ag_bert *m;
    const ag_params *p;
    ag_pool_mode pool;
    int normalize;
    int max_len;             /* tokens per text incl. [CLS] and [SEP] */
    int32_t cls, sep, pad;   /* special ids from the model's vocab */
    int C;
} ag_encoder;

/* Special ids [CLS], [SEP], [PAD] of a vocab.txt held in memory; -1 with ag_err when the
 * vocab lacks [CLS] or [SEP] ([PAD] defaults to 0). */
int ag_vocab_special(const char *vocab, size_t len, int32_t *cls, int32_t *sep, int32_t *pad);

/* An encoder over a loaded bi-encoder (md gives pooling, normalize, max length, vocab).
 * max_len > 0 overrides md->max_seq_length (capped by max_position_embeddings). */
int ag_encoder_init(ag_encoder *enc, ag_bert *m, const ag_params *p, const ag_model_desc *md, int max_len);

/* Model input for n texts given as word pieces: ids/mask [n, T] row-major with
 * T = the longest text after truncation (incl. specials); ids and mask must hold n * max_len
 * entries. Returns T. */
int ag_encoder_input(const ag_encoder *enc, const int32_t *const *pieces, const int *lens, int n, int32_t *ids,
                     int32_t *mask);
/* The same, padded to at least T_min (capped at the max length). */
int ag_encoder_input_pad(const ag_encoder *enc, const int32_t *const *pieces, const int *lens, int n, int T_min,
                         int32_t *ids, int32_t *mask);

/* Load a bi-encoder to use (not train): path is a checkpoint file or a run directory (its
 * model.h5, else its newest checkpoint). TSDAE checkpoints give their encoder. A
 * cross-encoder is refused with a message. On failure everything is freed. */
int ag_load_bi_encoder(const char *path, ag_model_desc *md, ag_bert *m, ag_params *p);

/* The dataset's word pieces must come from the model's vocab (same sha256). */
int ag_check_dataset_vocab(const ag_dataset *ds, const char *ds_path, const ag_model_desc *md);

/* Embeddings out[n, C] of sentences sent[0..n) of ds (eval mode), batches of `batch`.
 * Collective over comm (MPI_COMM_NULL: this process alone); the same out on every rank. */
int ag_encode(const ag_encoder *enc, const ag_dataset *ds, const int64_t *sent, int64_t n, int batch, MPI_Comm comm,
              float *out);

/* The STS evaluator (nn/evaluate.h) on the labelled pairs of a pair dataset: the distinct
 * sentences they use are encoded once (collective, as ag_encode), then the 8 correlations
 * and the maxima. *n_pairs receives the number of pairs used (NaN labels are left out). */
int ag_sts_dataset(const ag_encoder *enc, const ag_dataset *ds, int batch, MPI_Comm comm, ag_sts_result *r,
                   int64_t *n_pairs);

/* Write / read an embeddings file. Read checks the format attribute and the shape. */
int ag_embeddings_write(const char *path, const float *emb, int64_t n, int C, const char *model, const char *input,
                        const ag_encoder *enc);
int ag_embeddings_read(const char *path, float **emb, int64_t *n, int *C);
#endif
