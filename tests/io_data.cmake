# Text readers, the HDF5 dataset format and `argent prepare` (io/readers, io/dataset, jobs/prepare).
argent_test(test_readers ${CMAKE_SOURCE_DIR}/tests/unit/test_readers.c LIBS argent_io)
argent_test(test_dataset ${CMAKE_SOURCE_DIR}/tests/unit/test_dataset.c LIBS argent_io)
# `argent prepare` in process (jobs/prepare.c built into the test), always under mpirun: at
# np 2 and 3 every output is also made by one rank alone and must have the same bytes.
# (Not a plain argent_test: Open MPI's singleton start, without mpirun, makes LeakSanitizer
# crash at exit under ASan.)
add_executable(test_prepare ${CMAKE_SOURCE_DIR}/tests/unit/test_prepare.c ${CMAKE_SOURCE_DIR}/jobs/prepare.c
               ${CMAKE_SOURCE_DIR}/jobs/cli.c)
target_link_libraries(test_prepare PRIVATE argent_testsupport argent_dist)
target_compile_definitions(test_prepare PRIVATE ARGENT_SHARED="${ARGENT_SHARED}" ARGENT_BUILD_DIR="${CMAKE_BINARY_DIR}")
foreach(np 1 2 3)
  argent_mpi_test(test_prepare_np${np} ${np} test_prepare)
endforeach()
# MPI runtimes leak at exit; their stacks reach the suppressed libraries (tests/lsan.supp)
# only with the slow unwinder, as in tests/dist.cmake.
set_property(TEST test_prepare_np1 test_prepare_np2 test_prepare_np3 APPEND PROPERTY ENVIRONMENT
             "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0"
             "ASAN_OPTIONS=detect_leaks=1:fast_unwind_on_malloc=0" "OMP_NUM_THREADS=1")

# The real program on the real data, checked by Python (h5py, csv, BertTokenizer); skipped
# without ../shared/data. Labelled heavy: it runs Python reference code, so only the normal
# build runs it.
add_test(NAME prepare_real_data
         COMMAND sh ${CMAKE_SOURCE_DIR}/tests/cli/test_prepare_real.sh $<TARGET_FILE:argent> ${MPIEXEC_EXECUTABLE}
                 ${ARGENT_SHARED} ${CMAKE_BINARY_DIR}/prepare_real_data ${CMAKE_SOURCE_DIR})
set_tests_properties(prepare_real_data PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600 LABELS heavy)
