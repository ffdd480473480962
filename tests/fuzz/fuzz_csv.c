/* libFuzzer target: arbitrary bytes as a CSV file (first byte picks CSV/TSV and header on or
 * off). Every row must come back OK, BAD with a message, or the reader must stop cleanly;
 * never a crash, an out-of-bounds read or a leak. */
#include <stdint.h>
#include <stdio.h>
#include <unistd.h>

#include "io/readers.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (size < 1) return 0;
    char path[64];
    snprintf(path, sizeof path, "/tmp/argent-fuzz-csv-%d.txt", (int)getpid());
    FILE *f = fopen(path, "wb");
    if (!f) return 0;
    fwrite(data + 1, 1, size - 1, f);
    fclose(f);
    ag_reader_opts o = {0};
    o.format = (data[0] & 1) ? AG_FMT_TSV : AG_FMT_CSV;
    o.header = (data[0] >> 1) & 1;
    const char *paths[1] = {path};
    ag_reader *r = ag_reader_open(paths, 1, &o);
    if (r) {
        ag_row row = {0};
        for (int k = 0; k < 100000; k++) {
            int rc = ag_reader_next(r, &row);
            if (rc == AG_ROW_EOF || rc == AG_ROW_FATAL) break;
        }
        ag_reader_close(r);
    }
    unlink(path);
    return 0;
}
