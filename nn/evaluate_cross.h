/* Cross-encoder evaluators, computed as sentence-transformers 6.2 computes them from the
 * output of CrossEncoder.predict (sigmoid scores for one label, logits for more):
 *
 *   correlation (CrossEncoderCorrelationEvaluator): Pearson and Spearman (average ranks for
 *     ties) of the predicted scores against gold scores; primary metric spearman.
 *   classification (CrossEncoderClassificationEvaluator):
 *     one label  -> the binary evaluator: best-threshold accuracy and its threshold, best
 *                   F1 with its precision, recall and threshold (BinaryClassificationEvaluator
 *                   find_best_acc_and_threshold / find_best_f1_and_threshold, high score =
 *                   positive), and average precision (sklearn average_precision_score);
 *                   primary metric average_precision.
 *     L >= 2     -> argmax of each row (the first maximum on ties, as numpy), then macro,
 *                   micro and support-weighted F1 over the classes that occur in the gold or
 *                   the predicted labels (sklearn f1_score); primary metric f1_macro. The
 *                   argmax accuracy is given too (sklearn accuracy_score; ST does not
 *                   report it).
 *
 * Thresholds are midpoints of neighbouring scores computed in float32, because ST runs
 * them in the dtype of predict's output (float32). Counts and ratios are in double.
 * Gold classes are int32 ids; the binary evaluator wants 0/1. Checked against the Python
 * evaluators by tests/cross/test_evaluate_cross.c (fixture tests/fixtures/gen_evaluate_cross.py).
 * All functions return 0, or -1 with ag_err naming the bad argument. */
#ifndef ARGENT_NN_EVALUATE_CROSS_H
#define ARGENT_NN_EVALUATE_CROSS_H
#include <stddef.h>
#include <stdint.h>

typedef struct {
    double pearson, spearman;
} ag_xeval_corr;

/* pred[n] against gold[n], n >= 2. A constant input gives NaN (as scipy). */
int ag_xeval_correlation(const float *pred, const float *gold, size_t n, ag_xeval_corr *out);

typedef struct {
    int num_labels;                 /* 1: the binary fields are set; >= 2: the multi-class ones */
    double accuracy;                /* binary: best-threshold accuracy; multi-class: argmax accuracy */
    /* binary (num_labels == 1) */
    double accuracy_threshold;
    double f1, precision, recall, f1_threshold;
    double average_precision;       /* 0 when the gold has no positive (as sklearn) */
    /* multi-class (num_labels >= 2) */
    double f1_macro, f1_micro, f1_weighted;
} ag_xeval_class;

/* One label: scores[n] (sigmoid outputs, or any score where higher means positive),
 * gold[n] in {0, 1}, n >= 1. */
int ag_xeval_binary(const float *scores, const int32_t *gold, size_t n, ag_xeval_class *out);

/* L >= 2 labels: logits (or probabilities) [n, L] row-major; gold[n] in [0, L). n >= 1. */
int ag_xeval_multiclass(const float *logits, int L, const int32_t *gold, size_t n, ag_xeval_class *out);

/* Dispatch on L: 1 -> ag_xeval_binary, >= 2 -> ag_xeval_multiclass. */
int ag_xeval_classification(const float *pred, int L, const int32_t *gold, size_t n, ag_xeval_class *out);

/* The metric ST reports as primary: average_precision (L == 1) or f1_macro (L >= 2). */
double ag_xeval_class_primary(const ag_xeval_class *r);
#endif
