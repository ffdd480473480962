# TSDAE: deletion noise (nn/noise) and the tied decoder + LM head + loss (nn/tsdae), the
# latter checked against sentence-transformers' DenoisingAutoEncoderLoss
# (fixture from tests/fixtures/gen_tsdae.py) and by finite differences.
argent_test(test_noise unit/test_noise.c LIBS argent_nn)
argent_test(test_tsdae unit/test_tsdae.c LIBS argent_nn)
