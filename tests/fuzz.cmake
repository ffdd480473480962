# libFuzzer targets for the safetensors and CSV/TSV parsers, built with clang by
# tests/fuzz/run.sh and run briefly (20 s each) in the normal test pass.
foreach(target safetensors csv)
  add_test(NAME fuzz_${target} COMMAND ${CMAKE_SOURCE_DIR}/tests/fuzz/run.sh ${target} ${CMAKE_BINARY_DIR} 20)
  set_tests_properties(fuzz_${target} PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 300 LABELS "heavy;fuzz")
endforeach()
