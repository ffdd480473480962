/* Safetensors files (Hugging Face's weight format): a strict reader that converts F32, F16
 * and BF16 tensors to f32, and an F32 writer whose output safetensors.torch.load_file reads.
 *
 * Layout: u64 little-endian header length N, N bytes of JSON (an object: tensor name ->
 * {"dtype", "shape", "data_offsets": [begin, end]}, plus an optional "__metadata__" object of
 * string -> string), then the data section; offsets are relative to the data section.
 *
 * The reader maps the file read-only and checks everything before any tensor is used: the
 * header length against the file size and a sane maximum, the JSON, every entry's dtype,
 * shape and offsets, that dtype size x element count equals the byte range, and that the
 * ranges neither overlap nor leave gaps (the Python library rejects gaps too). Each
 * rejection names the file, the tensor and what was wrong. Tensors of other valid dtypes
 * (I64 position_ids buffers, for example) are validated and listed but cannot be read as
 * f32: ag_st_read_f32 says so. */
#ifndef ARGENT_IO_SAFETENSORS_H
#define ARGENT_IO_SAFETENSORS_H
#include <stddef.h>
#include <stdint.h>

#define AG_ST_MAX_DIMS 8
/* The Python library refuses headers over 100 MB; so do we. */
#define AG_ST_MAX_HEADER ((uint64_t)100000000)

typedef enum {
    AG_ST_F32, AG_ST_F16, AG_ST_BF16,                 /* readable as f32 */
    AG_ST_F64, AG_ST_I64, AG_ST_I32, AG_ST_I16, AG_ST_I8, AG_ST_U8, AG_ST_BOOL,
    AG_ST_U16, AG_ST_U32, AG_ST_U64, AG_ST_F8_E4M3, AG_ST_F8_E5M2,
} ag_st_dtype;

typedef struct {
    char *name;
    ag_st_dtype dtype;
    int ndim;                        /* 0 for a scalar */
    int64_t shape[AG_ST_MAX_DIMS];
    size_t numel;
    size_t begin, end;               /* byte range within the data section */
} ag_st_tensor;

typedef struct {
    char path[512];
    const unsigned char *map;        /* whole file, read-only mapping */
    size_t size;                     /* file size in bytes */
    size_t data_start;               /* 8 + header length */
    int n;                           /* tensors, in header order (no "__metadata__") */
    ag_st_tensor *t;
    char *format;                    /* __metadata__["format"] or NULL */
} ag_st_file;

/* Open and validate. On failure returns -1 with ag_errmsg() naming the file and the
 * tensor; *f is then empty (closing it is harmless). */
int ag_st_open(ag_st_file *f, const char *path);
void ag_st_close(ag_st_file *f);
/* Index of a tensor by name, or -1. */
int ag_st_find(const ag_st_file *f, const char *name);
const char *ag_st_dtype_name(ag_st_dtype d);
/* Convert tensor i to f32 into out (room for `numel` floats, which must equal the tensor's
 * element count). F32/F16/BF16 only; other dtypes are rejected with the tensor's name. */
int ag_st_read_f32(const ag_st_file *f, int i, float *out, size_t numel);

/* One tensor to write: f32 data, C order. */
typedef struct {
    const char *name;
    int ndim;
    const int64_t *shape;
    const float *data;
} ag_st_entry;

/* Write tensors as F32 safetensors the way the Python library does: entries sorted by name,
 * data packed in that order, header padded with spaces to a multiple of 8, "__metadata__"
 * {"format": format} first when format is not NULL ("pt" for PyTorch). The file is written
 * to "<path>.tmp", fsync'd and renamed, so a crash never leaves a half-written file under
 * the final name. Duplicate names are rejected. */
int ag_st_write(const char *path, const ag_st_entry *e, int n, const char *format);

/* IEEE half and bfloat16 bit patterns to float (exact; subnormals, inf and NaN kept). */
float ag_f16_to_f32(uint16_t h);
float ag_bf16_to_f32(uint16_t b);
#endif
