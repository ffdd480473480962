/* MPI test program for stop signals: a mock training loop that agrees on stopping at step
 * boundaries with ag_stop_requested(), "checkpoints" and exits with AG_EXIT_REQUEUE.
 *
 *   --steps N        loop length (default 1000)
 *   --step-ms M      work per step (default 20 ms)
 *   --dir D          write D/pid.R (once all ranks are in the loop) and D/stop.R (the step
 *                    each rank stopped at) for the driver, which sends the signal itself
 *   --fault SPEC     e.g. usr1:rank=2:step=5 raises the signal from inside the loop
 *   --expect-stop S  every rank must stop at step S; exit 0 instead of 85 when they do */
#include "dist/comm.h"
#include "dist/signals.h"
#include "nn/error.h"
#include "tests/support/check.h"

#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

static void write_file(const char *dir, const char *stem, int rank, long long value) {
    char path[4200], tmp[4300];
    snprintf(path, sizeof path, "%s/%s.%d", dir, stem, rank);
    snprintf(tmp, sizeof tmp, "%s.tmp", path);
    FILE *fp = fopen(tmp, "w");
    if (!fp) ag_fatal("cannot write %s", tmp);
    fprintf(fp, "%lld\n", value);
    fclose(fp);
    if (rename(tmp, path)) ag_fatal("cannot rename %s", tmp);   /* readers never see half a file */
}

int main(int argc, char **argv) {
    if (ag_comm_init(&argc, &argv)) ag_fatal("init: %s", ag_errmsg());
    const ag_comm *c = ag_comm_get();
    long steps = 1000, step_ms = 20, expect_stop = -1;
    const char *dir = NULL, *fault = NULL;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v = i + 1 < argc ? argv[i + 1] : NULL;
        if (!strcmp(a, "--steps") && v) steps = atol(argv[++i]);
        else if (!strcmp(a, "--step-ms") && v) step_ms = atol(argv[++i]);
        else if (!strcmp(a, "--dir") && v) dir = argv[++i];
        else if (!strcmp(a, "--fault") && v) fault = argv[++i];
        else if (!strcmp(a, "--expect-stop") && v) expect_stop = atol(argv[++i]);
        else ag_fatal("test_dist_stop: unknown or incomplete option '%s'", a);
    }
    if (fault && ag_fault_set(fault)) ag_fatal("%s", ag_errmsg());
    MPI_Barrier(c->world);
    if (dir) write_file(dir, "pid", c->rank, (long long)getpid());

    long stop_step = -1;
    for (long step = 0; step < steps; step++) {
        ag_fault_point("step", step);
        struct timespec ts = { step_ms / 1000, (step_ms % 1000) * 1000000L };
        while (nanosleep(&ts, &ts) && errno == EINTR) {}   /* the "compute" of this step */
        if (ag_stop_requested()) { stop_step = step; break; }
    }
    if (stop_step < 0) {
        ag_log0("ran all %ld steps without a stop signal", steps);
        ag_comm_finalize();
        return expect_stop >= 0 ? 1 : 0;
    }
    /* A real job writes its checkpoint here, then asks to be requeued. */
    if (dir) write_file(dir, "stop", c->rank, stop_step);
    ag_logr("stop requested (local signal %d): checkpointed step %ld, exiting with %d", ag_signal_pending(),
            stop_step, AG_EXIT_REQUEUE);
    long lo = 0, hi = 0;
    MPI_Allreduce(&stop_step, &lo, 1, MPI_LONG, MPI_MIN, c->world);
    MPI_Allreduce(&stop_step, &hi, 1, MPI_LONG, MPI_MAX, c->world);
    if (expect_stop >= 0) {
        char msg[128];
        snprintf(msg, sizeof msg, "every rank stopped at step %ld (min %ld, max %ld)", expect_stop, lo, hi);
        check_true(msg, lo == expect_stop && hi == expect_stop);
        int r = check_finish();
        ag_comm_finalize();
        return r;
    }
    ag_comm_finalize();
    return lo == hi ? AG_EXIT_REQUEUE : 1;
}
