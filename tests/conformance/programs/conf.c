#include "conf.h"

#include <linux/futex.h>

int test_nargs;
char **test_args;
volatile int test_got_term;
int test_keep_session;

static char ready_path[4096];
static char failures[3000];
static size_t failures_len;
static int failure_count;

static void on_sigterm(int sig)
{
	(void)sig;
	test_got_term = 1;
}

static void put_line(const char *prefix, const char *fmt, va_list ap)
{
	char line[4096];
	int n = snprintf(line, sizeof(line), "%s", prefix);
	n += vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	if (n > (int)sizeof(line) - 2)
		n = sizeof(line) - 2;
	line[n++] = '\n';
	write_all(1, line, n);
}

void note(const char *fmt, ...)
{
	va_list ap;
	char prefix[64];
	snprintf(prefix, sizeof(prefix), "note[%d]: ", getpid());
	va_start(ap, fmt);
	put_line(prefix, fmt, ap);
	va_end(ap);
}

void setup_fail(const char *fmt, ...)
{
	va_list ap;
	char msg[2048];
	int saved = errno;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	dprintf(1, "FAIL: setup: %s (errno %d: %s)\n", msg, saved, strerror(saved));
	exit(1);
}

void test_init(int argc, char **argv)
{
	struct sigaction sa;
	int fd;

	if (argc < 3) {
		fprintf(stderr, "usage: %s OUT_FILE READY_FILE [args...]\n", argv[0]);
		exit(2);
	}
	fd = open(argv[1], O_WRONLY | O_CREAT | O_APPEND, 0644);
	if (fd < 0) {
		perror("open out file");
		exit(2);
	}
	if (!test_keep_session) {
		dup2(fd, 1);
		dup2(fd, 2);
		int null = open("/dev/null", O_RDONLY);
		if (null < 0)
			setup_fail("open /dev/null");
		dup2(null, 0);
		if (null != 0)
			close(null);
	} else {
		/* A shell job keeps its terminal as stdin; the out file still gets fd 2 and a private fd. */
		dup2(fd, 2);
		if (fd != 1 && dup2(fd, 1) < 0)
			exit(2);
	}
	if (fd > 2)
		close(fd);

	if (argv[2][0] == '/' || !getcwd(ready_path, sizeof(ready_path) - 1))
		snprintf(ready_path, sizeof(ready_path), "%s", argv[2]);
	else
		snprintf(ready_path + strlen(ready_path), sizeof(ready_path) - strlen(ready_path), "/%s",
			 argv[2]);
	fd = open(ready_path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0666);
	if (fd < 0)
		setup_fail("create ready file %s", ready_path);
	fchmod(fd, 0666);
	close(fd);

	test_nargs = argc - 3;
	test_args = argv + 3;

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_sigterm;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGTERM, &sa, NULL))
		setup_fail("sigaction SIGTERM");

	if (!test_keep_session && setsid() < 0)
		setup_fail("setsid");
}

void test_ready(void)
{
	char buf[64];
	int fd = open(ready_path, O_WRONLY | O_TRUNC | O_CLOEXEC);
	if (fd < 0)
		setup_fail("open ready file %s", ready_path);
	int n = snprintf(buf, sizeof(buf), "ready %d\n", getpid());
	if (write_all(fd, buf, n))
		setup_fail("write ready file");
	close(fd);
}

void test_wait(void)
{
	while (!test_got_term)
		syscall(SYS_futex, &test_got_term, FUTEX_WAIT, 0, NULL, NULL, 0);
}

void fail(const char *fmt, ...)
{
	va_list ap;
	char msg[1024];
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	failure_count++;
	note("check failed: %s", msg);
	if (failures_len < sizeof(failures) - 1) {
		int n = snprintf(failures + failures_len, sizeof(failures) - failures_len, "%s%s",
				 failures_len ? "; " : "", msg);
		if (n > 0)
			failures_len += n;
		if (failures_len > sizeof(failures) - 1)
			failures_len = sizeof(failures) - 1;
	}
}

int test_failed(void)
{
	return failure_count != 0;
}

int test_finish(void)
{
	if (failure_count == 0) {
		dprintf(1, "PASS\n");
		return 0;
	}
	dprintf(1, "FAIL: %s\n", failures);
	return 1;
}

int child_finish(const char *who)
{
	if (failure_count == 0)
		return 0;
	note("%s: %s", who, failures);
	return 1;
}

void close_fds_from3_except(int keep)
{
	for (int fd = 3; fd < 1024; fd++)
		if (fd != keep)
			close(fd);
}

static uint64_t splitmix(uint64_t *state)
{
	uint64_t z = (*state += 0x9e3779b97f4a7c15ULL);
	z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
	z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
	return z ^ (z >> 31);
}

void fill_pattern(void *buf, size_t len, uint64_t seed)
{
	unsigned char *p = buf;
	uint64_t st = seed;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = splitmix(&st);
		size_t n = len - i < 8 ? len - i : 8;
		memcpy(p + i, &v, n);
	}
}

long check_pattern(const void *buf, size_t len, uint64_t seed)
{
	const unsigned char *p = buf;
	uint64_t st = seed;
	for (size_t i = 0; i < len; i += 8) {
		uint64_t v = splitmix(&st);
		size_t n = len - i < 8 ? len - i : 8;
		if (memcmp(p + i, &v, n)) {
			for (size_t j = 0; j < n; j++)
				if (p[i + j] != ((unsigned char *)&v)[j])
					return (long)(i + j);
		}
	}
	return -1;
}

int write_all(int fd, const void *buf, size_t len)
{
	const char *p = buf;
	while (len) {
		ssize_t n = write(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

int read_all(int fd, void *buf, size_t len)
{
	char *p = buf;
	while (len) {
		ssize_t n = read(fd, p, len);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		p += n;
		len -= n;
	}
	return 0;
}

pid_t waitpid_retry(pid_t pid, int *status, int flags)
{
	pid_t r;
	do
		r = waitpid(pid, status, flags);
	while (r < 0 && errno == EINTR);
	return r;
}
