# argent pipeline, the recipes, argent tsdae and argent synth (jobs/pipeline.c, jobs/report.c,
# jobs/tsdae.c, jobs/synth.c, jobs/recipes/). Drivers are bash scripts under tests/pipeline
# that run `argent` under mpirun; work files go under <build>/pipeline-work.
set(PIPE_WORK ${CMAKE_BINARY_DIR}/pipeline-work)
set(PIPE_SRC ${CMAKE_CURRENT_SOURCE_DIR}/pipeline)

# Quick: the default recipe (small) end to end, a rerun that skips every stage, a pipeline
# interrupted inside a stage that resumes to the same results, recipe errors, and the
# recipes' compatibility with slurm/submit. rerun and resume reuse default's run.
set(PIPE_TESTS)
foreach(mode default rerun resume errors slurm)
  add_test(NAME pipeline_${mode}
           COMMAND bash ${PIPE_SRC}/test_pipeline.sh ${mode} $<TARGET_FILE:argent> ${MPIEXEC_EXECUTABLE}
                   ${PIPE_WORK}/pipeline ${CMAKE_SOURCE_DIR})
  set_tests_properties(pipeline_${mode} PROPERTIES TIMEOUT 900 SKIP_RETURN_CODE 77)
  list(APPEND PIPE_TESTS pipeline_${mode})
endforeach()
set_tests_properties(pipeline_default PROPERTIES FIXTURES_SETUP pipeline_run)
set_tests_properties(pipeline_rerun pipeline_resume PROPERTIES FIXTURES_REQUIRED pipeline_run)
set_tests_properties(pipeline_resume PROPERTIES DEPENDS pipeline_rerun)

# argent tsdae on synthetic data: rank-count independence (np 1, 2, 3), resume, outputs
# that eval / export / train-bi accept, option and input errors. train_compare comes from
# tests/jobs_train.cmake (a generator expression: that file is read after this one).
add_test(NAME tsdae_stage
         COMMAND bash ${PIPE_SRC}/test_tsdae.sh $<TARGET_FILE:argent> $<TARGET_FILE:train_compare>
                 ${MPIEXEC_EXECUTABLE} ${PIPE_WORK}/tsdae)
set_tests_properties(tsdae_stage PROPERTIES TIMEOUT 900 SKIP_RETURN_CODE 77)
list(APPEND PIPE_TESTS tsdae_stage)

# argent tsdae against sentence-transformers' DenoisingAutoEncoderLoss + AdamW over several
# steps and two epochs (tiny BERT without dropout, same data order and noise; reference made
# at test time by the committed script; skips without the Python packages).
add_test(NAME tsdae_st_parity
         COMMAND python3 ${PIPE_SRC}/tsdae_parity.py --argent $<TARGET_FILE:argent> --mpiexec ${MPIEXEC_EXECUTABLE}
                 --work ${PIPE_WORK}/tsdae-parity)
set_tests_properties(tsdae_st_parity PROPERTIES TIMEOUT 900 SKIP_RETURN_CODE 77
                     ENVIRONMENT "HF_HUB_OFFLINE=1;TRANSFORMERS_OFFLINE=1;OMP_NUM_THREADS=1")
list(APPEND PIPE_TESTS tsdae_st_parity)

# Heavy: the reduced Augmented SBERT recipe on the real data at np 2, its STS-B dev Spearman
# within 0.01 of sentence-transformers' on the same reduced recipe (tests/pipeline/
# st_augsbert.py, run at test time into the build folder and cached there).
add_test(NAME pipeline_augsbert_real
         COMMAND bash ${PIPE_SRC}/test_augsbert_real.sh $<TARGET_FILE:argent> ${MPIEXEC_EXECUTABLE}
                 ${PIPE_WORK}/augsbert-real ${ARGENT_SHARED}/data ${CMAKE_SOURCE_DIR})
set_tests_properties(pipeline_augsbert_real PROPERTIES TIMEOUT 1800 SKIP_RETURN_CODE 77 LABELS heavy
                     ENVIRONMENT "HF_HUB_OFFLINE=1;TRANSFORMERS_OFFLINE=1")

# As for the other MPI tests: Open MPI's own leaks are suppressed, faults meant for one test
# never leak into another, one thread per rank on the shared cores.
set_property(TEST ${PIPE_TESTS} APPEND PROPERTY ENVIRONMENT
             "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0"
             "ASAN_OPTIONS=fast_unwind_on_malloc=0" "ARGENT_FAULT=" "OMPI_MCA_mpi_yield_when_idle=1")
set_property(TEST ${PIPE_TESTS} APPEND PROPERTY ENVIRONMENT "OMP_NUM_THREADS=1")
set_property(TEST ${PIPE_TESTS} APPEND PROPERTY LABELS pipeline)
