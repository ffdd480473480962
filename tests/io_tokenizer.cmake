# Tokenizer tests (io/tokenizer.c): ids identical to Hugging Face's BERT tokenizers.
# tokenizer: committed edge-case fixture (synthetic vocab), no data needed.
argent_test(test_tokenizer ${CMAKE_SOURCE_DIR}/tests/unit/test_tokenizer.c LIBS argent_io)
set_tests_properties(test_tokenizer PROPERTIES TIMEOUT 60)
# tokenizer_data: every sentence and pair of ../shared/data with the real vocab; runs
# tests/fixtures/gen_tokenizer.py --data into the build folder (skips without data or transformers).
add_test(NAME tokenizer_data COMMAND test_tokenizer --data)
# tokenizer_unicode: every assigned code point through the basic tokenizer (skips without transformers).
add_test(NAME tokenizer_unicode COMMAND test_tokenizer --unicode)
set_tests_properties(tokenizer_data tokenizer_unicode PROPERTIES SKIP_RETURN_CODE 77 TIMEOUT 600)

# Benchmark (built, never run as a test): python3 tests/bench/bench_tokenizer.py --build <build dir>
add_executable(bench_tokenizer ${CMAKE_SOURCE_DIR}/tests/bench/bench_tokenizer.c)
target_link_libraries(bench_tokenizer PRIVATE argent_io)
