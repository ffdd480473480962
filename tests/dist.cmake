# dist/ tests: MPI programs run under mpirun at np 1..4, and a driver that launches mpirun
# itself to kill, signal and resume jobs. Work files go under <build>/dist-work.
set(DIST_WORK ${CMAKE_BINARY_DIR}/dist-work)
file(MAKE_DIRECTORY ${DIST_WORK})
set(DIST_SRC ${CMAKE_SOURCE_DIR}/tests/mpi)

# MPI test programs: built like argent_test's, but only ever run through mpirun.
function(dist_program name)
  add_executable(${name} ${ARGN})
  target_link_libraries(${name} PRIVATE argent_testsupport argent_dist)
  target_compile_definitions(${name} PRIVATE ARGENT_BUILD_DIR="${CMAKE_BINARY_DIR}"
                             ARGENT_SOURCE_DIR="${CMAKE_SOURCE_DIR}")
endfunction()

dist_program(test_dist_comm ${DIST_SRC}/test_dist_comm.c)
dist_program(test_dist_allreduce ${DIST_SRC}/test_dist_allreduce.c)
dist_program(test_dist_gather ${DIST_SRC}/test_dist_gather.c)
dist_program(test_dist_chunks ${DIST_SRC}/test_dist_chunks.c)
dist_program(test_dist_stop ${DIST_SRC}/test_dist_stop.c)
dist_program(dist_driver ${DIST_SRC}/dist_driver.c)
dist_program(bench_dist_allreduce ${DIST_SRC}/bench_dist_allreduce.c)   # not a test; see the file

set(DIST_TESTS)
foreach(np 1 2 3 4)
  argent_mpi_test(dist_comm_np${np} ${np} test_dist_comm)
  argent_mpi_test(dist_allreduce_np${np} ${np} test_dist_allreduce)
  argent_mpi_test(dist_gather_np${np} ${np} test_dist_gather)
  argent_mpi_test(dist_chunks_np${np} ${np} test_dist_chunks --dir ${DIST_WORK}/chunks-np${np} --fresh --merge)
  # A stop signal raised inside the loop on the last rank: all ranks stop at step 5.
  math(EXPR last "${np} - 1")
  argent_mpi_test(dist_stop_np${np} ${np} test_dist_stop --steps 50 --step-ms 1
                  --fault usr1:rank=${last}:step=5 --expect-stop 5)
  list(APPEND DIST_TESTS dist_comm_np${np} dist_allreduce_np${np} dist_gather_np${np}
       dist_chunks_np${np} dist_stop_np${np})
endforeach()

# Dynamic balance: a slow rank (rank 1, then rank 0 the counter's host) does fewer chunks
# and does not hold the others.
argent_mpi_test(dist_chunks_slow_rank1 2 test_dist_chunks --dir ${DIST_WORK}/chunks-slow1 --fresh
                --n 600 --chunk 20 --fault sleep:rank=1:chunk=*:ms=150,sleep:chunk=*:ms=10
                --expect-faster 0 1)
argent_mpi_test(dist_chunks_slow_rank0 3 test_dist_chunks --dir ${DIST_WORK}/chunks-slow0 --fresh
                --n 600 --chunk 20 --fault sleep:rank=0:chunk=*:ms=150,sleep:chunk=*:ms=10
                --expect-faster 2 0)
# A failing callback on one rank: every rank returns an error, none hangs.
argent_mpi_test(dist_chunks_fail 3 test_dist_chunks --dir ${DIST_WORK}/chunks-fail --fresh
                --fault fail:rank=1:nchunk=2,sleep:chunk=*:ms=5 --expect-error)
# SIGUSR1 on rank 1 after its second chunk: every rank stops after its current chunk.
argent_mpi_test(dist_chunks_stop 3 test_dist_chunks --dir ${DIST_WORK}/chunks-stop --fresh
                --fault usr1:rank=1:nchunk=2,sleep:chunk=*:ms=20 --expect-stopped)
list(APPEND DIST_TESTS dist_chunks_slow_rank1 dist_chunks_slow_rank0 dist_chunks_fail dist_chunks_stop)

foreach(scenario resume stop fatal)
  if(scenario STREQUAL "resume")
    set(worker test_dist_chunks)
  elseif(scenario STREQUAL "stop")
    set(worker test_dist_stop)
  else()
    set(worker test_dist_comm)
  endif()
  add_test(NAME dist_driver_${scenario}
           COMMAND dist_driver ${scenario} ${MPIEXEC_EXECUTABLE} ${DIST_WORK}/driver $<TARGET_FILE:${worker}>)
  set_tests_properties(dist_driver_${scenario} PROPERTIES TIMEOUT 900)
  list(APPEND DIST_TESTS dist_driver_${scenario})
endforeach()

# Leaks inside Open MPI / HDF5 runtimes are not argent's (tests/lsan.supp). Their stacks
# only reach a suppressed library with the slow unwinder (fast unwinding stops inside
# plugins built without frame pointers, "<unknown module>"). A fault-injection test must
# not see the faults meant for another; several ranks share 2 cores.
set_property(TEST ${DIST_TESTS} APPEND PROPERTY ENVIRONMENT
             "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0"
             "ASAN_OPTIONS=fast_unwind_on_malloc=0"
             "ARGENT_FAULT=" "OMP_NUM_THREADS=1" "OMPI_MCA_mpi_yield_when_idle=1")
set_property(TEST ${DIST_TESTS} PROPERTY LABELS dist)
