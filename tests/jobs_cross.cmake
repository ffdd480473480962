# Cross-encoder stages: the evaluators (nn/evaluate_cross), `argent train-cross` and
# `argent label` end to end on a tiny synthetic cross-encoder (tests/cross/).
argent_test(test_evaluate_cross cross/test_evaluate_cross.c LIBS argent_nn)
