# Cross-encoder stages: the evaluators (nn/evaluate_cross), `argent train-cross` and
# `argent label` end to end on a tiny synthetic cross-encoder (tests/cross/).
argent_test(test_evaluate_cross cross/test_evaluate_cross.c LIBS argent_nn)

# Tiny synthetic inputs (vocab, random checkpoints, pair datasets) for the stage tests.
set(CROSS_WORK ${CMAKE_BINARY_DIR}/cross-work)
add_executable(make_tiny_cross cross/make_tiny_cross.c)
target_link_libraries(make_tiny_cross PRIVATE argent_io)
add_test(NAME cross_make_tiny COMMAND make_tiny_cross ${CROSS_WORK}/tiny)
set_tests_properties(cross_make_tiny PROPERTIES FIXTURES_SETUP cross_tiny)

# The cross-encoder glue: loading, batches, gradients vs finite differences, prediction.
add_executable(test_crossenc cross/test_crossenc.c ${CMAKE_SOURCE_DIR}/jobs/crossenc.c)
target_link_libraries(test_crossenc PRIVATE argent_testsupport argent_io)
add_test(NAME cross_glue COMMAND test_crossenc ${CROSS_WORK}/tiny)
set_tests_properties(cross_glue PROPERTIES FIXTURES_REQUIRED cross_tiny)

# `argent label`: np 1 == np 3 byte for byte, kill -9 mid-run then resume at another np,
# kill between a part's write and its rename, one-label rules (tests/cross/test_label.sh).
add_executable(check_silver cross/check_silver.c)
target_link_libraries(check_silver PRIVATE argent_testsupport argent_io)
add_test(NAME cross_label
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cross/test_label.sh $<TARGET_FILE:argent> ${MPIEXEC_EXECUTABLE}
                 $<TARGET_FILE:check_silver> ${CROSS_WORK}/tiny ${CROSS_WORK}/label)
set_tests_properties(cross_label PROPERTIES FIXTURES_REQUIRED cross_tiny TIMEOUT 600)

# `argent train-cross`: learns the tiny task (2 labels at np 2; 1 label, no duplicates, np 3),
# preempted and resumed at another np (tests/cross/test_train_cross.sh).
add_test(NAME cross_train
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cross/test_train_cross.sh $<TARGET_FILE:argent> ${MPIEXEC_EXECUTABLE}
                 ${CROSS_WORK}/tiny ${CROSS_WORK}/train)
set_tests_properties(cross_train PROPERTIES FIXTURES_REQUIRED cross_tiny TIMEOUT 600)

# Bad inputs: clear errors, non-zero exits, earlier outputs untouched (test_cross_errors.sh).
add_test(NAME cross_errors
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cross/test_cross_errors.sh $<TARGET_FILE:argent> ${MPIEXEC_EXECUTABLE}
                 ${CROSS_WORK}/tiny ${CROSS_WORK}/errors)
set_tests_properties(cross_errors PROPERTIES FIXTURES_REQUIRED cross_tiny TIMEOUT 600)

# train-cross -> export --format cross-encoder -> CrossEncoder(DIR).predict == argent label's
# scores (skips, 77, without sentence-transformers / torch / h5py).
add_test(NAME cross_export_parity
         COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/cross/check_export.py $<TARGET_FILE:argent> ${MPIEXEC_EXECUTABLE}
                 ${CROSS_WORK}/tiny ${CROSS_WORK}/export)
set_tests_properties(cross_export_parity PROPERTIES FIXTURES_REQUIRED cross_tiny SKIP_RETURN_CODE 77 TIMEOUT 600
                     ENVIRONMENT "HF_HUB_OFFLINE=1;TRANSFORMERS_OFFLINE=1;OMP_NUM_THREADS=1")

set(CROSS_TESTS cross_make_tiny cross_glue cross_label cross_train cross_errors cross_export_parity test_evaluate_cross)
# Open MPI / HDF5 runtime leaks are not argent's (tests/lsan.supp); faults are the tests' own.
set_property(TEST ${CROSS_TESTS} APPEND PROPERTY ENVIRONMENT
             "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0"
             "ASAN_OPTIONS=fast_unwind_on_malloc=0" "ARGENT_FAULT=" "OMPI_MCA_mpi_yield_when_idle=1")
set_property(TEST ${CROSS_TESTS} APPEND PROPERTY LABELS cross)
