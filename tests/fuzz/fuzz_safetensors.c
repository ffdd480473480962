/* libFuzzer target: arbitrary bytes as a .safetensors file. The reader must either accept
 * the file (and then every tensor converts to f32 within bounds) or reject it with a
 * message; never crash, read out of bounds or leak (ASan + UBSan + LSan watch). */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>

#include "io/safetensors.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[64];
    snprintf(path, sizeof path, "/tmp/argent-fuzz-st-%d.safetensors", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data, 1, size, f);
    fclose(f);
    ag_st_file st;
    if (ag_st_open(&st, path) == 0) {
        for (int i = 0; i < st.n; i++) {
            if (st.t[i].numel > (1u << 20)) continue;
            float *out = malloc((st.t[i].numel ? st.t[i].numel : 1) * sizeof(float));
            if (out) ag_st_read_f32(&st, i, out, st.t[i].numel);
            free(out);
        }
        ag_st_close(&st);
    }
    unlink(path);
    return 0;
}
