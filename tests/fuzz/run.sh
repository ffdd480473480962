#!/usr/bin/env bash
# Build a libFuzzer target with clang (ASan + UBSan) and run it briefly from a seed corpus.
# usage: tests/fuzz/run.sh TARGET BUILD_DIR SECONDS    (TARGET: safetensors | csv)
# Exit 77 (ctest: skipped) when clang or its libFuzzer runtime is missing.
set -euo pipefail
target=$1 out=$2 secs=${3:-20}
src=$(cd "$(dirname "$0")/../.." && pwd)
command -v clang >/dev/null || { echo "SKIPPED: clang not installed (apt-get install clang)"; exit 77; }
echo 'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){(void)d;(void)n;return 0;}' > "$out/probe-$target.c"
clang -fsanitize=fuzzer "$out/probe-$target.c" -o "$out/probe-$target" 2>/dev/null \
  || { echo "SKIPPED: clang has no libFuzzer runtime (apt-get install libclang-rt-14-dev)"; exit 77; }
flags=(-g -O1 -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=undefined -I"$src")
case $target in
  safetensors) srcs=("$src/tests/fuzz/fuzz_safetensors.c" "$src/io/safetensors.c" "$src/nn/error.c" "$src/nn/amp.c"); libs=(-ljansson) ;;
  csv) srcs=("$src/tests/fuzz/fuzz_csv.c" "$src/io/readers.c" "$src/nn/error.c");
       libs=($(pkg-config --libs jansson libutf8proc) -lm) ;;
  *) echo "unknown target $target"; exit 2 ;;
esac
clang "${flags[@]}" $(pkg-config --cflags jansson libutf8proc) "${srcs[@]}" "${libs[@]}" -o "$out/fuzz_$target"
corpus="$out/corpus-$target"
mkdir -p "$corpus"
if [ "$target" = safetensors ]; then
  cp "$src"/tests/fixtures/*.safetensors "$corpus/" 2>/dev/null || true
else
  printf '\0a,b,0.5\n"x, y","z ""q""",4\n' > "$corpus/seed1"
  printf '\1s1\ts2\tlabel\nfoo\tbar\t1\n' > "$corpus/seed2"
fi
export ASAN_OPTIONS=detect_leaks=1
"$out/fuzz_$target" -max_total_time="$secs" -rss_limit_mb=2048 -max_len=65536 "$corpus" 2>&1 | tail -5
