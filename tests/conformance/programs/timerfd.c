/*
 * timerfds: fd 10 CLOCK_MONOTONIC periodic 100 ms; fd 11 CLOCK_REALTIME one-shot one hour away
 * (TFD_TIMER_ABSTIME); fd 12 CLOCK_BOOTTIME disarmed. After restore: intervals, the remaining time
 * of the one-shot, the disarmed timer, and the periodic timer still ticking.
 * (The 100 ms timer may or may not hold an unread tick at checkpoint; timerfd_pending.c makes that
 * case deterministic.)
 */
#include "conf.h"
#include <sys/timerfd.h>
#include <time.h>

int main(int argc, char **argv)
{
	test_init(argc, argv);
	int t1 = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	int t2 = timerfd_create(CLOCK_REALTIME, 0);
	int t3 = timerfd_create(CLOCK_BOOTTIME, TFD_CLOEXEC);
	if (t1 < 0 || t2 < 0 || t3 < 0 || dup2(t1, 10) < 0 || dup2(t2, 11) < 0 || dup3(t3, 12, O_CLOEXEC) < 0)
		setup_fail("timerfd_create");
	close(t1);
	close(t2);
	close(t3);
	struct itimerspec periodic = { { 0, 100000000 }, { 0, 100000000 } };
	if (timerfd_settime(10, 0, &periodic, NULL))
		setup_fail("timerfd_settime periodic");
	struct timespec now;
	clock_gettime(CLOCK_REALTIME, &now);
	struct itimerspec oneshot = { { 0, 0 }, { now.tv_sec + 3600, 0 } };
	if (timerfd_settime(11, TFD_TIMER_ABSTIME, &oneshot, NULL))
		setup_fail("timerfd_settime one-shot");
	test_ready();
	test_wait();

	struct itimerspec cur;
	if (timerfd_gettime(10, &cur) || cur.it_interval.tv_sec != 0 || cur.it_interval.tv_nsec != 100000000)
		fail("periodic timerfd interval %ld.%09ld", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
	uint64_t ticks = 0;
	for (int i = 0; i < 100; i++) {
		if (read(10, &ticks, 8) == 8)
			break;
		usleep(20000);
	}
	if (ticks == 0)
		fail("periodic timerfd did not expire within 2 s after restore");
	if (timerfd_gettime(11, &cur))
		fail("timerfd_gettime one-shot: %s", strerror(errno));
	else {
		clock_gettime(CLOCK_REALTIME, &now);
		long left = cur.it_value.tv_sec;
		long expected = oneshot.it_value.tv_sec - now.tv_sec;
		if (cur.it_interval.tv_sec || cur.it_interval.tv_nsec)
			fail("one-shot timerfd gained an interval");
		if (left < expected - 2 || left > expected + 1)
			fail("one-shot timerfd has %ld s left, expected about %ld s", left, expected);
	}
	if (timerfd_gettime(12, &cur) || cur.it_value.tv_sec || cur.it_value.tv_nsec)
		fail("disarmed timerfd is armed");
	if (fcntl(12, F_GETFD) != FD_CLOEXEC)
		fail("fd 12 lost FD_CLOEXEC");
	if (!(fcntl(10, F_GETFL) & O_NONBLOCK) || (fcntl(11, F_GETFL) & O_NONBLOCK))
		fail("timerfd O_NONBLOCK flags changed");
	char link[256];
	ssize_t n = readlink("/proc/self/fd/11", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (strcmp(link, "anon_inode:[timerfd]"))
		fail("fd 11 links to '%s'", link);
	return test_finish();
}
