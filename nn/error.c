/* Thread-local last error message; see error.h. */
#include "nn/error.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

static _Thread_local char msg[2048];

int ag_err(const char *fmt, ...) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(msg, sizeof msg, fmt, ap);
    va_end(ap);
    return -1;
}

int ag_err_ctx(const char *fmt, ...) {
    char old[sizeof msg], pre[1024];
    memcpy(old, msg, sizeof msg);
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(pre, sizeof pre, fmt, ap);
    va_end(ap);
    /* Bounded precisions: the joined message always fits (no silent truncation warning). */
    snprintf(msg, sizeof msg, "%.1000s: %.1000s", pre, old);
    return -1;
}

const char *ag_errmsg(void) { return msg[0] ? msg : "unknown error"; }
void ag_err_clear(void) { msg[0] = 0; }
