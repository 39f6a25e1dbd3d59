/*
 * A child blocked in read() on a pipe across checkpoint/restore. After restore the parent
 * writes a message; the child must read exactly that message and nothing before it.
 * The parent keeps the write end as fd 10 and the child reads from fd 11 (the runner's
 * tamper self-check writes into /proc/CHILD/fd/11).
 */
#include "conf.h"

static const char message[] = "wake up, the pipe survived";

int main(int argc, char **argv)
{
	int p[2];
	test_init(argc, argv);
	if (pipe(p) || dup2(p[1], 10) < 0 || dup2(p[0], 11) < 0)
		setup_fail("pipe");
	close(p[0]);
	close(p[1]);
	pid_t child = fork();
	if (child < 0)
		setup_fail("fork");
	if (child == 0) {
		char buf[256];
		close(10);
		ssize_t n;
		do
			n = read(11, buf, sizeof(buf));
		while (n < 0 && errno == EINTR);
		if (n != (ssize_t)sizeof(message) || memcmp(buf, message, sizeof(message)))
			fail("child read %zd bytes '%.*s', expected the wake-up message", n,
			     n > 0 ? (int)n : 0, buf);
		exit(child_finish("reader"));
	}
	close(11);
	/* Wait until the child sleeps in pipe_read. */
	char path[64], wchan[64] = "";
	snprintf(path, sizeof(path), "/proc/%d/wchan", child);
	for (int i = 0; i < 5000; i++) {
		int fd = open(path, O_RDONLY);
		ssize_t n = fd >= 0 ? read(fd, wchan, sizeof(wchan) - 1) : -1;
		if (fd >= 0)
			close(fd);
		wchan[n > 0 ? n : 0] = 0;
		if (strstr(wchan, "pipe_read"))
			break;
		usleep(1000);
	}
	if (!strstr(wchan, "pipe_read"))
		setup_fail("child never blocked in pipe_read (wchan '%s')", wchan);
	note("reader child %d", child);
	test_ready();
	test_wait();
	if (write_all(10, message, sizeof(message)))
		fail("write to pipe: %s", strerror(errno));
	int status;
	if (waitpid_retry(child, &status, 0) != child)
		fail("waitpid(%d): %s", child, strerror(errno));
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("reader ended with status %#x", status);
	return test_finish();
}
