/*
 * A child process sleeping in nanosleep for 3 s (restarting with the remaining time on EINTR)
 * across checkpoint/restore. The total measured sleep must be at least the requested time, and
 * not absurdly longer than requested plus the time the test was checkpointed.
 */
#include "conf.h"
#include <time.h>

#define SLEEP_NS 3000000000LL

static long long now_ns(clockid_t clk)
{
	struct timespec ts;
	clock_gettime(clk, &ts);
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	int p[2];
	if (pipe(p))
		setup_fail("pipe");
	pid_t child = fork();
	if (child < 0)
		setup_fail("fork");
	if (child == 0) {
		close(p[0]);
		long long start = now_ns(CLOCK_MONOTONIC);
		struct timespec req = { SLEEP_NS / 1000000000LL, SLEEP_NS % 1000000000LL }, rem;
		close(p[1]);
		int interrupted = 0;
		while (nanosleep(&req, &rem) == -1) {
			if (errno != EINTR) {
				fail("nanosleep: %s", strerror(errno));
				break;
			}
			interrupted++;
			req = rem;
		}
		long long slept = now_ns(CLOCK_MONOTONIC) - start;
		if (slept < SLEEP_NS)
			fail("slept %lld ns, requested %lld ns (interrupted %d times)", slept, SLEEP_NS,
			     interrupted);
		/* Generous bound: requested time plus any time spent checkpointed (< 120 s here). */
		if (slept > SLEEP_NS + 120000000000LL)
			fail("slept %lld ns, far more than requested %lld ns", slept, SLEEP_NS);
		note("child slept %lld ns, interrupted %d times", slept, interrupted);
		exit(child_finish("sleeper"));
	}
	close(p[1]);
	char byte;
	while (read(p[0], &byte, 1) < 0 && errno == EINTR)
		;
	close(p[0]);
	usleep(50000);
	test_ready();
	test_wait();
	int status;
	if (waitpid_retry(child, &status, 0) != child)
		fail("waitpid(%d): %s", child, strerror(errno));
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("sleeper ended with status %#x", status);
	return test_finish();
}
