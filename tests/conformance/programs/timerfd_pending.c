/*
 * A periodic timerfd (fd 10, CLOCK_MONOTONIC, first expiry after 10 ms, then every 1 s) whose first
 * tick is left unread. The kernel re-arms a periodic timerfd only when it is read, so at checkpoint
 * fdinfo shows it_value 0 with one pending tick. After restore the tick must be readable, the
 * interval kept, and the timer must fire again (a restore that sets it_value 0 disarms it).
 */
#include "conf.h"
#include <sys/timerfd.h>

int main(int argc, char **argv)
{
	test_init(argc, argv);
	int t = timerfd_create(CLOCK_MONOTONIC, TFD_NONBLOCK);
	if (t < 0 || dup2(t, 10) < 0)
		setup_fail("timerfd_create");
	close(t);
	struct itimerspec periodic = { { 1, 0 }, { 0, 10000000 } };
	if (timerfd_settime(10, 0, &periodic, NULL))
		setup_fail("timerfd_settime");
	usleep(50000);
	test_ready();
	test_wait();

	struct itimerspec cur;
	if (timerfd_gettime(10, &cur) || cur.it_interval.tv_sec != 1 || cur.it_interval.tv_nsec != 0)
		fail("interval %ld.%09ld, expected 1 s", (long)cur.it_interval.tv_sec, cur.it_interval.tv_nsec);
	uint64_t ticks = 0;
	if (read(10, &ticks, 8) != 8 || ticks < 1)
		fail("the pending tick is gone (read gave %llu: %s)", (unsigned long long)ticks, strerror(errno));
	uint64_t next = 0;
	for (int i = 0; i < 150 && next == 0; i++)
		if (read(10, &next, 8) != 8)
			usleep(20000);
	if (next == 0)
		fail("the periodic timerfd did not fire again within 3 s after restore");
	return test_finish();
}
