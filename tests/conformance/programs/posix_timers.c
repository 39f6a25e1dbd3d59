/*
 * POSIX timers: a CLOCK_MONOTONIC timer firing every 150 ms with SIGRTMIN+1 and a sigev value,
 * and a CLOCK_REALTIME one-shot an hour away. After restore: same timer ids, intervals and
 * remaining time, the periodic one still firing with its value.
 */
#include "conf.h"
#include <time.h>

static volatile int ticks, bad_value;

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	ticks++;
	if (si->si_value.sival_int != 0x7173)
		bad_value = si->si_value.sival_int ? si->si_value.sival_int : -1;
}

int main(int argc, char **argv)
{
	timer_t periodic, oneshot;
	test_init(argc, argv);
	struct sigaction sa = { 0 };
	sa.sa_sigaction = on_rt;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigaction(SIGRTMIN + 1, &sa, NULL);
	struct sigevent sev = { 0 };
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN + 1;
	sev.sigev_value.sival_int = 0x7173;
	if (timer_create(CLOCK_MONOTONIC, &sev, &periodic))
		setup_fail("timer_create monotonic");
	sev.sigev_signo = SIGUSR2;
	sev.sigev_value.sival_int = 0;
	if (timer_create(CLOCK_REALTIME, &sev, &oneshot))
		setup_fail("timer_create realtime");
	struct itimerspec its = { { 0, 150000000 }, { 0, 150000000 } };
	if (timer_settime(periodic, 0, &its, NULL))
		setup_fail("timer_settime periodic");
	struct itimerspec far = { { 0, 0 }, { 3600, 0 } };
	if (timer_settime(oneshot, 0, &far, NULL))
		setup_fail("timer_settime one-shot");
	note("timer ids %p %p", periodic, oneshot);
	test_ready();
	test_wait();

	struct itimerspec cur;
	if (timer_gettime(periodic, &cur))
		fail("timer_gettime(%p): %s", periodic, strerror(errno));
	else if (cur.it_interval.tv_sec != 0 || cur.it_interval.tv_nsec != 150000000)
		fail("periodic timer interval %ld.%09ld, expected 0.150000000", (long)cur.it_interval.tv_sec,
		     cur.it_interval.tv_nsec);
	if (timer_gettime(oneshot, &cur))
		fail("timer_gettime(%p): %s", oneshot, strerror(errno));
	else if (cur.it_value.tv_sec < 3500 || cur.it_value.tv_sec > 3600 || cur.it_interval.tv_sec)
		fail("one-shot timer has %ld s left (interval %ld), expected just under 3600 and none",
		     (long)cur.it_value.tv_sec, (long)cur.it_interval.tv_sec);
	int t0 = ticks;
	for (int i = 0; i < 100 && ticks < t0 + 2; i++)
		usleep(20000);
	if (ticks < t0 + 2)
		fail("periodic timer fired %d times in 2 s after restore", ticks - t0);
	if (bad_value)
		fail("periodic timer delivered sigev value %#x, expected 0x7173", bad_value);
	if (timer_delete(periodic) || timer_delete(oneshot))
		fail("timer_delete: %s", strerror(errno));
	return test_finish();
}
