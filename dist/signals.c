/* Stop signals (a flag set by the handler, agreed across ranks at step boundaries) and
 * fault injection from ARGENT_FAULT; see signals.h. */
#include "dist/signals.h"

#include "dist/comm.h"
#include "nn/error.h"

#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

/* ---- stop signals ---- */

static volatile sig_atomic_t g_signal;
static int g_installed;

/* Only a store: anything more (printf, malloc, MPI) is not async-signal-safe. */
static void on_stop_signal(int sig) { g_signal = sig; }

int ag_signals_install(void) {
    if (g_installed) return 0;
    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_stop_signal;
    sigemptyset(&sa.sa_mask);
    /* SA_RESTART: a read() or MPI wait interrupted by the signal resumes instead of failing
     * with EINTR; the flag is looked at at the next step boundary anyway. */
    sa.sa_flags = SA_RESTART;
    if (sigaction(SIGTERM, &sa, NULL) || sigaction(SIGUSR1, &sa, NULL))
        return ag_err("ag_signals_install: sigaction failed: %s", strerror(errno));
    g_installed = 1;
    return 0;
}

int ag_signal_pending(void) { return (int)g_signal; }
void ag_signal_clear(void) { g_signal = 0; }

int ag_stop_requested(void) {
    const ag_comm *c = ag_comm_get();
    int mine = g_signal != 0, any = mine;
    if (c->world != MPI_COMM_NULL) MPI_Allreduce(&mine, &any, 1, MPI_INT, MPI_MAX, c->world);
    return any;
}

/* ---- fault injection ---- */

enum { F_KILL, F_TERM, F_USR1, F_EXIT, F_SLEEP, F_FAIL };
static const char *const action_names[] = { "kill", "term", "usr1", "exit", "sleep", "fail" };

typedef struct {
    int action;
    int rank;          /* -1: every rank */
    char point[32];
    int any_value;     /* V was '*' */
    int64_t value;
    int ms, code;
} fault_spec;

#define MAX_FAULTS 16
static fault_spec g_faults[MAX_FAULTS];
static int g_nfaults, g_fault_parsed;

static int parse_int64(const char *s, int64_t *out) {
    errno = 0;
    char *end = NULL;
    long long v = strtoll(s, &end, 10);
    if (errno || end == s || *end) return -1;
    *out = v;
    return 0;
}

/* One spec "action:key=value:..." (s is modified). */
static int parse_one(char *s, fault_spec *f, const char *whole) {
    memset(f, 0, sizeof *f);
    f->rank = -1;
    f->action = -1;
    char *save = NULL;
    char *tok = strtok_r(s, ":", &save);
    for (int a = 0; tok && a < (int)(sizeof action_names / sizeof *action_names); a++)
        if (!strcmp(tok, action_names[a])) f->action = a;
    if (f->action < 0)
        return ag_err("ARGENT_FAULT '%s': unknown action '%s' (expected kill, term, usr1, exit, "
                      "sleep or fail)", whole, tok ? tok : "");
    int have_point = 0;
    while ((tok = strtok_r(NULL, ":", &save))) {
        char *eq = strchr(tok, '=');
        if (!eq || eq == tok || !eq[1])
            return ag_err("ARGENT_FAULT '%s': '%s' is not key=value", whole, tok);
        *eq = 0;
        const char *key = tok, *val = eq + 1;
        int64_t v = 0;
        int is_star = !strcmp(val, "*");
        if (!is_star && parse_int64(val, &v))
            return ag_err("ARGENT_FAULT '%s': %s=%s is not an integer", whole, key, val);
        if (!strcmp(key, "rank") || !strcmp(key, "ms") || !strcmp(key, "code")) {
            if (is_star || v < 0 || v > 1 << 30)
                return ag_err("ARGENT_FAULT '%s': %s must be a non-negative integer", whole, key);
            if (key[0] == 'r') f->rank = (int)v;
            else if (key[0] == 'm') f->ms = (int)v;
            else f->code = (int)v;
        } else {
            if (have_point)
                return ag_err("ARGENT_FAULT '%s': two points ('%s' and '%s'); give one", whole,
                              f->point, key);
            if (strlen(key) >= sizeof f->point)
                return ag_err("ARGENT_FAULT '%s': point name '%s' too long", whole, key);
            snprintf(f->point, sizeof f->point, "%s", key);
            f->any_value = is_star;
            f->value = v;
            have_point = 1;
        }
    }
    if (!have_point)
        return ag_err("ARGENT_FAULT '%s': no point (for example chunk=5 or step=7)", whole);
    return 0;
}

int ag_fault_set(const char *spec) {
    g_fault_parsed = 1;
    g_nfaults = 0;
    if (!spec || !*spec) return 0;
    char *copy = strdup(spec);
    if (!copy) return ag_err("ARGENT_FAULT: out of memory");
    fault_spec parsed[MAX_FAULTS];
    int n = 0, rc = 0;
    char *save = NULL;
    for (char *one = strtok_r(copy, ",", &save); one; one = strtok_r(NULL, ",", &save)) {
        if (n == MAX_FAULTS) { rc = ag_err("ARGENT_FAULT '%s': more than %d specs", spec, MAX_FAULTS); break; }
        if ((rc = parse_one(one, &parsed[n], spec))) break;
        n++;
    }
    free(copy);
    if (rc) return rc;
    memcpy(g_faults, parsed, (size_t)n * sizeof *parsed);
    g_nfaults = n;
    return 0;
}

int ag_fault_init(void) {
    if (g_fault_parsed) return 0;
    return ag_fault_set(getenv("ARGENT_FAULT"));
}

static int world_rank(void) {
    int inited = 0, finalized = 0, r = 0;
    MPI_Initialized(&inited);
    MPI_Finalized(&finalized);
    if (inited && !finalized) MPI_Comm_rank(MPI_COMM_WORLD, &r);
    return r;
}

static void sleep_ms(int ms) {
    struct timespec ts = { ms / 1000, (long)(ms % 1000) * 1000000L };
    /* A stop signal must not cut a simulated slow chunk short: resume the rest. */
    while (nanosleep(&ts, &ts) && errno == EINTR) {}
}

int ag_fault_point(const char *point, int64_t value) {
    if (!g_fault_parsed && ag_fault_init()) {
        /* A malformed spec reached here without ag_comm_init: say so once, inject nothing. */
        fprintf(stderr, "argent: ignoring ARGENT_FAULT: %s\n", ag_errmsg());
        g_fault_parsed = 1;
        g_nfaults = 0;
    }
    if (!g_nfaults) return 0;
    int rank = world_rank();
    for (int i = 0; i < g_nfaults; i++) {
        const fault_spec *f = &g_faults[i];
        if (strcmp(f->point, point) || (f->rank >= 0 && f->rank != rank)) continue;
        if (!f->any_value && f->value != value) continue;
        if (f->action != F_SLEEP) {
            fprintf(stderr, "argent: rank %d: fault injected: %s at %s=%lld\n", rank,
                    action_names[f->action], point, (long long)value);
            fflush(stderr);
        }
        switch (f->action) {
        case F_KILL: fflush(stdout); raise(SIGKILL); break;
        case F_TERM: raise(SIGTERM); break;
        case F_USR1: raise(SIGUSR1); break;
        case F_EXIT: fflush(stdout); _exit(f->code); break;
        case F_SLEEP: sleep_ms(f->ms); break;
        case F_FAIL:
            return ag_err("fault injected on rank %d at %s=%lld (ARGENT_FAULT)", rank, point,
                          (long long)value);
        }
    }
    return 0;
}
