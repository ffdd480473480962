/* Op tables by precision (nn/cuda/amp.h: ag_cuda_ops_for). fp32 is ag_ops_cuda; bf16 and
 * fp16 are the 16-bit activation tables of nn/cuda/lowp_ops.cu ("cuda-bf16", "cuda-fp16"). */
#include "nn/cuda/amp.h"
#include "nn/cuda/cuda.h"
#include "nn/error.h"

extern const ag_ops ag_ops_cuda_bf16, ag_ops_cuda_fp16;  /* nn/cuda/lowp_ops.cu */

const ag_ops *ag_cuda_ops_for(ag_precision prec) {
    switch (prec) {
    case AG_PREC_FP32: return &ag_ops_cuda;
    case AG_PREC_BF16: return &ag_ops_cuda_bf16;
    case AG_PREC_FP16: return &ag_ops_cuda_fp16;
    }
    ag_err("--precision: unknown value %d", (int)prec);
    return NULL;
}
