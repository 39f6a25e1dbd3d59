/*
 * An epoll set (fd 10) watching a pipe read end (fd 11, EPOLLIN, data 0x1111), an eventfd
 * (fd 13, EPOLLIN|EPOLLET, data 0x2222) and a socket (fd 14, EPOLLOUT, data 0x3333). The pipe
 * holds data before checkpoint (write end fd 12).
 */
#include "conf.h"
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>

int main(int argc, char **argv)
{
	int p[2], sp[2];
	test_init(argc, argv);
	int ep = epoll_create1(0);
	if (ep < 0 || dup2(ep, 10) < 0 || pipe(p) || dup2(p[0], 11) < 0 || dup2(p[1], 12) < 0)
		setup_fail("epoll/pipe");
	close(ep);
	close(p[0]);
	close(p[1]);
	int e = eventfd(0, EFD_NONBLOCK);
	if (e < 0 || dup2(e, 13) < 0 || socketpair(AF_UNIX, SOCK_STREAM, 0, sp) || dup2(sp[0], 14) < 0 ||
	    dup2(sp[1], 15) < 0)
		setup_fail("eventfd/socketpair");
	close(e);
	close(sp[0]);
	close(sp[1]);
	struct epoll_event ev = { .events = EPOLLIN, .data.u64 = 0x1111 };
	if (epoll_ctl(10, EPOLL_CTL_ADD, 11, &ev))
		setup_fail("EPOLL_CTL_ADD pipe");
	ev.events = EPOLLIN | EPOLLET;
	ev.data.u64 = 0x2222;
	if (epoll_ctl(10, EPOLL_CTL_ADD, 13, &ev))
		setup_fail("EPOLL_CTL_ADD eventfd");
	ev.events = EPOLLOUT;
	ev.data.u64 = 0x3333;
	if (epoll_ctl(10, EPOLL_CTL_ADD, 14, &ev))
		setup_fail("EPOLL_CTL_ADD socket");
	if (write_all(12, "ping", 4))
		setup_fail("write pipe");
	test_ready();
	test_wait();

	struct epoll_event evs[8];
	int n = epoll_wait(10, evs, 8, 0);
	int seen_pipe = 0, seen_sock = 0;
	for (int i = 0; i < n; i++) {
		if (evs[i].data.u64 == 0x1111 && (evs[i].events & EPOLLIN))
			seen_pipe++;
		else if (evs[i].data.u64 == 0x3333 && (evs[i].events & EPOLLOUT))
			seen_sock++;
		else
			fail("unexpected event %#x with data %#llx", evs[i].events,
			     (unsigned long long)evs[i].data.u64);
	}
	if (n < 0)
		fail("epoll_wait: %s", strerror(errno));
	if (seen_pipe != 1)
		fail("pipe readiness reported %d times, expected once", seen_pipe);
	if (seen_sock != 1)
		fail("socket writability reported %d times, expected once", seen_sock);
	uint64_t one = 1;
	if (write(13, &one, 8) != 8)
		fail("eventfd write: %s", strerror(errno));
	n = epoll_wait(10, evs, 8, 0);
	int seen_efd = 0;
	for (int i = 0; i < n; i++)
		if (evs[i].data.u64 == 0x2222)
			seen_efd++;
	if (seen_efd != 1)
		fail("eventfd event reported %d times after a write, expected once", seen_efd);
	/* Edge-triggered: no second report without a new write. */
	n = epoll_wait(10, evs, 8, 0);
	for (int i = 0; i < n; i++)
		if (evs[i].data.u64 == 0x2222)
			fail("edge-triggered eventfd reported twice (EPOLLET lost)");
	char buf[8];
	if (read(11, buf, sizeof(buf)) != 4 || memcmp(buf, "ping", 4))
		fail("pipe data lost");
	return test_finish();
}
