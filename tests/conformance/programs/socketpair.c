/*
 * Unix socketpairs with queued data: a SOCK_STREAM pair (fds 10, 11) with data queued in both
 * directions, and a SOCK_DGRAM pair (fds 12, 13) with two datagrams queued one way.
 */
#include "conf.h"
#include <sys/socket.h>

static const char to_b[] = "stream data from end a to end b";
static const char to_a[] = "and a reply from b to a";

int main(int argc, char **argv)
{
	int s[2], d[2];
	char buf[256];
	test_init(argc, argv);
	if (socketpair(AF_UNIX, SOCK_STREAM, 0, s) || dup2(s[0], 10) < 0 || dup2(s[1], 11) < 0)
		setup_fail("socketpair stream");
	close(s[0]);
	close(s[1]);
	if (socketpair(AF_UNIX, SOCK_DGRAM, 0, d) || dup2(d[0], 12) < 0 || dup2(d[1], 13) < 0)
		setup_fail("socketpair dgram");
	close(d[0]);
	close(d[1]);
	if (write_all(10, to_b, sizeof(to_b)) || write_all(11, to_a, sizeof(to_a)))
		setup_fail("queue stream data");
	if (send(12, "dgram-1", 7, 0) != 7 || send(12, "dgram-two", 9, 0) != 9)
		setup_fail("queue datagrams");
	test_ready();
	test_wait();

	ssize_t n = recv(11, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != (ssize_t)sizeof(to_b) || memcmp(buf, to_b, n))
		fail("end b received %zd bytes '%.*s'", n, n > 0 ? (int)n : 0, buf);
	n = recv(10, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != (ssize_t)sizeof(to_a) || memcmp(buf, to_a, n))
		fail("end a received %zd bytes '%.*s'", n, n > 0 ? (int)n : 0, buf);
	n = recv(13, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != 7 || memcmp(buf, "dgram-1", 7))
		fail("first datagram is %zd bytes '%.*s'", n, n > 0 ? (int)n : 0, buf);
	n = recv(13, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != 9 || memcmp(buf, "dgram-two", 9))
		fail("second datagram is %zd bytes '%.*s'", n, n > 0 ? (int)n : 0, buf);
	n = recv(13, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != -1 || errno != EAGAIN)
		fail("an extra datagram (%zd bytes) was queued", n);
	int type;
	socklen_t len = sizeof(type);
	if (getsockopt(12, SOL_SOCKET, SO_TYPE, &type, &len) || type != SOCK_DGRAM)
		fail("fd 12 is not a datagram socket");
	/* Still connected both ways. */
	if (send(11, "z", 1, 0) != 1 || recv(10, buf, 1, MSG_DONTWAIT) != 1 || buf[0] != 'z')
		fail("stream pair does not carry new data");
	if (send(13, "q", 1, 0) != 1 || recv(12, buf, 1, MSG_DONTWAIT) != 1 || buf[0] != 'q')
		fail("dgram pair does not carry new data");
	return test_finish();
}
