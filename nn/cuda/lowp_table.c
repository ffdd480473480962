/* Op tables by precision (nn/cuda/amp.h: ag_cuda_ops_for). fp32 is ag_ops_cuda; the 16-bit
 * activation tables are not there yet: their precisions are refused with a clear message. */
#include "nn/cuda/amp.h"
#include "nn/cuda/cuda.h"
#include "nn/error.h"

const ag_ops *ag_cuda_ops_for(ag_precision prec) {
    switch (prec) {
    case AG_PREC_FP32: return &ag_ops_cuda;
    case AG_PREC_BF16:
    case AG_PREC_FP16:
        ag_err("--precision %s: 16-bit activations are not available in this build", ag_precision_name(prec));
        return NULL;
    }
    ag_err("--precision: unknown value %d", (int)prec);
    return NULL;
}
