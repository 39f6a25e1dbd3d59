/*
 * A signalfd (fd 10, SFD_NONBLOCK) for SIGUSR1 and SIGRTMIN+2, both blocked; SIGRTMIN+2 queued
 * once with a value before checkpoint. After restore the signalfd yields exactly that one signal.
 */
#include "conf.h"
#include <sys/signalfd.h>

int main(int argc, char **argv)
{
	sigset_t set;
	test_init(argc, argv);
	int rt = SIGRTMIN + 2;
	sigemptyset(&set);
	sigaddset(&set, SIGUSR1);
	sigaddset(&set, rt);
	if (sigprocmask(SIG_BLOCK, &set, NULL))
		setup_fail("sigprocmask");
	int fd = signalfd(-1, &set, SFD_NONBLOCK);
	if (fd < 0 || dup2(fd, 10) < 0)
		setup_fail("signalfd");
	close(fd);
	union sigval v = { .sival_int = 0x51f };
	if (sigqueue(getpid(), rt, v))
		setup_fail("sigqueue");
	test_ready();
	test_wait();

	struct signalfd_siginfo si;
	ssize_t n = read(10, &si, sizeof(si));
	if (n != sizeof(si))
		fail("signalfd read returned %zd (%s), expected one siginfo", n, strerror(errno));
	else {
		if ((int)si.ssi_signo != rt)
			fail("signalfd delivered signal %u, expected SIGRTMIN+2", si.ssi_signo);
		if (si.ssi_int != 0x51f)
			fail("signalfd value %#x, expected 0x51f", si.ssi_int);
		if ((pid_t)si.ssi_pid != getpid())
			fail("signalfd sender %u, expected %d", si.ssi_pid, getpid());
	}
	n = read(10, &si, sizeof(si));
	if (n != -1 || errno != EAGAIN)
		fail("signalfd has a second signal (%u)", n == sizeof(si) ? si.ssi_signo : 0);
	/* Still a working signalfd for its mask. */
	raise(SIGUSR1);
	n = read(10, &si, sizeof(si));
	if (n != sizeof(si) || si.ssi_signo != SIGUSR1)
		fail("signalfd does not report a new SIGUSR1");
	return test_finish();
}
