/*
 * Signal state: SIGUSR1 handler with SA_SIGINFO|SA_ONSTACK|SA_RESTART running on a sigaltstack;
 * SIGUSR2 blocked and pending (shared, from sigqueue with a value); SIGRTMIN+3 blocked and queued
 * twice with two values (per-thread, via rt_tgsigqueueinfo). After restore the pending set, the
 * queued values and their order, the altstack and the handler flags must be back.
 */
#include "conf.h"

#define ALT_SIZE (64 * 1024)

static char *altstack;
static volatile int usr1_count, usr1_on_altstack;
static volatile int usr2_count, usr2_value;
static volatile int rt_count, rt_values[8];

static void on_usr1(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	char here;
	usr1_count++;
	if (&here >= altstack && &here < altstack + ALT_SIZE)
		usr1_on_altstack = 1;
	(void)si;
}

static void on_usr2(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	usr2_count++;
	usr2_value = si->si_value.sival_int;
}

static void on_rt(int sig, siginfo_t *si, void *uc)
{
	(void)sig;
	(void)uc;
	if (rt_count < 8)
		rt_values[rt_count] = si->si_value.sival_int;
	rt_count++;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	int rt = SIGRTMIN + 3;
	altstack = malloc(ALT_SIZE);
	stack_t ss = { .ss_sp = altstack, .ss_size = ALT_SIZE, .ss_flags = 0 };
	if (!altstack || sigaltstack(&ss, NULL))
		setup_fail("sigaltstack");
	struct sigaction sa = { 0 };
	sa.sa_sigaction = on_usr1;
	sa.sa_flags = SA_SIGINFO | SA_ONSTACK | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaddset(&sa.sa_mask, SIGUSR2);
	if (sigaction(SIGUSR1, &sa, NULL))
		setup_fail("sigaction SIGUSR1");
	sa.sa_sigaction = on_usr2;
	sa.sa_flags = SA_SIGINFO;
	sigemptyset(&sa.sa_mask);
	if (sigaction(SIGUSR2, &sa, NULL))
		setup_fail("sigaction SIGUSR2");
	sa.sa_sigaction = on_rt;
	if (sigaction(rt, &sa, NULL))
		setup_fail("sigaction SIGRTMIN+3");
	sigset_t block;
	sigemptyset(&block);
	sigaddset(&block, SIGUSR2);
	sigaddset(&block, rt);
	if (sigprocmask(SIG_BLOCK, &block, NULL))
		setup_fail("sigprocmask");
	union sigval v = { .sival_int = 4242 };
	if (sigqueue(getpid(), SIGUSR2, v))
		setup_fail("sigqueue SIGUSR2");
	for (int i = 0; i < 2; i++) {
		siginfo_t si = { 0 };
		si.si_signo = rt;
		si.si_code = SI_QUEUE;
		si.si_pid = getpid();
		si.si_uid = getuid();
		si.si_value.sival_int = 100 + i;
		if (syscall(SYS_rt_tgsigqueueinfo, getpid(), gettid(), rt, &si))
			setup_fail("rt_tgsigqueueinfo");
	}
	test_ready();
	test_wait();

	sigset_t pending, mask;
	sigpending(&pending);
	if (!sigismember(&pending, SIGUSR2))
		fail("SIGUSR2 is not pending");
	if (!sigismember(&pending, rt))
		fail("SIGRTMIN+3 is not pending");
	sigprocmask(SIG_BLOCK, NULL, &mask);
	if (!sigismember(&mask, SIGUSR2) || !sigismember(&mask, rt) || sigismember(&mask, SIGUSR1))
		fail("signal mask changed");
	stack_t now;
	if (sigaltstack(NULL, &now) || now.ss_sp != altstack || now.ss_size != ALT_SIZE ||
	    now.ss_flags != 0)
		fail("sigaltstack is %p/%zu/flags %d, expected %p/%d/0", now.ss_sp, now.ss_size,
		     now.ss_flags, (void *)altstack, ALT_SIZE);
	struct sigaction cur;
	sigaction(SIGUSR1, NULL, &cur);
	if (cur.sa_sigaction != on_usr1 || (cur.sa_flags & (SA_SIGINFO | SA_ONSTACK | SA_RESTART)) !=
						   (SA_SIGINFO | SA_ONSTACK | SA_RESTART) ||
	    !sigismember(&cur.sa_mask, SIGUSR2))
		fail("SIGUSR1 action changed (flags %#x)", cur.sa_flags);
	raise(SIGUSR1);
	if (usr1_count != 1 || !usr1_on_altstack)
		fail("SIGUSR1 handler ran %d times, on altstack %d", usr1_count, usr1_on_altstack);
	sigprocmask(SIG_UNBLOCK, &block, NULL);
	if (usr2_count != 1 || usr2_value != 4242)
		fail("SIGUSR2 delivered %d times with value %d, expected once with 4242", usr2_count,
		     usr2_value);
	if (rt_count != 2)
		fail("SIGRTMIN+3 delivered %d times, expected 2", rt_count);
	else if (rt_values[0] != 100 || rt_values[1] != 101)
		fail("SIGRTMIN+3 values %d,%d, expected 100,101", rt_values[0], rt_values[1]);
	return test_finish();
}
