# Encoder tests: finite-difference checks of every op's backward and the dropout contract,
# and BERT forward/backward parity with Hugging Face (fixture from tests/fixtures/gen_bert.py).
argent_test(test_ops_fd unit/test_ops_fd.c LIBS argent_nn)
argent_test(test_bert_parity unit/test_bert_parity.c LIBS argent_nn)
