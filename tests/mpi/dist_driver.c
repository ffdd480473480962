/* Fault-injection driver for the dist tests: an ordinary program (not an MPI rank) that
 * launches mpirun itself, kills or signals jobs, and checks what survives.
 *
 *   dist_driver resume MPIEXEC WORKDIR test_dist_chunks
 *       uninterrupted np=1 run; a run at np=3 whose rank 1 is SIGKILLed (ARGENT_FAULT), a
 *       garbage *.tmp, a run at np=2 killed between writing a part and renaming it; the
 *       rerun at np=4 completes only what is missing and its merged files are
 *       byte-identical to the np=1 run's; a further rerun does nothing; other settings on
 *       the same directory are refused.
 *   dist_driver stop MPIEXEC WORKDIR test_dist_stop
 *       SIGUSR1 to one rank, then to mpirun: every rank stops at the same step, exit 85.
 *   dist_driver fatal MPIEXEC WORKDIR test_dist_comm
 *       ag_fatal on rank 1 while the others wait in a barrier: the job ends quickly,
 *       non-zero, with "argent: rank 1: <reason>". */
#include "dist/signals.h"
#include "tests/support/check.h"

#include <dirent.h>
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

static const char *g_mpiexec, *g_exe, *g_work;
static char g_log[4200];

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return ts.tv_sec + ts.tv_nsec * 1e-9;
}

static void sleep_ms(int ms) {
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

/* Start `mpirun -np NP EXE args...` with stdout+stderr appended to g_log and, if given,
 * ARGENT_FAULT set for it alone. Returns the pid of mpirun. */
static pid_t spawn(int np, const char *fault, const char *const *args) {
    char npbuf[16];
    snprintf(npbuf, sizeof npbuf, "%d", np);
    const char *argv[64];
    int k = 0;
    argv[k++] = g_mpiexec;
    argv[k++] = "-np";
    argv[k++] = npbuf;
    argv[k++] = "--allow-run-as-root";
    argv[k++] = "--oversubscribe";
    argv[k++] = g_exe;
    for (int i = 0; args[i] && k < 62; i++) argv[k++] = args[i];
    argv[k] = NULL;
    FILE *lf = fopen(g_log, "a");
    if (lf) {
        fprintf(lf, "\n=== %s%s%s", fault ? "ARGENT_FAULT=" : "", fault ? fault : "", fault ? " " : "");
        for (int i = 0; i < k; i++) fprintf(lf, "%s ", argv[i]);
        fprintf(lf, "\n");
        fclose(lf);
    }
    fflush(stdout);
    pid_t pid = fork();
    if (pid == 0) {
        /* Own session: on a timeout every process of this job can be found by its session. */
        setsid();
        FILE *out = fopen(g_log, "a");
        if (out) { dup2(fileno(out), 1); dup2(fileno(out), 2); }
        if (fault) setenv("ARGENT_FAULT", fault, 1); else unsetenv("ARGENT_FAULT");
        /* the real mpiexec, not the tests' retrying wrapper: jobs here are signalled and
         * their ranks looked up by mpiexec's pid */
        setenv("ARGENT_MPIEXEC_DIRECT", "1", 1);
        execvp(argv[0], (char *const *)argv);
        fprintf(stderr, "exec %s failed: %s\n", argv[0], strerror(errno));
        _exit(127);
    }
    return pid;
}

/* SIGKILL every process left in session sid (ranks that outlived a killed mpirun). */
static void kill_session(pid_t sid) {
    DIR *dp = opendir("/proc");
    if (!dp) return;
    struct dirent *de;
    while ((de = readdir(dp))) {
        pid_t p = (pid_t)atoi(de->d_name);
        if (p > 0 && p != getpid() && getsid(p) == sid) kill(p, SIGKILL);
    }
    closedir(dp);
}

/* End a job: SIGTERM to mpirun (it stops its ranks), then SIGKILL to whatever is left. */
static void end_job(pid_t pid) {
    int status;
    kill(pid, SIGTERM);
    for (int i = 0; i < 750 && waitpid(pid, &status, WNOHANG) == 0; i++) sleep_ms(20);
    kill_session(pid);
    kill(pid, SIGKILL);
    waitpid(pid, &status, 0);
}

/* Wait for pid at most timeout_s seconds (then end the job); exit code, 128+signal, or -1. */
static int wait_for(pid_t pid, double timeout_s, double *seconds) {
    double t0 = now();
    int status = 0;
    for (;;) {
        pid_t r = waitpid(pid, &status, WNOHANG);
        if (r == pid) break;
        if (r < 0) return -1;
        if (now() - t0 > timeout_s) {
            printf("job %d still running after %.0f s: killing it\n", (int)pid, timeout_s);
            end_job(pid);
            if (seconds) *seconds = now() - t0;
            return -1;
        }
        sleep_ms(20);
    }
    if (seconds) *seconds = now() - t0;
    return WIFEXITED(status) ? WEXITSTATUS(status) : WIFSIGNALED(status) ? 128 + WTERMSIG(status) : -1;
}

static int run(int np, const char *fault, const char *const *args, double timeout_s) {
    return wait_for(spawn(np, fault, args), timeout_s, NULL);
}

static void dump_log(void) {
    FILE *fp = fopen(g_log, "r");
    if (!fp) return;
    char line[1024];
    printf("---- %s ----\n", g_log);
    while (fgets(line, sizeof line, fp)) fputs(line, stdout);
    printf("---- end of log ----\n");
    fclose(fp);
}

static int log_contains(const char *needle) {
    FILE *fp = fopen(g_log, "r");
    if (!fp) return 0;
    char line[2048];
    int found = 0;
    while (!found && fgets(line, sizeof line, fp)) found = strstr(line, needle) != NULL;
    fclose(fp);
    return found;
}

/* Count part files (complete) and *.tmp files in dir. */
static void count_parts(const char *dir, int *parts, int *tmps) {
    *parts = *tmps = 0;
    DIR *dp = opendir(dir);
    if (!dp) return;
    struct dirent *de;
    while ((de = readdir(dp))) {
        size_t n = strlen(de->d_name);
        if (strncmp(de->d_name, "part-", 5)) continue;
        if (n > 4 && !strcmp(de->d_name + n - 4, ".tmp")) ++*tmps;
        else if (n > 3 && !strcmp(de->d_name + n - 3, ".h5")) ++*parts;
    }
    closedir(dp);
}

static int files_equal(const char *a, const char *b) {
    FILE *fa = fopen(a, "rb"), *fb = fopen(b, "rb");
    int same = fa && fb;
    while (same) {
        int ca = fgetc(fa), cb = fgetc(fb);
        if (ca != cb) same = 0;
        if (ca == EOF || cb == EOF) break;
    }
    if (fa) fclose(fa);
    if (fb) fclose(fb);
    return same;
}

static int read_stats(const char *path, long long v[4]) {
    FILE *fp = fopen(path, "r");
    if (!fp) return -1;
    int n = fscanf(fp, "%lld %lld %lld %lld", &v[0], &v[1], &v[2], &v[3]);
    fclose(fp);
    return n == 4 ? 0 : -1;
}

static void mkdir_p(const char *path) {
    char buf[4200];
    snprintf(buf, sizeof buf, "%s", path);
    for (char *p = buf + 1; *p; p++)
        if (*p == '/') { *p = 0; mkdir(buf, 0777); *p = '/'; }
    mkdir(buf, 0777);
}

static void scenario_resume(void) {
    enum { NCHUNKS = 100 };   /* 2000 items in chunks of 20 */
    char a[4200], b[4200], p1[4300], p2[4400], stats[4300];
    snprintf(a, sizeof a, "%s/resume-a", g_work);
    snprintf(b, sizeof b, "%s/resume-b", g_work);
    snprintf(stats, sizeof stats, "%s/stats.txt", b);
    mkdir_p(a);
    mkdir_p(b);
    double t0 = now();
    int rc = run(1, NULL, (const char *[]){ "--dir", a, "--n", "2000", "--chunk", "20", "--fresh", "--merge", NULL }, 120);
    check_true("uninterrupted np=1 run and merge succeed", rc == 0);
    double t_full = now() - t0;

    rc = run(3, "kill:rank=1:nchunk=3,sleep:chunk=*:ms=100",
             (const char *[]){ "--dir", b, "--n", "2000", "--chunk", "20", "--fresh", NULL }, 120);
    int parts1, tmps1;
    count_parts(b, &parts1, &tmps1);
    char msg[256];
    snprintf(msg, sizeof msg, "np=3 run with rank 1 SIGKILLed fails (rc %d) leaving a partial output (%d of %d parts)",
             rc, parts1, NCHUNKS);
    check_true(msg, rc != 0 && parts1 > 0 && parts1 < NCHUNKS);

    /* Garbage under a temporary name, as a crash mid-write leaves it. */
    for (int c = 0; c < NCHUNKS; c++) {
        snprintf(p1, sizeof p1, "%s/part-%06d.h5", b, c);
        if (access(p1, F_OK)) {
            snprintf(p2, sizeof p2, "%s.tmp", p1);
            FILE *fp = fopen(p2, "w");
            if (fp) { fputs("not an HDF5 file: a crash happened while writing this\n", fp); fclose(fp); }
            break;
        }
    }
    rc = run(2, "kill:rank=0:chunk_tmp=*,sleep:chunk=*:ms=100",
             (const char *[]){ "--dir", b, "--n", "2000", "--chunk", "20", NULL }, 120);
    int parts2, tmps2;
    count_parts(b, &parts2, &tmps2);
    snprintf(msg, sizeof msg, "np=2 run killed between write and rename fails (rc %d), %d parts, %d *.tmp", rc, parts2, tmps2);
    check_true(msg, rc != 0 && parts2 >= parts1 && parts2 < NCHUNKS && tmps2 >= 1);

    rc = run(4, NULL, (const char *[]){ "--dir", b, "--n", "2000", "--chunk", "20", "--merge", "--stats", stats, NULL }, 120);
    long long st[4] = { -1, -1, -1, -1 };
    int have = read_stats(stats, st) == 0;
    snprintf(msg, sizeof msg, "rerun at np=4 completes only the missing chunks (found %lld, processed %lld, complete %lld)",
             st[0], st[1], st[2]);
    check_true(msg, rc == 0 && have && st[0] == parts2 && st[1] == NCHUNKS - parts2 && st[2] == 1 && st[3] == NCHUNKS);
    int parts3, tmps3;
    count_parts(b, &parts3, &tmps3);
    check_true("after the rerun: every part present, no *.tmp left", parts3 == NCHUNKS && tmps3 == 0);

    snprintf(p1, sizeof p1, "%s/merged.h5", a);
    snprintf(p2, sizeof p2, "%s/merged.h5", b);
    check_true("merged real file byte-identical to the uninterrupted np=1 run", files_equal(p1, p2));
    snprintf(p1, sizeof p1, "%s/merged.vds.h5", a);
    snprintf(p2, sizeof p2, "%s/merged.vds.h5", b);
    check_true("merged virtual file byte-identical to the uninterrupted np=1 run", files_equal(p1, p2));
    for (int c = 0; c < NCHUNKS; c += 9) {
        snprintf(p1, sizeof p1, "%s/part-%06d.h5", a, c);
        snprintf(p2, sizeof p2, "%s/part-%06d.h5", b, c);
        snprintf(msg, sizeof msg, "part %d byte-identical across runs", c);
        check_true(msg, files_equal(p1, p2));
    }

    rc = run(2, NULL, (const char *[]){ "--dir", b, "--n", "2000", "--chunk", "20", "--stats", stats, NULL }, 120);
    have = read_stats(stats, st) == 0;
    check_true("a rerun of a complete directory processes nothing", rc == 0 && have && st[0] == NCHUNKS && st[1] == 0);

    rc = run(2, NULL, (const char *[]){ "--dir", b, "--n", "2000", "--chunk", "40", NULL }, 120);
    check_true("other settings on the same directory are refused with a clear message",
               rc != 0 && log_contains("use a new output directory"));
    printf("resume scenario: np=1 uninterrupted run took %.1f s\n", t_full);
}

/* Wait until D/pid.0..np-1 exist; returns 0 and fills pids, or -1 after timeout_s. */
static int wait_pids(const char *dir, int np, pid_t *pids, double timeout_s) {
    double t0 = now();
    while (now() - t0 < timeout_s) {
        int found = 0;
        for (int r = 0; r < np; r++) {
            char path[4300];
            snprintf(path, sizeof path, "%s/pid.%d", dir, r);
            FILE *fp = fopen(path, "r");
            long long v = 0;
            if (fp && fscanf(fp, "%lld", &v) == 1) { pids[r] = (pid_t)v; found++; }
            if (fp) fclose(fp);
        }
        if (found == np) return 0;
        sleep_ms(50);
    }
    return -1;
}

static void clear_stop_files(const char *dir, int np) {
    for (int r = 0; r < np; r++) {
        char path[4300];
        snprintf(path, sizeof path, "%s/pid.%d", dir, r);
        unlink(path);
        snprintf(path, sizeof path, "%s/stop.%d", dir, r);
        unlink(path);
    }
}

static void stop_once(const char *dir, int to_mpirun) {
    enum { NP = 3 };
    clear_stop_files(dir, NP);
    pid_t job = spawn(NP, NULL, (const char *[]){ "--dir", dir, "--steps", "1500", "--step-ms", "20", NULL });
    pid_t pids[NP];
    const char *whom = to_mpirun ? "mpirun" : "rank 1";
    char msg[256];
    if (!check_true("all ranks reached the loop", wait_pids(dir, NP, pids, 120) == 0)) {
        end_job(job);
        return;
    }
    sleep_ms(300);
    kill(to_mpirun ? job : pids[1], SIGUSR1);
    double secs = 0;
    int rc = wait_for(job, 120, &secs);
    snprintf(msg, sizeof msg, "SIGUSR1 to %s: job exits with %d (AG_EXIT_REQUEUE), got %d after %.1f s", whom,
             AG_EXIT_REQUEUE, rc, secs);
    check_true(msg, rc == AG_EXIT_REQUEUE);
    long long steps[NP];
    int all = 1;
    for (int r = 0; r < NP; r++) {
        char path[4300];
        snprintf(path, sizeof path, "%s/stop.%d", dir, r);
        FILE *fp = fopen(path, "r");
        if (!fp || fscanf(fp, "%lld", &steps[r]) != 1) all = 0;
        if (fp) fclose(fp);
    }
    snprintf(msg, sizeof msg, "SIGUSR1 to %s: every rank checkpointed the same step (%lld %lld %lld)", whom,
             all ? steps[0] : -1, all ? steps[1] : -1, all ? steps[2] : -1);
    check_true(msg, all && steps[0] == steps[1] && steps[1] == steps[2] && steps[0] >= 0 && steps[0] < 1500);
}

static void scenario_stop(void) {
    char dir[4200];
    snprintf(dir, sizeof dir, "%s/stop", g_work);
    mkdir_p(dir);
    stop_once(dir, 0);
    stop_once(dir, 1);
}

static void scenario_fatal(void) {
    double secs = 0;
    int rc = wait_for(spawn(3, NULL, (const char *[]){ "--fatal", "1", NULL }), 120, &secs);
    char msg[200];
    snprintf(msg, sizeof msg, "ag_fatal on rank 1 ends the whole job (rc %d) in %.1f s, not a hang", rc, secs);
    check_true(msg, rc != 0 && rc != 3 && rc != -1 && secs < 60);
    check_true("the message names the rank and the reason", log_contains("argent: rank 1: deliberate failure"));
}

int main(int argc, char **argv) {
    if (argc != 5) {
        fprintf(stderr, "usage: dist_driver resume|stop|fatal MPIEXEC WORKDIR EXE\n");
        return 2;
    }
    g_mpiexec = argv[2];
    g_work = argv[3];
    g_exe = argv[4];
    mkdir_p(g_work);
    snprintf(g_log, sizeof g_log, "%s/driver-%s.log", g_work, argv[1]);
    unlink(g_log);
    if (!strcmp(argv[1], "resume")) scenario_resume();
    else if (!strcmp(argv[1], "stop")) scenario_stop();
    else if (!strcmp(argv[1], "fatal")) scenario_fatal();
    else { fprintf(stderr, "dist_driver: unknown scenario '%s'\n", argv[1]); return 2; }
    if (check_failed) dump_log();
    return check_finish();
}
