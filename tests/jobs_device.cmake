# The stages on the device (--device / --precision, jobs/device.c): issue 7.
#   device_nogpu        the real `argent` on a machine without a GPU: --device cuda fails
#                       clearly and writes nothing, auto runs on the CPU, bf16 on the CPU is
#                       refused, the pipeline checks its --device / --precision and hands
#                       them to its model stages
#   device_emu_train    `argent_emu` (the same jobs sources linked against the CUDA backend
#                       compiled for the CPU emulator, tests/gpu/emu): train-bi, train-cross
#                       and tsdae with --device cuda for 20 fp32 steps on a tiny model equal
#                       the CPU runs (losses and final parameters within 1e-4 relative),
#                       with the optimiser on the device (the default); a train-bi stopped
#                       at step 10 and resumed on the device equals the uninterrupted one;
#                       train-bi with SoftmaxLoss (a host classifier) 10 steps
#   device_emu_np2      train-bi --device cuda at np 2 (the device gradient reduced through
#                       the host allreduce: the emulator build has no NCCL) equals the CPU at
#                       np 1, with the device optimiser and with ARGENT_DEVICE_OPTIM=host
#   device_emu_infer    label and encode --device cuda: hard labels identical, scores and
#                       embeddings within 1e-5 of the CPU's
# Drivers: tests/jobs/test_device.sh MODE (outputs compared by tests/jobs/h5_compare.py);
# work files under <build>/device-work.
set(DEVICE_WORK ${CMAKE_BINARY_DIR}/device-work)
set(DEVICE_SRC ${CMAKE_CURRENT_SOURCE_DIR}/jobs)
set(DEVICE_TESTS)

add_test(NAME device_nogpu
         COMMAND bash ${DEVICE_SRC}/test_device.sh nogpu $<TARGET_FILE:argent> $<TARGET_FILE:argent>
                 $<TARGET_FILE:make_tiny_cross> ${MPIEXEC_EXECUTABLE} ${DEVICE_WORK}/nogpu ${CMAKE_SOURCE_DIR})
list(APPEND DEVICE_TESTS device_nogpu)

if(TARGET argent_cuda_emu)
  # The program again, on the emulated GPU: same sources, ARGENT_HAVE_CUDA, argent_cuda_emu.
  add_executable(argent_emu ${ARGENT_JOBS_SRC})
  target_link_libraries(argent_emu PRIVATE argent_dist argent_cuda_emu)
  target_compile_definitions(argent_emu PRIVATE ARGENT_HAVE_CUDA=1)
  foreach(mode emu_train emu_np2 emu_infer)
    add_test(NAME device_${mode}
             COMMAND bash ${DEVICE_SRC}/test_device.sh ${mode} $<TARGET_FILE:argent> $<TARGET_FILE:argent_emu>
                     $<TARGET_FILE:make_tiny_cross> ${MPIEXEC_EXECUTABLE} ${DEVICE_WORK}/${mode} ${CMAKE_SOURCE_DIR})
    list(APPEND DEVICE_TESTS device_${mode})
  endforeach()
endif()

set_tests_properties(${DEVICE_TESTS} PROPERTIES TIMEOUT 900 SKIP_RETURN_CODE 77 LABELS device)
# As for the other jobs tests: Open MPI's own leaks suppressed, no stray faults, one thread.
set_property(TEST ${DEVICE_TESTS} APPEND PROPERTY ENVIRONMENT
             "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0"
             "ASAN_OPTIONS=fast_unwind_on_malloc=0" "ARGENT_FAULT=" "ARGENT_DEVICE_OPTIM=" "OMP_NUM_THREADS=1"
             "OMPI_MCA_mpi_yield_when_idle=1")
