/* Evaluator math on sentence embeddings, exactly as sentence-transformers 6.2 computes it:
 *
 *   EmbeddingSimilarityEvaluator (STS): for each pair (u_i, v_i) with gold score y_i, the
 *   similarity by cosine, negative Manhattan (-L1), negative Euclidean (-L2) and dot product
 *   of the embeddings as they come out of the model (normalised only if the model has a
 *   Normalize module); Pearson and Spearman (average ranks for ties, scipy) of each against
 *   the gold scores; pearson_max / spearman_max over the four.
 *
 *   BinaryClassificationEvaluator (paraphrase sets, labels 0/1): for each similarity
 *   (cosine, dot: higher = more similar; Manhattan, Euclidean DISTANCES: lower = more
 *   similar) the best-threshold accuracy and its threshold, the best F1 with its precision,
 *   recall and threshold (ST's sweeps over the sorted scores, ties kept together), the
 *   average precision (sklearn's average_precision_score on the scores, negated for
 *   distances), the Matthews correlation at the F1 threshold, and the maxima over the four.
 *
 * Shapes: u, v [n, C] host floats (row i of each is pair i). Similarities are computed in
 * double from the float embeddings; ST computes them in float32, which moves correlations
 * by far less than 1e-6. All functions return 0, or -1 with ag_err on bad arguments (n < 2,
 * a label that is not 0/1) or out of memory. */
#ifndef ARGENT_NN_EVALUATE_H
#define ARGENT_NN_EVALUATE_H
#include <stddef.h>

/* Similarity functions in ST's STS column order. */
typedef enum { AG_SIM_COSINE = 0, AG_SIM_MANHATTAN = 1, AG_SIM_EUCLIDEAN = 2, AG_SIM_DOT = 3 } ag_sim_fn;
#define AG_SIM_COUNT 4
/* "cosine", "manhattan", "euclidean", "dot" (ST's similarity_fn names). */
const char *ag_sim_name(ag_sim_fn f);

/* Pairwise scores s[i] = sim(u_i, v_i): cosine (each row normalised with eps 1e-12, as
 * ST's normalize_embeddings), -sum|u-v|, -||u-v||_2, u.v. */
void ag_sim_pairwise(ag_sim_fn f, const float *u, const float *v, size_t n, int C, double *s);

typedef struct {
    double pearson[AG_SIM_COUNT], spearman[AG_SIM_COUNT];  /* indexed by ag_sim_fn */
    double pearson_max, spearman_max;
} ag_sts_result;

/* gold[n] scores (any scale: correlations do not change when they are divided by 5). */
int ag_eval_sts(const float *u, const float *v, const double *gold, size_t n, int C, ag_sts_result *r);

typedef struct {
    double accuracy, accuracy_threshold;
    double f1, precision, recall, f1_threshold;
    double ap, mcc;
} ag_binclf_metrics;

typedef struct {
    /* indexed by ag_sim_fn; for MANHATTAN and EUCLIDEAN the scores and thresholds are the
     * distances (positive), as ST reports them */
    ag_binclf_metrics fn[AG_SIM_COUNT];
    ag_binclf_metrics max;   /* per-metric maximum over the four (ST's max_*) */
} ag_binclf_result;

/* labels[n]: 0 or 1. */
int ag_eval_binary(const float *u, const float *v, const int *labels, size_t n, int C, ag_binclf_result *r);

/* The pieces, on given scores (higher_better: 1 for similarities, 0 for distances). */
int ag_best_accuracy(const double *scores, const int *labels, size_t n, int higher_better, double *acc,
                     double *threshold);
int ag_best_f1(const double *scores, const int *labels, size_t n, int higher_better, double *f1,
               double *precision, double *recall, double *threshold);
/* sklearn average_precision_score(labels, scores): sum over distinct thresholds (descending)
 * of (R_k - R_{k-1}) * P_k. NaN-free: 0 when there is no positive. */
int ag_average_precision(const double *scores, const int *labels, size_t n, double *ap);
/* sklearn matthews_corrcoef of labels against predictions (0 when a marginal is empty). */
double ag_mcc(const int *labels, const int *pred, size_t n);
#endif
