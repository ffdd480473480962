/* Atomic HDF5 checkpoints: everything needed to resume a run (parameters, AdamW moments,
 * step, schedule, RNG seed, data position, world size) and to rebuild the model without any
 * other file (model description, pooling, normalize, max length, tokenizer settings and the
 * vocab text). Serial HDF5 (only rank 0 writes); readable with h5dump or h5py alone.
 *
 * File layout (schema version AG_CKPT_SCHEMA):
 *   /                  attrs: format = "argent-checkpoint", schema_version, model_kind,
 *                      step, world_size, rng_seed, epoch, sample_index (data position: the
 *                      next global sample within the epoch), has_optimizer, created
 *   /params/<HF name>  float32 datasets in the tensor's shape
 *   /optim/m/<name>, /optim/v/<name>  AdamW first/second moments (only when saved),
 *                      attrs on /optim: beta1, beta2, eps, weight_decay
 *   /schedule          attrs: kind ("linear"), peak_lr, warmup_steps, total_steps, last_lr
 *   /config            attrs: every BertConfig field, architecture, num_labels, id2label
 *                      (newline-separated), pooling, normalize, max_seq_length, has_pooler
 *   /tokenizer         attrs: do_lower_case, st_lower_case; dataset "vocab" (string: the
 *                      vocab.txt bytes)
 *
 * Writing: "<path>.tmp", H5Fflush, close, fsync, rename to <path>, fsync the directory.
 * HDF5 writes some metadata only at close, so the fsync comes after the close (through a
 * plain file descriptor); rename makes the file appear complete or not at all. A crash
 * leaves at most a .tmp, which readers ignore.
 *
 * In a run directory checkpoints are named ckpt-%06lld.h5 by step; ag_ckpt_save_dir
 * keeps the newest K and ag_ckpt_latest finds the newest one.
 * Every function returns 0 (or a count) on success, -1 with ag_errmsg() naming the file and
 * what was wrong; HDF5's own error stack printing is switched off. */
#ifndef ARGENT_IO_CHECKPOINT_H
#define ARGENT_IO_CHECKPOINT_H
#include <stddef.h>
#include <stdint.h>

#include "io/hfmodel.h"
#include "nn/params.h"

#define AG_CKPT_SCHEMA 1

typedef struct {
    int64_t step;             /* optimiser steps taken */
    int world_size;           /* ranks of the run that wrote it (resume may use another) */
    uint64_t rng_seed;
    int64_t epoch;            /* data position: epoch, and */
    int64_t sample_index;     /* next global sample index within it */
    /* Schedule: linear warm-up then linear decay (reference.md section 8). */
    char schedule[16];        /* "linear", "constant", "" if none */
    double peak_lr, last_lr;
    int64_t warmup_steps, total_steps;
    /* AdamW hyper-parameters the moments belong to. */
    double beta1, beta2, eps, weight_decay;
    /* fp16 dynamic loss scaling (nn/amp.h): the scale and its growth tracker, so that a
     * resumed run goes on with the same scale; 0 when the run had no loss scaler (the
     * attributes are then absent from the file). */
    double loss_scale;
    int64_t loss_scale_tracker;
} ag_train_state;

/* Step 0, world 1, seed 0, no schedule, AdamW defaults (0.9, 0.999, 1e-8, 0.01). */
void ag_train_state_init(ag_train_state *ts);

/* Write a checkpoint atomically. m and v (both or neither) are AdamW moments with the same
 * flat layout as p->data (p->total floats); NULL saves none. */
int ag_ckpt_write(const char *path, const ag_model_desc *md, const ag_train_state *ts,
                  const ag_params *p, const float *m, const float *v);

/* Read the description and training state (not the tensors): what a program needs to build
 * the model before loading. md must be initialised (ag_model_desc_init) or freed; it gets a
 * vocab. ts and has_optim may be NULL. */
int ag_ckpt_read_info(const char *path, ag_model_desc *md, ag_train_state *ts, int *has_optim);

/* Load tensors into an allocated table. Checks, and lists every mismatch of: the config
 * (when expect is not NULL; ag_model_desc_diff), tensors the table has and the file lacks,
 * tensors the file has and the table lacks, shapes, and dtypes (float32 only). m and v
 * (both or neither; p->total floats each) receive the moments; asking for them from a file
 * saved without any is an error. */
int ag_ckpt_load(const char *path, const ag_model_desc *expect, const ag_params *p, float *m, float *v);

/* Load only the tensors of p (their names, shapes and dtypes still checked), ignoring the
 * file's others: the encoder out of a TSDAE checkpoint, for example. No config check. */
int ag_ckpt_load_partial(const char *path, const ag_params *p);

/* Everything a program needs to use a checkpoint's model: read the description (md must be
 * initialised or freed; ts may be NULL), register the tables (ag_model_register) and load
 * the tensors, checked against the stored config. A TSDAE checkpoint yields its encoder
 * only (a bi-encoder table, prefix ""). head receives the classifier of a cross-encoder
 * (may be NULL). On failure m and p are freed. */
int ag_ckpt_load_model(const char *path, ag_model_desc *md, ag_bert *m, ag_xhead *head, ag_params *p,
                       ag_train_state *ts);

/* Name of the checkpoint for a step inside dir: "<dir>/ckpt-000100.h5". */
int ag_ckpt_path(char *out, size_t cap, const char *dir, int64_t step);

/* Write <dir>/ckpt-<step>.h5 (dir created if missing), then delete older complete
 * checkpoints beyond the newest `keep` (keep <= 0 keeps all) and stale .tmp files. */
int ag_ckpt_save_dir(const char *dir, int keep, const ag_model_desc *md, const ag_train_state *ts,
                     const ag_params *p, const float *m, const float *v);

/* Newest checkpoint in dir. Returns 1 and its path in out; 0 when there is none (missing or
 * empty dir: a fresh start); -1 when the newest one cannot be read (the message names it,
 * says what is wrong and names the previous checkpoint to fall back to, if any). .tmp
 * files are never considered. */
int ag_ckpt_latest(const char *dir, char *out, size_t cap);

/* Test hook: when set, called with the .tmp path after the file is complete and fsync'd but
 * before the rename (fault-injection tests kill the process there). */
extern void (*ag_ckpt_fault_hook)(const char *tmp_path);
#endif
