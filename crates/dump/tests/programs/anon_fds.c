/* Holds one of each anonymous-inode file kind, then sleeps:
 * fd 3 eventfd (counter 42), fd 4 signalfd (SIGUSR1|SIGUSR2), fd 5 timerfd
 * (armed: 100 s, interval 7 s), fd 6 epoll watching fds 3 and 5,
 * fd 7 inotify watching the directory argv[1], fd 8 a semaphore eventfd
 * (EFD_SEMAPHORE, counter 3), fd 9 a periodic timerfd (first expiry after
 * 1 ms, then every 30 s) and fd 10 one with a 10 ms period, both fired and
 * never read: the kernel re-arms them only on read, so their fdinfo shows
 * it_value 0 with pending ticks. Prints "ready" on stdout. */
#include <stdio.h>
#include <stdint.h>
#include <signal.h>
#include <unistd.h>
#include <sys/eventfd.h>
#include <sys/signalfd.h>
#include <sys/timerfd.h>
#include <sys/epoll.h>
#include <sys/inotify.h>

int main(int argc, char **argv)
{
	sigset_t mask;
	struct itimerspec its = { .it_interval = { 7, 0 }, .it_value = { 100, 0 } };
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x1234 };
	struct itimerspec slow = { .it_interval = { 30, 0 }, .it_value = { 0, 1000000 } };
	struct itimerspec fast = { .it_interval = { 0, 10000000 }, .it_value = { 0, 1000000 } };
	int efd, sfd, tfd, epfd, ifd, sem, slow_fd, fast_fd;

	efd = eventfd(42, EFD_NONBLOCK);
	sigemptyset(&mask);
	sigaddset(&mask, SIGUSR1);
	sigaddset(&mask, SIGUSR2);
	sfd = signalfd(-1, &mask, 0);
	tfd = timerfd_create(CLOCK_MONOTONIC, 0);
	timerfd_settime(tfd, 0, &its, NULL);
	epfd = epoll_create1(0);
	epoll_ctl(epfd, EPOLL_CTL_ADD, efd, &ev);
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 0x5678;
	epoll_ctl(epfd, EPOLL_CTL_ADD, tfd, &ev);
	ifd = inotify_init1(0);
	inotify_add_watch(ifd, argv[1], IN_CREATE | IN_DELETE);
	sem = eventfd(3, EFD_SEMAPHORE | EFD_NONBLOCK);
	slow_fd = timerfd_create(CLOCK_MONOTONIC, 0);
	timerfd_settime(slow_fd, 0, &slow, NULL);
	fast_fd = timerfd_create(CLOCK_MONOTONIC, 0);
	timerfd_settime(fast_fd, 0, &fast, NULL);
	if (efd != 3 || sfd != 4 || tfd != 5 || epfd != 6 || ifd != 7 || sem != 8 || slow_fd != 9 ||
	    fast_fd != 10)
		return 1;
	/* Let both periodic timers fire (the fast one about 10 times). */
	usleep(100000);
	printf("ready\n");
	fflush(stdout);
	while (1)
		pause();
}
