# Benchmarks: built with the tests, never run as tests (timings are not assertions).
# Run with: python3 tests/bench/bench_train_step.py --build build
add_executable(bench_train_step ${CMAKE_SOURCE_DIR}/tests/bench/bench_train_step.c)
target_link_libraries(bench_train_step PRIVATE argent_nn)
