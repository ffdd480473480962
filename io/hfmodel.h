/* Hugging Face / sentence-transformers model folders: read one into a model description
 * plus a parameter table (import), and write one that transformers, SentenceTransformer and
 * CrossEncoder load offline (export).
 *
 * Read from a folder: config.json (BertConfig; hidden_act must be "gelu"), model.safetensors,
 * vocab.txt, tokenizer_config.json (do_lower_case, model_max_length) and, when present,
 * sentence-transformers' modules.json with its Pooling folder's config.json (old boolean
 * pooling_mode_*_tokens keys or the newer "pooling_mode" string), a Normalize module, and
 * sentence_bert_config.json (max_seq_length, do_lower_case). Architecture
 * *ForSequenceClassification means a cross-encoder (BERT under "bert." + pooler +
 * classifier); anything else is a bi-encoder (BERT without prefix; pooler kept when the
 * file has one). Tensor names are accepted with or without the "bert." prefix.
 *
 * The vocab file's bytes travel inside the description so that a checkpoint made from it
 * is self-contained. */
#ifndef ARGENT_IO_HFMODEL_H
#define ARGENT_IO_HFMODEL_H
#include <stddef.h>

#include "nn/bert.h"
#include "nn/head.h"
#include "nn/params.h"
#include "nn/pooling.h"

typedef enum { AG_MODEL_BI_ENCODER = 0, AG_MODEL_CROSS_ENCODER = 1, AG_MODEL_TSDAE = 2 } ag_model_kind;

#define AG_MAX_LABELS 16
#define AG_LABEL_MAX 64

typedef struct {
    /* BertConfig (config.json). Doubles so that 1e-12 is written back as 1e-12. */
    int vocab_size, hidden_size, num_hidden_layers, num_attention_heads, intermediate_size;
    int max_position_embeddings, type_vocab_size, pad_token_id;
    double layer_norm_eps, hidden_dropout_prob, attention_probs_dropout_prob, initializer_range;
    char hidden_act[16];          /* always "gelu" */
    char architecture[64];        /* architectures[0], e.g. "BertModel" */
    /* What the model is. */
    ag_model_kind kind;
    int has_pooler;               /* pooler.dense.* in the table (always for cross-encoders) */
    int num_labels;               /* cross-encoder outputs (classifier rows) */
    char id2label[AG_MAX_LABELS][AG_LABEL_MAX];
    /* sentence-transformers pipeline (bi-encoders). */
    ag_pool_mode pooling;         /* AG_POOL_MEAN for a plain BERT checkpoint */
    int normalize;                /* a Normalize module follows pooling */
    int max_seq_length;           /* tokens per text incl. [CLS]/[SEP] */
    /* Tokenizer. */
    int do_lower_case;            /* tokenizer_config.json (BertTokenizer default: 1) */
    int st_lower_case;            /* sentence_bert_config.json do_lower_case: lower-case text first */
    char *vocab;                  /* vocab.txt bytes (owned, NUL-terminated), or NULL */
    size_t vocab_len;
} ag_model_desc;

/* bert-base-uncased defaults, bi-encoder, mean pooling, max length 512, no vocab. */
void ag_model_desc_init(ag_model_desc *md);
void ag_model_desc_free(ag_model_desc *md);
/* Deep copy (vocab included). dst must not hold a vocab (init it or free it first). */
int ag_model_desc_copy(ag_model_desc *dst, const ag_model_desc *src);
const char *ag_model_kind_name(ag_model_kind k);     /* "bi-encoder", "cross-encoder", "tsdae" */
int ag_model_kind_parse(const char *s, ag_model_kind *k);
/* Consistency: sizes positive, heads divide hidden, gelu, 1 <= num_labels <= AG_MAX_LABELS,
 * max_seq_length <= max_position_embeddings. Error names the field. */
int ag_model_desc_check(const ag_model_desc *md);
/* The fields the encoder needs. */
void ag_model_desc_bert(const ag_model_desc *md, ag_bert_config *cfg);
/* Every field that changes the parameter table or what the model computes, compared one by
 * one. Returns 0 when equal; otherwise -1 with ag_err listing every differing field as
 * "name: want X, got Y". */
int ag_model_desc_diff(const ag_model_desc *want, const ag_model_desc *got);

/* Register the model's tensors: the encoder (nn/bert.h; prefix "" for a bi-encoder,
 * "bert." for a cross-encoder), the pooler when has_pooler, and for a cross-encoder the
 * classifier (nn/head.h: classifier.weight [num_labels, C], classifier.bias [num_labels];
 * dropout hidden_dropout_prob, as HF when classifier_dropout is null) into *head, which may
 * be NULL for other kinds. Call before ag_params_alloc. TSDAE models are registered by their
 * own job, not here. */
int ag_model_register(const ag_model_desc *md, ag_bert *m, ag_params *p, ag_xhead *head);

/* Read a model folder's description (config and sentence-transformers files, vocab.txt).
 * Does not read the weights. Errors name the file and field. */
int ag_hf_read_desc(const char *dir, ag_model_desc *md);

/* Fill an allocated table from <dir>/model.safetensors, matching names with or without the
 * "bert." prefix. Missing and misshapen tensors are errors (all of them listed); unexpected
 * tensors (an MLM head, position_ids buffers) are skipped and, when notes is not NULL,
 * listed in *notes (malloc'd text, one line each; NULL when there are none). */
int ag_hf_load_weights(const char *dir, const ag_params *p, char **notes);

/* Both of the above plus registration and allocation: the whole import. On success p is
 * allocated and filled, m (and head, for a cross-encoder; may be NULL) registered, with
 * activations not yet allocated; on failure both are freed. */
int ag_hf_import(const char *dir, ag_model_desc *md, ag_bert *m, ag_xhead *head, ag_params *p, char **notes);

typedef enum { AG_EXPORT_SENTENCE_TRANSFORMERS = 0, AG_EXPORT_CROSS_ENCODER = 1 } ag_export_format;
int ag_export_format_parse(const char *s, ag_export_format *f);

/* Write a model folder (created if needed; files replaced) from a description and a table
 * whose names follow ag_model_register:
 *   sentence-transformers: config.json (BertModel), model.safetensors (no prefix), vocab.txt,
 *     tokenizer_config.json, special_tokens_map.json, modules.json (Transformer, Pooling,
 *     Normalize when set), 1_Pooling/config.json, sentence_bert_config.json,
 *     config_sentence_transformers.json -> SentenceTransformer(dir).
 *   cross-encoder: config.json (BertForSequenceClassification, num_labels, id2label/label2id),
 *     model.safetensors ("bert." prefix + classifier.*), tokenizer files -> CrossEncoder(dir).
 * The model must be a cross-encoder for the cross-encoder format, and must have a vocab. */
int ag_hf_export(const char *dir, ag_export_format fmt, const ag_model_desc *md, const ag_params *p);
#endif
