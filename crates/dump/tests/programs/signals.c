/* Sets up signal and timer state, prints the handler address, then pauses:
 * SIGUSR1 handler (SA_SIGINFO|SA_RESTART, mask {SIGINT}), SIGPIPE ignored,
 * SIGUSR2 blocked and pending twice (once process-wide, once for this
 * thread), an alternate signal stack, ITIMER_REAL 100 s / 5 s, a POSIX timer
 * (CLOCK_MONOTONIC, SIGRTMIN, sival 0xabc) 50 s / 3 s, PDEATHSIG SIGTERM,
 * umask 027, nice 5. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <time.h>
#include <unistd.h>
#include <sys/time.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <sys/syscall.h>

static void handler(int sig, siginfo_t *si, void *uc) { (void)sig; (void)si; (void)uc; }

int main(void)
{
	struct sigaction sa = { 0 };
	sigset_t block;
	stack_t ss = { .ss_sp = malloc(65536), .ss_size = 65536, .ss_flags = 0 };
	struct itimerval it = { .it_interval = { 5, 0 }, .it_value = { 100, 0 } };
	struct sigevent sev = { 0 };
	struct itimerspec pts = { .it_interval = { 3, 0 }, .it_value = { 50, 0 } };
	timer_t timer;

	sa.sa_sigaction = handler;
	sa.sa_flags = SA_SIGINFO | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGINT);
	sigaction(SIGUSR1, &sa, NULL);
	signal(SIGPIPE, SIG_IGN);
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigprocmask(SIG_BLOCK, &block, NULL);
	kill(getpid(), SIGUSR2);
	syscall(SYS_tgkill, getpid(), getpid(), SIGUSR2);
	sigaltstack(&ss, NULL);
	setitimer(ITIMER_REAL, &it, NULL);
	sev.sigev_notify = SIGEV_SIGNAL;
	sev.sigev_signo = SIGRTMIN;
	sev.sigev_value.sival_ptr = (void *)0xabc;
	timer_create(CLOCK_MONOTONIC, &sev, &timer);
	timer_settime(timer, 0, &pts, NULL);
	prctl(PR_SET_PDEATHSIG, SIGTERM);
	umask(027);
	setpriority(PRIO_PROCESS, 0, 5);
	printf("%lx %lx\n", (unsigned long)handler, (unsigned long)ss.ss_sp);
	fflush(stdout);
	while (1)
		pause();
}
