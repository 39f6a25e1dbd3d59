/*
 * Shared ready/verify protocol of the criu-rs conformance programs.
 *
 * Every program is started as `prog OUT_FILE READY_FILE [extra args...]`:
 *  - test_init() opens OUT_FILE with O_APPEND as fds 1 and 2 (so the out file is itself
 *    state that goes through checkpoint/restore), makes stdin /dev/null, creates READY_FILE
 *    empty, installs the SIGTERM handler and calls setsid() (the root of a test is a session leader).
 *  - the program builds its state and calls test_ready(): "ready <pid>" is written to READY_FILE.
 *  - test_wait() sleeps in FUTEX_WAIT until SIGTERM arrives. Checkpoint/restore happens here.
 *  - the program checks its state; every difference is reported with fail(); test_finish()
 *    appends "PASS" or "FAIL: <differences>" as the last line of OUT_FILE and returns the exit code.
 */
#ifndef CONF_H
#define CONF_H

#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

/* Extra arguments after OUT_FILE and READY_FILE. */
extern int test_nargs;
extern char **test_args;
/* Set to 1 by SIGTERM; the futex word test_wait() sleeps on. */
extern volatile int test_got_term;
/* Set before test_init() to keep the caller's session (shell job) and stdin. */
extern int test_keep_session;

void test_init(int argc, char **argv);
void test_ready(void);
void test_wait(void);
/* Records one difference; the first 3000 bytes of all differences are reported. */
void fail(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
int test_failed(void);
/* Appends PASS/FAIL to the out file; returns the exit code (0 pass, 1 fail). */
int test_finish(void);
/* Setup could not build the state: report it and exit 1 before ready. */
void setup_fail(const char *fmt, ...) __attribute__((format(printf, 1, 2), noreturn));
/* Writes a diagnostic line to the out file (not the verdict). */
void note(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

/* Closes every fd >= 3 except keep (-1 for none); used by forked children. */
void close_fds_from3_except(int keep);
/* Fills buf with a deterministic pattern derived from seed. */
void fill_pattern(void *buf, size_t len, uint64_t seed);
/* Returns the index of the first byte that differs from the pattern, or -1. */
long check_pattern(const void *buf, size_t len, uint64_t seed);
/* Writes/reads exactly len bytes, retrying on EINTR and short transfers; 0 or -1. */
int write_all(int fd, const void *buf, size_t len);
int read_all(int fd, void *buf, size_t len);
/* waitpid that retries on EINTR. */
pid_t waitpid_retry(pid_t pid, int *status, int flags);
/* A child process of a test: waits for SIGTERM, then runs check and exits with its verdict. */
int child_finish(const char *who);

#endif
