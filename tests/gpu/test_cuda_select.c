/* Backend choice and the CUDA backend's behaviour without a usable GPU (this is what runs
 * on machines without one, CI included): ag_ops_select("cpu"/"auto"/"cuda"/unknown), clear
 * messages, and ops on the CUDA table that return instead of crashing, with the failure
 * reported by ag_cuda_check. On a GPU machine it checks the other branch: "cuda" and
 * "auto" give the CUDA table. */
#include <stdio.h>
#include <string.h>

#include "nn/cuda/cuda.h"
#include "nn/error.h"
#include "tests/support/check.h"

static int contains(const char *s, const char *part) { return s && strstr(s, part) != NULL; }

int main(void) {
    char why[512], what[800];
    int have = ag_cuda_available(why, sizeof why);
    printf("ag_cuda_available: %d (%s)\n", have, why);
    check_true("ag_cuda_available explains itself", why[0] != 0);
    check_true("ag_cuda_available(NULL, 0) is allowed", ag_cuda_available(NULL, 0) == have);

    check_true("select \"cpu\" gives the CPU table", ag_ops_select("cpu") == &ag_ops_cpu);
    ag_err_clear();
    check_true("select \"tpu\" fails", ag_ops_select("tpu") == NULL);
    snprintf(what, sizeof what, "  ... naming it and the choices: %s", ag_errmsg());
    check_true(what, contains(ag_errmsg(), "'tpu'") && contains(ag_errmsg(), "cpu, cuda or auto"));

    if (!have) {
        ag_err_clear();
        check_true("select \"cuda\" without a GPU fails", ag_ops_select("cuda") == NULL);
        snprintf(what, sizeof what, "  ... saying so: %s", ag_errmsg());
        check_true(what, contains(ag_errmsg(), "--device cuda: no CUDA device (") &&
                             contains(ag_errmsg(), why));
        check_true("select \"auto\" without a GPU falls back to the CPU", ag_ops_select("auto") == &ag_ops_cpu);
        check_true("select NULL means auto", ag_ops_select(NULL) == &ag_ops_cpu);
        check_true("ag_cuda_init fails", ag_cuda_init(-1) == -1);
        snprintf(what, sizeof what, "  ... with the reason: %s", ag_errmsg());
        check_true(what, contains(ag_errmsg(), "cuda: ") && contains(ag_errmsg(), why));

        /* The table used anyway: nothing crashes, alloc gives NULL, the check reports it. */
        check_true("ag_cuda_check is clean before any op", ag_cuda_check() == 0);
        check_true("alloc without a GPU gives NULL", ag_ops_cuda.alloc(1024) == NULL);
        float dummy[4] = {0};
        ag_ops_cuda.zero(dummy, 4);
        ag_ops_cuda.add(dummy, dummy, dummy, 4);
        ag_ops_cuda.linear_forward(dummy, dummy, dummy, NULL, 1, 1, 1);
        ag_ops_cuda.attention_forward(dummy, dummy, NULL, dummy, dummy, dummy, NULL, 0, 1, 1, 1, 1, 1,
                                      NULL, 0, 0, 0.0f);
        ag_ops_cuda.sync();
        ag_ops_cuda.free(NULL);
        check_true("ops on the CUDA table without a GPU return without touching memory",
                   dummy[0] == 0.0f);
        check_true("ag_cuda_check then reports the failed initialisation", ag_cuda_check() == -1);
        snprintf(what, sizeof what, "  ... as: %s", ag_errmsg());
        check_true(what, contains(ag_errmsg(), "cuda init: "));
        check_true("the report is cleared once given", ag_cuda_check() == 0);

        ag_params host, devp;
        ag_params_init(&host);
        int64_t shape[1] = {10};
        ag_params_add(&host, "w", 1, shape);
        ag_params_alloc(&host);
        check_true("mirroring parameters without a GPU fails", ag_cuda_params_mirror(&devp, &host) == -1);
        snprintf(what, sizeof what, "  ... with the reason: %s", ag_errmsg());
        check_true(what, contains(ag_errmsg(), why));
        check_true("  ... leaving an empty table", devp.data == NULL && devp.t == NULL);
        ag_params_free(&host);
        ag_cuda_shutdown();
    } else {
        check_true("select \"cuda\" gives the CUDA table", ag_ops_select("cuda") == &ag_ops_cuda);
        check_true("select \"auto\" gives the CUDA table", ag_ops_select("auto") == &ag_ops_cuda);
        void *p = ag_ops_cuda.alloc(1 << 20);
        check_true("alloc 1 MiB on the device", p != NULL);
        ag_ops_cuda.free(p);
        check_true("ag_cuda_check clean", ag_cuda_check() == 0);
        ag_cuda_shutdown();
    }
    return check_finish();
}
