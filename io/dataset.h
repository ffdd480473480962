/* argent's HDF5 dataset of sentences and pairs: the schema (docs/formats.md), an in-memory
 * form that training and labeling use, a builder (unique sentences, pairs), and writing
 * (temporary name, fsync, rename: a failure never destroys an existing file) and reading
 * (every dataset's presence, type, rank and size checked; errors name the file and dataset).
 *
 * Layout (S sentences, N word pieces in all, P pairs):
 *   /                      attrs: argent_format "argent.dataset", schema_version 1,
 *                                 vocab_sha256, plus provenance attributes (ag_dataset_attr)
 *   /sentences/text        string[S]   variable-length UTF-8, unique texts
 *   /sentences/token_offsets int64[S+1] pieces of sentence i: tokens[off[i] .. off[i+1])
 *   /sentences/tokens      int32[N]    WordPiece ids, untruncated, no special tokens
 *   /pairs/a, /pairs/b     int32[P]    sentence ids
 *   /pairs/label           float32[P]  NaN = no label
 *   /pairs/line            int64[P]    1-based line of the pair in its source file (0: unknown)
 *   /pairs                 attrs: label_kind ("score"|"class"|"none"), source ("gold"|
 *                                 "silver"|"unlabeled"), num_classes, label_map */
#ifndef ARGENT_IO_DATASET_H
#define ARGENT_IO_DATASET_H
#include <stddef.h>
#include <stdint.h>

#include "io/readers.h"

#define AG_DATASET_FORMAT "argent.dataset"
#define AG_DATASET_SCHEMA 1

typedef enum { AG_SOURCE_GOLD = 0, AG_SOURCE_SILVER = 1, AG_SOURCE_UNLABELED = 2 } ag_source;
const char *ag_source_name(ag_source s);                 /* "gold" | "silver" | "unlabeled" */
int ag_source_parse(const char *name, ag_source *out);

/* A provenance attribute on the file's root group. */
typedef enum { AG_ATTR_STR = 0, AG_ATTR_INT = 1, AG_ATTR_FLOAT = 2, AG_ATTR_STRS = 3 } ag_attr_kind;
typedef struct {
    char *name;
    ag_attr_kind kind;
    char *s;          /* AG_ATTR_STR */
    int64_t i;        /* AG_ATTR_INT */
    double f;         /* AG_ATTR_FLOAT */
    int nstrs;        /* AG_ATTR_STRS */
    char **strs;
} ag_attr;

struct ag_dataset_index;

/* Every array is malloc'd and owned by the dataset (ag_dataset_free releases them all). */
typedef struct {
    /* sentences */
    int64_t n_sentences;            /* S */
    char *text;                     /* arena: sentence i is text + text_off[i], NUL-terminated */
    int64_t *text_off;              /* [S+1]; length of i = text_off[i+1] - text_off[i] - 1 */
    int64_t *tok_off;               /* [n_tokenized+1]; NULL until the sentences are tokenised */
    int32_t *tok;                   /* [tok_off[n_tokenized]] */
    int64_t n_tokenized;            /* sentences [0, n_tokenized) have pieces (S after read/set) */
    /* pairs */
    int64_t n_pairs;                /* P */
    int32_t *a, *b;                 /* [P] sentence ids */
    float *label;                   /* [P] NaN = no label */
    int64_t *line;                  /* [P] */
    ag_label_kind label_kind;
    ag_source source;
    int num_classes;                /* class labels lie in [0, num_classes); 0 otherwise */
    char *label_map;                /* "entailment=1,neutral=0" or NULL */
    char vocab_sha256[65];          /* "" when untokenised */
    /* provenance: extra root attributes, written and read back as they are */
    int nattr;
    ag_attr *attr;
    /* builder state */
    int64_t cap_sent, cap_text, cap_pairs;
    struct ag_dataset_index *index; /* text -> id, built on demand by ag_dataset_intern */
} ag_dataset;

void ag_dataset_init(ag_dataset *ds);
void ag_dataset_free(ag_dataset *ds);

/* Sentence text and length; its word pieces (NULL, *n = 0 when untokenised, for example
 * a sentence interned after the tokens were set). */
const char *ag_dataset_text(const ag_dataset *ds, int64_t i, size_t *len);
const int32_t *ag_dataset_tokens(const ag_dataset *ds, int64_t i, int *n);

/* Builder. intern: the id of this text, adding it if it is new (exact byte equality).
 * Returns the id, or -1 with ag_err (out of memory, more than INT32_MAX sentences). */
int64_t ag_dataset_intern(ag_dataset *ds, const char *text, size_t len);
int ag_dataset_add_pair(ag_dataset *ds, int32_t a, int32_t b, float label, int64_t line);
/* Take ownership of the pieces of all S current sentences: off [S+1], ids [off[S]]. */
void ag_dataset_set_tokens(ag_dataset *ds, int64_t *off, int32_t *ids);

/* Provenance attributes (replacing one of the same name). -1 on OOM or a reserved name. */
int ag_dataset_attr_str(ag_dataset *ds, const char *name, const char *value);
int ag_dataset_attr_int(ag_dataset *ds, const char *name, int64_t value);
int ag_dataset_attr_float(ag_dataset *ds, const char *name, double value);
int ag_dataset_attr_strs(ag_dataset *ds, const char *name, const char *const *values, int n);
const ag_attr *ag_dataset_attr_get(const ag_dataset *ds, const char *name);

/* A new dataset holding the given pairs of src (in that order) and only the sentences they
 * use, renumbered in order of first use; labels, metadata and attributes are copied. */
int ag_dataset_subset(const ag_dataset *src, const int64_t *pairs, int64_t n, ag_dataset *dst);

/* Write to path (through "<path>.tmp.<pid>", fsync, rename). Needs tokens. The file's bytes
 * depend only on the content (no timestamps), so equal datasets give identical files. */
int ag_dataset_write(const ag_dataset *ds, const char *path);
/* Read a whole file. On error, ds is left empty and ag_err names the file and the dataset. */
int ag_dataset_read(const char *path, ag_dataset *ds);
#endif
