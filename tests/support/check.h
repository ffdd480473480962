/* Small assertion helpers shared by the C tests. Every failure prints what and where and
 * counts; a test's main returns check_finish(), which prints "N passed, N failed". */
#ifndef ARGENT_TEST_CHECK_H
#define ARGENT_TEST_CHECK_H
#include <stddef.h>

extern int check_passed, check_failed;

/* Compare a[i] with want[i]: each element must satisfy |a-w| <= atol + rtol*|w|.
 * Reports the worst element. Returns 1 if all pass. */
int check_close(const char *what, const float *a, const float *want, size_t n, double rtol, double atol);
/* Relative error of the whole tensor: ||a-w||_inf / max(||w||_inf, tiny) <= rel. */
int check_rel(const char *what, const float *a, const float *want, size_t n, double rel);
int check_true(const char *what, int cond);
/* Exit status: 0 when nothing failed. Prints the plain closing line. */
int check_finish(void);
/* Skip the whole test (exit code 77, which ctest reports as skipped), saying why. */
void check_skip(const char *why);
#endif
