/* Holds one of each anonymous-inode file kind, then sleeps:
 * fd 3 eventfd (counter 42), fd 4 signalfd (SIGUSR1|SIGUSR2), fd 5 timerfd
 * (armed: 100 s, interval 7 s), fd 6 epoll watching fds 3 and 5,
 * fd 7 inotify watching the directory argv[1]. Prints "ready" on stdout. */
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
	int efd, sfd, tfd, epfd, ifd;

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
	if (efd != 3 || sfd != 4 || tfd != 5 || epfd != 6 || ifd != 7)
		return 1;
	printf("ready\n");
	fflush(stdout);
	while (1)
		pause();
}
