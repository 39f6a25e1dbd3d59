/*
 * A listening unix stream socket bound to conf.sock in the working directory (fd 10) with one
 * connection waiting in its accept queue (client end fd 11). Data flows only after restore: CRIU 4.2
 * refuses queued data on a connection that is not accepted yet ("in-flight" socket).
 */
#include "conf.h"
#include <sys/socket.h>
#include <sys/un.h>

static const char hello[] = "hello over the restored pending connection";

int main(int argc, char **argv)
{
	struct sockaddr_un addr = { .sun_family = AF_UNIX };
	char buf[256];
	test_init(argc, argv);
	snprintf(addr.sun_path, sizeof(addr.sun_path), "conf.sock");
	unlink(addr.sun_path);
	int l = socket(AF_UNIX, SOCK_STREAM, 0);
	if (l < 0 || bind(l, (struct sockaddr *)&addr, sizeof(addr)) || listen(l, 8) || dup2(l, 10) < 0)
		setup_fail("listen on conf.sock");
	close(l);
	int c = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c < 0 || connect(c, (struct sockaddr *)&addr, sizeof(addr)) || dup2(c, 11) < 0)
		setup_fail("connect to conf.sock");
	close(c);
	test_ready();
	test_wait();

	int accepting = 0;
	socklen_t len = sizeof(accepting);
	if (getsockopt(10, SOL_SOCKET, SO_ACCEPTCONN, &accepting, &len) || !accepting)
		fail("fd 10 is not listening");
	struct sockaddr_un name;
	len = sizeof(name);
	if (getsockname(10, (struct sockaddr *)&name, &len) || !strstr(name.sun_path, "conf.sock"))
		fail("fd 10 is not bound to conf.sock");
	int fl = fcntl(10, F_GETFL);
	fcntl(10, F_SETFL, fl | O_NONBLOCK);
	int a = accept(10, NULL, NULL);
	if (a < 0) {
		fail("accept: no pending connection (%s)", strerror(errno));
		return test_finish();
	}
	if (write_all(11, hello, sizeof(hello)))
		fail("client end cannot send: %s", strerror(errno));
	ssize_t n = recv(a, buf, sizeof(buf), MSG_DONTWAIT);
	if (n != (ssize_t)sizeof(hello) || memcmp(buf, hello, n))
		fail("accepted connection carried %zd bytes '%.*s'", n, n > 0 ? (int)n : 0, buf);
	if (send(a, "back", 4, 0) != 4 || recv(11, buf, 4, MSG_DONTWAIT) != 4 || memcmp(buf, "back", 4))
		fail("the accepted connection does not reach the client end");
	if (accept(10, NULL, NULL) >= 0)
		fail("a second connection was pending");
	/* The listener still accepts new connections. */
	int c2 = socket(AF_UNIX, SOCK_STREAM, 0);
	if (c2 < 0 || connect(c2, (struct sockaddr *)&addr, sizeof(addr)))
		fail("new connect to conf.sock: %s", strerror(errno));
	return test_finish();
}
