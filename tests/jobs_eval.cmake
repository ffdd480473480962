# `argent eval` of cross-encoder checkpoints (jobs/eval.c): correlation and classification
# evaluators on tiny cross-encoders trained from `argent synth` data, np 1 == np 2, and the
# error paths (tests/cli/test_eval_cross.sh); then the same numbers from
# sentence-transformers' CrossEncoderCorrelationEvaluator / CrossEncoderClassificationEvaluator
# on the exported models, within 1e-4 (tests/cli/check_eval_cross.py; skips, 77, without
# sentence-transformers / torch / sklearn).
set(EVAL_WORK ${CMAKE_BINARY_DIR}/eval-work)
add_test(NAME eval_cross
         COMMAND bash ${CMAKE_CURRENT_SOURCE_DIR}/cli/test_eval_cross.sh $<TARGET_FILE:argent> ${MPIEXEC_EXECUTABLE}
                 ${EVAL_WORK}/cross)
set_tests_properties(eval_cross PROPERTIES FIXTURES_SETUP eval_cross_models TIMEOUT 600)
add_test(NAME eval_cross_st_parity
         COMMAND sh -c "command -v python3 > /dev/null || { echo 'SKIPPED: python3 not found'; exit 77; }; \
                        exec python3 \"$0\" \"$1\" \"$2\""
                 ${CMAKE_CURRENT_SOURCE_DIR}/cli/check_eval_cross.py $<TARGET_FILE:argent> ${EVAL_WORK}/cross)
set_tests_properties(eval_cross_st_parity PROPERTIES FIXTURES_REQUIRED eval_cross_models SKIP_RETURN_CODE 77 TIMEOUT 600
                     ENVIRONMENT "HF_HUB_OFFLINE=1;TRANSFORMERS_OFFLINE=1;OMP_NUM_THREADS=1")
set_property(TEST eval_cross eval_cross_st_parity APPEND PROPERTY ENVIRONMENT
             "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0"
             "ASAN_OPTIONS=fast_unwind_on_malloc=0" "ARGENT_FAULT=" "OMPI_MCA_mpi_yield_when_idle=1")
set_property(TEST eval_cross eval_cross_st_parity APPEND PROPERTY LABELS eval)
