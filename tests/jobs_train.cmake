# The training engine and the bi-encoder stages (jobs/engine, train-bi, eval, encode) with
# issue 4's distributed guarantees, on a tiny random model and the small synthetic data of
# tests/train (gen_synth.py). Drivers are bash scripts that run `argent` under mpirun and
# compare runs with train_compare. Work files go under <build>/train-work.
set(TRAIN_WORK ${CMAKE_BINARY_DIR}/train-work)
set(TRAIN_SRC ${CMAKE_CURRENT_SOURCE_DIR}/train)

add_executable(train_compare train/train_compare.c)
target_link_libraries(train_compare PRIVATE argent_testsupport argent_io PkgConfig::JANSSON)

# Evaluator math against sentence-transformers (fixture from fixtures/gen_evaluate.py), and
# the BERT backward hook the engine overlaps the allreduce with.
argent_test(test_evaluate train/test_evaluate.c LIBS argent_nn)
argent_test(test_bert_hook train/test_bert_hook.c LIBS argent_nn)

set(TRAIN_TESTS)
foreach(t np resume kill diverge cli encode_eval)
  add_test(NAME train_${t}
           COMMAND bash ${TRAIN_SRC}/test_${t}.sh $<TARGET_FILE:argent> $<TARGET_FILE:train_compare>
                   ${MPIEXEC_EXECUTABLE} ${TRAIN_WORK}/${t})
  set_tests_properties(train_${t} PROPERTIES TIMEOUT 600 SKIP_RETURN_CODE 77)
  list(APPEND TRAIN_TESTS train_${t})
endforeach()

# Real weights and data: all-MiniLM-L6-v2 on STS-B dev, argent eval's 8 correlations
# against sentence-transformers' EmbeddingSimilarityEvaluator (reference made at test time
# by the committed script; skips without the model package, Python packages or data).
add_test(NAME train_sts_parity_minilm
         COMMAND python3 ${TRAIN_SRC}/sts_parity.py --argent $<TARGET_FILE:argent> --shared ${ARGENT_SHARED}
                 --out ${TRAIN_WORK}/sts-parity)
set_tests_properties(train_sts_parity_minilm PROPERTIES SKIP_RETURN_CODE 77 LABELS heavy TIMEOUT 1800
                     ENVIRONMENT "HF_HUB_OFFLINE=1;TRANSFORMERS_OFFLINE=1;OMP_NUM_THREADS=2")

# As for the dist tests: Open MPI's own leaks are suppressed, faults meant for one test
# never leak into another, one thread per rank on the shared cores.
set_property(TEST ${TRAIN_TESTS} APPEND PROPERTY ENVIRONMENT
             "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0"
             "ASAN_OPTIONS=fast_unwind_on_malloc=0"
             "ARGENT_FAULT=" "OMP_NUM_THREADS=1" "OMPI_MCA_mpi_yield_when_idle=1")
set_property(TEST ${TRAIN_TESTS} PROPERTY LABELS train)
