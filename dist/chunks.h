/* The chunked work engine (silver labeling and any other "compute something per item"
 * job): a space of N items is cut into fixed-size chunks, many more than ranks. A chunk is
 * the unit of work, of output and of resume:
 *
 *  - output: chunk c (items [c*K, min((c+1)*K, N)) for chunk size K) becomes one serial
 *    HDF5 file DIR/part-%06d.h5 holding dataset "out" float32 [items, cols] and attributes
 *    (schema, chunk, begin, end, n_items, chunk_size, cols). It is written as
 *    part-XXXXXX.h5.tmp, flushed, fsync'ed, then rename()d, so a part that exists under its
 *    final name is complete, and a *.tmp is garbage from a crash (ignored, overwritten).
 *  - resume: rank 0 lists DIR, checks every part's attributes against this run's N and K
 *    (a directory of another run is an error, not silently mixed), and broadcasts the
 *    done-map; only missing chunks are handed out. Whatever the rank count, a rerun
 *    finishes the job and every chunk's bytes depend only on the chunk.
 *  - balance: missing chunks are handed out dynamically from a shared counter, an int64 in
 *    an MPI window on rank 0 advanced with MPI_Fetch_and_op (passive target). Rank 0 works
 *    like every other rank; no rank waits for a coordinator to answer, so a slow rank only
 *    ever delays its own current chunk. (Within a node Open MPI's osc/sm does the atomics in
 *    shared memory; across nodes osc/ucx or osc/rdma do them in hardware.)
 *  - stop: a SIGTERM/SIGUSR1 makes the receiving rank stop after its current chunk and
 *    poison the counter so the others stop after theirs; stats.stopped tells the caller to
 *    exit with AG_EXIT_REQUEUE. A failing callback does the same and every rank returns -1.
 *  - merge: ag_chunks_merge presents all parts as ONE dataset [N, cols], either as an HDF5
 *    virtual dataset that maps the parts (no copy) or as a merged real file (a copy, the
 *    same bytes whatever rank count or interruptions produced the parts), with the caller's
 *    provenance attributes.
 *
 * One job per output directory at a time. */
#ifndef ARGENT_DIST_CHUNKS_H
#define ARGENT_DIST_CHUNKS_H
#include <mpi.h>
#include <stddef.h>
#include <stdint.h>

/* Compute the outputs of items [begin, end) of chunk `chunk`: set *out to a malloc'd
 * row-major [end-begin, *out_cols] buffer (the engine frees it) and *out_cols >= 1, the same
 * for every chunk. *out is NULL on entry. Return 0, or non-zero with ag_err() set. The
 * result must depend only on the items, so that reruns give the same bytes. */
typedef int (*ag_chunk_fn)(int64_t chunk, int64_t begin, int64_t end, void *ctx, float **out,
                           int *out_cols);

typedef struct {
    const char *dir;        /* output directory (created, one level, if missing) */
    const char *dataset;    /* dataset name in parts and merged files; default "out" */
    int64_t n_items;        /* N >= 1 */
    int64_t chunk_size;     /* K >= 1 */
    int deflate;            /* gzip level 0..9 of the part and merged datasets (0: none) */
    ag_chunk_fn process;
    void *ctx;
    /* Optional: a permutation of [0, N) (the caller's processing order, e.g. by cost). The
     * engine still hands out position ranges [c*K, ...); the callback maps them through it,
     * and AG_MERGE_REAL writes the row of position p as output row order[p] (assembling the
     * whole [N, cols] output in memory). AG_MERGE_VIRTUAL refuses an order. */
    const int64_t *order;
    /* Optional: a share of the chunks for one of several independent jobs (a Slurm job
     * array's tasks): with share_count > 0 ag_chunks_run processes only the missing chunks c
     * with c % share_count == share_index. Jobs sharing a directory write disjoint parts. */
    int64_t share_count, share_index;
} ag_chunks_config;

typedef struct {
    int64_t n_chunks;
    int64_t done_before;    /* complete parts found when the run started */
    int64_t processed;      /* chunks this rank processed in this run */
    int64_t processed_all;  /* chunks all ranks processed in this run */
    int64_t items;          /* items this rank processed */
    int complete;           /* every chunk now has its part */
    int share_complete;     /* every chunk of this run's share (all chunks without one) has its part */
    int stopped;            /* a stop signal ended the run early (on any rank) */
    double seconds;         /* wall time of ag_chunks_run on this rank */
} ag_chunks_stats;

typedef struct { const char *key, *value; } ag_chunk_attr;   /* a string attribute */

enum { AG_MERGE_REAL = 1, AG_MERGE_VIRTUAL = 2 };

/* dataset "out", deflate 4; dir, n_items, chunk_size and process left for the caller. */
void ag_chunks_config_default(ag_chunks_config *cfg);
int64_t ag_chunks_count(int64_t n_items, int64_t chunk_size);
void ag_chunk_range(const ag_chunks_config *cfg, int64_t chunk, int64_t *begin, int64_t *end);
/* DIR/part-XXXXXX.h5 into buf. 0, or -1 if it does not fit. */
int ag_chunk_part_path(char *buf, size_t size, const char *dir, int64_t chunk);

/* Serial: done[c] = 1 for every complete, valid part in cfg->dir (done has n_chunks
 * entries); *n_done counts them, *cols gives their width (0 when there are none). A part
 * from a run with other settings, or an unreadable part, is an error naming the file. */
int ag_chunks_donemap(const ag_chunks_config *cfg, uint8_t *done, int64_t *n_done, int *cols);

/* Collective over comm: process every missing chunk, writing its part. 0 when the run ended
 * normally (check stats.complete and stats.stopped), -1 on every rank if any rank failed
 * (the failing rank's message says why; the others say which rank failed). */
int ag_chunks_run(const ag_chunks_config *cfg, MPI_Comm comm, ag_chunks_stats *st);

/* Serial (one rank, after a complete run): write out_path presenting all parts as one
 * dataset [N, cols] with attributes schema, n_items, chunk_size, n_chunks, cols and the
 * caller's attrs (provenance: checkpoint, settings, time). kind AG_MERGE_REAL copies the
 * data into out_path (temporary name, fsync, rename); AG_MERGE_VIRTUAL writes an HDF5
 * virtual dataset mapping the parts (by a name relative to out_path's directory when that
 * is cfg->dir, else by absolute path). A missing or inconsistent part is an error naming it. */
int ag_chunks_merge(const ag_chunks_config *cfg, const char *out_path, int kind,
                    const ag_chunk_attr *attrs, int n_attrs);
#endif
