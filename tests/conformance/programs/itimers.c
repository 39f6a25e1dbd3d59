/*
 * Interval timers: ITIMER_REAL every 200 ms (SIGALRM handler counting) and ITIMER_VIRTUAL armed
 * with a long value and a 7 s interval. After restore both are armed with their intervals and the
 * real timer keeps firing.
 */
#include "conf.h"
#include <sys/time.h>

static volatile int alarms;

static void on_alarm(int sig)
{
	(void)sig;
	alarms++;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	struct sigaction sa = { 0 };
	sa.sa_handler = on_alarm;
	sa.sa_flags = SA_RESTART;
	sigaction(SIGALRM, &sa, NULL);
	struct itimerval real = { { 0, 200000 }, { 0, 200000 } };
	struct itimerval virt = { { 7, 0 }, { 3600, 0 } };
	if (setitimer(ITIMER_REAL, &real, NULL) || setitimer(ITIMER_VIRTUAL, &virt, NULL))
		setup_fail("setitimer");
	test_ready();
	test_wait();

	struct itimerval cur;
	getitimer(ITIMER_REAL, &cur);
	if (cur.it_interval.tv_sec != 0 || cur.it_interval.tv_usec != 200000)
		fail("ITIMER_REAL interval %ld.%06ld, expected 0.200000", (long)cur.it_interval.tv_sec,
		     (long)cur.it_interval.tv_usec);
	if (cur.it_value.tv_sec == 0 && cur.it_value.tv_usec == 0)
		fail("ITIMER_REAL is disarmed");
	getitimer(ITIMER_VIRTUAL, &cur);
	if (cur.it_interval.tv_sec != 7 || cur.it_interval.tv_usec != 0)
		fail("ITIMER_VIRTUAL interval %ld.%06ld, expected 7", (long)cur.it_interval.tv_sec,
		     (long)cur.it_interval.tv_usec);
	if (cur.it_value.tv_sec < 3500 || cur.it_value.tv_sec > 3600)
		fail("ITIMER_VIRTUAL has %ld s left, expected just under 3600", (long)cur.it_value.tv_sec);
	int a0 = alarms;
	for (int i = 0; i < 100 && alarms < a0 + 2; i++)
		usleep(20000);
	if (alarms < a0 + 2)
		fail("ITIMER_REAL fired %d times in 2 s after restore", alarms - a0);
	return test_finish();
}
