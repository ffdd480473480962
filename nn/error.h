/* Error reporting for library code: functions that can fail return non-zero and leave a
 * message (naming the file, line, dataset or option, and what was expected) that the
 * program's top level prints. Only the top level exits. */
#ifndef ARGENT_NN_ERROR_H
#define ARGENT_NN_ERROR_H

/* Set the message (printf-style). Always returns -1, so `return ag_err(...)` works. */
int ag_err(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
/* Prefix the current message with more context: "context: old message". Returns -1. */
int ag_err_ctx(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
const char *ag_errmsg(void);
void ag_err_clear(void);
#endif
