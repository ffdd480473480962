# Pooling, bi-encoder losses, cross-encoder head, AdamW + schedules + clipping (nn/pooling,
# nn/losses, nn/head, nn/optim), checked against sentence-transformers / torch fixtures.
argent_test(test_pooling unit/test_pooling.c LIBS argent_nn)
argent_test(test_losses unit/test_losses.c LIBS argent_nn)
argent_test(test_optim unit/test_optim.c LIBS argent_nn)
