# CUDA backend tests (nn/cuda/, tests/gpu/).
#   test_cuda_philox    the device copy of the dropout RNG equals nn/rng.c (plain C, any machine)
#   test_cuda_select    backend choice; without a GPU: clear messages, no crash (argent_cuda)
#   test_cuda_ops       every op and a BERT step against the CPU oracle on a real GPU; skips
#                       (exit 77, "SKIPPED: no CUDA device (...)") without one
#   test_cuda_ops_emu   the same test with the backend's kernels compiled for the CPU
#                       emulator (tests/gpu/emu): kernel logic, launch limits, index math
#                       and the cuBLAS argument mapping, checked on machines without a GPU
#   bench_cuda_step_emu the GPU benchmark program on a tiny batch through the emulator
#   test_cuda_train(_emu) a tiny BERT bi-encoder trained 20 steps (CPU table + nn/optim.c vs
#                       CUDA table + device AdamW/clipping) and cross-encoder labels
#   test_cuda_amp(_emu) mixed precision on the GPU (nn/cuda/amp.h): 16-bit kernels, casts,
#                       bf16/fp16 GEMM mode, device unscale; on a GPU / through the emulator
#   test_cuda_lowp(_emu) the 16-bit activation op tables (cuda-bf16, cuda-fp16): every entry
#                       and a 2-layer BERT step against the fp32 CPU oracle; GPU / emulator
# tests/gpu/run.sh runs them on a GPU machine, plus the benchmark.
argent_test(test_cuda_philox gpu/test_cuda_philox.c LIBS argent_nn)
# support/gpu_check.c (the tests' device start and tensor comparisons) calls the backend, so
# it is built into each test with the backend that test links (argent_cuda or the emulator).
set(_gpu_check support/gpu_check.c)

if(TARGET argent_cuda)
  argent_test(test_cuda_select gpu/test_cuda_select.c LIBS argent_cuda)
  argent_test(test_cuda_ops gpu/test_cuda_ops.c ${_gpu_check} LIBS argent_cuda)
  argent_test(test_cuda_amp gpu/test_cuda_amp.c ${_gpu_check} LIBS argent_cuda)
  argent_test(test_cuda_train gpu/test_cuda_train.c ${_gpu_check} LIBS argent_cuda)
  argent_test(test_cuda_lowp gpu/test_cuda_lowp.c ${_gpu_check} LIBS argent_cuda)
  set_tests_properties(test_cuda_ops PROPERTIES TIMEOUT 600)
  # The GPU benchmark (run by tests/gpu/run.sh, never as a test): built here so it keeps compiling.
  add_executable(bench_cuda_step gpu/bench_cuda_step.c)
  target_link_libraries(bench_cuda_step PRIVATE argent_cuda)

  find_package(Python3 COMPONENTS Interpreter)
  find_package(CUDAToolkit)
  find_package(Threads)
  include(CheckLanguage)
  check_language(CXX)
  if(Python3_Interpreter_FOUND AND CUDAToolkit_FOUND AND Threads_FOUND AND CMAKE_CXX_COMPILER)
    enable_language(CXX)
    set(_emu_dir ${CMAKE_CURRENT_BINARY_DIR}/cuda-emu)
    # The rewritten kernels.cuh sits at cuda-emu/nn/cuda/: the rewritten sources' own
    # directory is searched first, so their #include "nn/cuda/kernels.cuh" finds it.
    add_custom_command(
      OUTPUT ${_emu_dir}/nn/cuda/kernels.cuh
      COMMAND ${CMAKE_COMMAND} -E make_directory ${_emu_dir}/nn/cuda
      COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/gpu/emu/emu_rewrite.py
              ${CMAKE_SOURCE_DIR}/nn/cuda/kernels.cuh ${_emu_dir}/nn/cuda/kernels.cuh
      DEPENDS ${CMAKE_SOURCE_DIR}/nn/cuda/kernels.cuh ${CMAKE_CURRENT_SOURCE_DIR}/gpu/emu/emu_rewrite.py
      COMMENT "CUDA emulator: rewriting nn/cuda/kernels.cuh")
    set(_emu_src)
    foreach(_cu elementwise layernorm embedding attention optim fused lowp_ops)
      add_custom_command(
        OUTPUT ${_emu_dir}/${_cu}.cc
        COMMAND ${CMAKE_COMMAND} -E make_directory ${_emu_dir}
        COMMAND ${Python3_EXECUTABLE} ${CMAKE_CURRENT_SOURCE_DIR}/gpu/emu/emu_rewrite.py
                ${CMAKE_SOURCE_DIR}/nn/cuda/${_cu}.cu ${_emu_dir}/${_cu}.cc
                ${CMAKE_SOURCE_DIR}/nn/cuda/kernels.cuh
        DEPENDS ${CMAKE_SOURCE_DIR}/nn/cuda/${_cu}.cu ${_emu_dir}/nn/cuda/kernels.cuh
                ${CMAKE_CURRENT_SOURCE_DIR}/gpu/emu/emu_rewrite.py
        COMMENT "CUDA emulator: rewriting nn/cuda/${_cu}.cu")
      list(APPEND _emu_src ${_emu_dir}/${_cu}.cc)
    endforeach()
    set(_emu_glue)
    foreach(_c backend linear params select table lowp_table optim)
      list(APPEND _emu_glue ${CMAKE_SOURCE_DIR}/nn/cuda/${_c}.c)
    endforeach()
    # argent_cuda's sources built for the emulator, which stands in for libcudart/libcublas.
    add_library(argent_cuda_emu STATIC ${_emu_glue} ${_emu_src} gpu/emu/cuda_emu.cc)
    target_include_directories(argent_cuda_emu PUBLIC ${CUDAToolkit_INCLUDE_DIRS})
    target_compile_definitions(argent_cuda_emu PRIVATE ARGENT_HAVE_CUDA=1 AG_CUDA_ARCHS="emulator")
    set_target_properties(argent_cuda_emu PROPERTIES CXX_STANDARD 17 CXX_STANDARD_REQUIRED ON)
    set_source_files_properties(${_emu_src} PROPERTIES
      COMPILE_OPTIONS "-include;${CMAKE_CURRENT_SOURCE_DIR}/gpu/emu/cuda_emu.h;-Wno-unknown-pragmas")
    target_link_libraries(argent_cuda_emu PUBLIC argent_nn Threads::Threads)

    argent_test(test_cuda_ops_emu gpu/test_cuda_ops.c ${_gpu_check} LIBS argent_cuda_emu ARGS --quick)
    set_tests_properties(test_cuda_ops_emu PROPERTIES TIMEOUT 900)
    argent_test(test_cuda_amp_emu gpu/test_cuda_amp.c ${_gpu_check} LIBS argent_cuda_emu)
    # Bi-encoder training (CPU vs CUDA table + device optimiser) and cross-encoder labels.
    argent_test(test_cuda_train_emu gpu/test_cuda_train.c ${_gpu_check} LIBS argent_cuda_emu)
    set_tests_properties(test_cuda_train_emu PROPERTIES TIMEOUT 900)
    set_tests_properties(test_cuda_amp_emu PROPERTIES TIMEOUT 600)
    argent_test(test_cuda_lowp_emu gpu/test_cuda_lowp.c ${_gpu_check} LIBS argent_cuda_emu)
    set_tests_properties(test_cuda_lowp_emu PROPERTIES TIMEOUT 600)
    # The benchmark program end to end on a small batch: it must not fail on the GPU visit.
    add_executable(bench_cuda_step_emu gpu/bench_cuda_step.c)
    target_link_libraries(bench_cuda_step_emu PRIVATE argent_cuda_emu)
    add_test(NAME bench_cuda_step_emu COMMAND bench_cuda_step_emu --model minilm --batch 2 --seq 8
             --steps 1 --warmup 1 --precision fp32,bf16)
    set_tests_properties(bench_cuda_step_emu PROPERTIES TIMEOUT 600)
  else()
    message(STATUS "argent: CUDA emulator test off (needs python3, the CUDA headers, threads and a C++ compiler)")
  endif()
endif()

# Mixed precision, host side (nn/amp): GradScaler replay and bf16/fp16 rounding against a
# torch fixture (tests/fixtures/gen_amp.py). Runs in every build, CUDA or not.
argent_test(test_amp unit/test_amp.c LIBS argent_nn)

# NCCL gradient allreduce (dist/nccl.c, in argent_cuda when NCCL and MPI are found): bucket
# plan = dist/allreduce's, error paths; without a GPU every rank fails init cleanly; on a
# GPU (np 1) a reduction overlapped with queued work equals the host sum.
if(TARGET argent_nccl)
  add_executable(test_nccl gpu/test_nccl.c)   # an MPI program: only run through mpirun
  target_link_libraries(test_nccl PRIVATE argent_testsupport argent_dist argent_nccl)
  argent_mpi_test(nccl_np1 1 test_nccl)
  argent_mpi_test(nccl_np2 2 test_nccl)
  # Open MPI's own leaks are not argent's: the suppressions and slow unwinder of tests/dist.cmake.
  set_property(TEST nccl_np1 nccl_np2 APPEND PROPERTY ENVIRONMENT
               "LSAN_OPTIONS=suppressions=${CMAKE_SOURCE_DIR}/tests/lsan.supp:print_suppressions=0"
               "ASAN_OPTIONS=fast_unwind_on_malloc=0" "OMP_NUM_THREADS=1")
endif()
