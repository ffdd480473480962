#!/usr/bin/env python3
"""Turn a CUDA source of the backend (nn/cuda/*.cu) into C++ for the CPU emulator
(cuda_emu.h): every launch `kernel<T><<<grid, block, smem, stream>>>(args)` becomes
`agemu::config(grid, block, smem, stream).run("kernel", lockstep,
[](auto... a_) { kernel<T>(a_...); }, args)`.

`lockstep` is true for kernels whose body synchronises (__syncthreads, __syncwarp,
__shfl*, or the warp_sum/warp_max helpers): the emulator runs their threads concurrently.
Others run thread after thread; if one synchronises after all, the emulator aborts naming
it, so a kernel is never emulated wrongly in silence. Kernel bodies are read from the
source and from the headers given after it (templates such as colsum_partial live in
nn/cuda/kernels.cuh). A #line directive keeps compiler messages pointing at the .cu file.

usage: emu_rewrite.py IN.cu OUT.cc [HEADER.cuh ...]
"""
import re
import sys

SYNC = ("__syncthreads", "__syncwarp", "__shfl", "warp_sum", "warp_max")
KERNEL = re.compile(r"__global__\s+void\s+(\w+)\s*\(")
LAUNCH = re.compile(r"([A-Za-z_][\w:]*)(\s*<[^<>;]*>)?\s*<<<(.*?)>>>\s*\(", re.S)


def lockstep_kernels(text):
    """Names of the kernels defined in text whose bodies synchronise."""
    found = set()
    for m in KERNEL.finditer(text):
        i = text.find("{", m.end())
        semi = text.find(";", m.end())
        if i < 0 or (0 <= semi < i):
            continue  # a declaration or explicit instantiation, not a definition
        depth, j = 0, i
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        if any(s in text[i:j] for s in SYNC):
            found.add(m.group(1))
    return found


def main():
    src, out = sys.argv[1], sys.argv[2]
    text = open(src).read()
    sync = lockstep_kernels(text)
    for h in sys.argv[3:]:
        sync |= lockstep_kernels(open(h).read())

    def launch(m):
        name, targs, cfg = m.group(1), m.group(2) or "", m.group(3)
        short = name.split("::")[-1]
        rest = m.string[m.end():].lstrip()
        comma = "" if rest.startswith(")") else ", "
        # A generic lambda, so that template kernels launched without explicit arguments
        # deduce them from the call, as nvcc does.
        call = "[](auto... a_) { %s%s(a_...); }" % (name, targs.strip())
        return 'agemu::config(%s).run("%s", %s, %s%s' % (
            cfg, short, "true" if short in sync else "false", call, comma)

    body, n = LAUNCH.subn(launch, text)
    if n == 0 and "<<<" in text:
        sys.exit("emu_rewrite: %s has launches this script could not read" % src)
    with open(out, "w") as f:
        f.write('#line 1 "%s"\n' % src)
        f.write(body)


if __name__ == "__main__":
    main()
