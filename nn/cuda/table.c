/* The CUDA op table: the entries of nn/ops.h, implemented in this directory's files (C glue
 * in backend.c and linear.c, kernels in the .cu files). Semantics are ag_ops_cpu's, on
 * device pointers; tests/gpu/test_cuda_ops.c compares the two entry by entry. */
#include "nn/cuda/cuda.h"
#include "nn/cuda/internal.h"

static void ag_cuda_upload_act(float *dst, const float *host_src, size_t n) {
    ag_cuda_upload(dst, host_src, n * sizeof(float));
}
static void ag_cuda_download_act(float *host_dst, const float *src, size_t n) {
    ag_cuda_download(host_dst, src, n * sizeof(float));
}

/* fused.cu */
void ag_cuda_linear_gelu_forward(float *pre, float *act, const float *in, const float *W,
                                 const float *b, int N, int IC, int OC);
void ag_cuda_add_layernorm_forward(float *res, float *out, float *mean, float *rstd, const float *x,
                                   const float *r, const float *w, const float *b, int N, int C,
                                   float eps);

const ag_ops ag_ops_cuda = {
    .name = "cuda",
    .alloc = ag_cuda_alloc,
    .free = ag_cuda_free,
    .zero = ag_cuda_zero,
    .copy = ag_cuda_copy,
    .upload = ag_cuda_upload,
    .download = ag_cuda_download,
    .sync = ag_cuda_sync,
    .act_bytes = sizeof(float),
    .upload_act = ag_cuda_upload_act,
    .download_act = ag_cuda_download_act,
    .add = ag_cuda_add,
    .acc = ag_cuda_acc,
    .scale = ag_cuda_scale,
    .copy2d = ag_cuda_copy2d,
    .acc2d = ag_cuda_acc2d,
    .linear_forward = ag_cuda_linear_forward,
    .linear_backward = ag_cuda_linear_backward,
    .embedding_forward = ag_cuda_embedding_forward,
    .embedding_backward = ag_cuda_embedding_backward,
    .layernorm_forward = ag_cuda_layernorm_forward,
    .layernorm_backward = ag_cuda_layernorm_backward,
    .gelu_forward = ag_cuda_gelu_forward,
    .gelu_backward = ag_cuda_gelu_backward,
    .tanh_forward = ag_cuda_tanh_forward,
    .tanh_backward = ag_cuda_tanh_backward,
    .dropout_forward = ag_cuda_dropout_forward,
    .dropout_backward = ag_cuda_dropout_backward,
    .attention_forward = ag_cuda_attention_forward,
    .attention_backward = ag_cuda_attention_backward,
    .linear_gelu_forward = ag_cuda_linear_gelu_forward,
    .add_layernorm_forward = ag_cuda_add_layernorm_forward,
};
