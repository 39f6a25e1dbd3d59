/*
 * A FIFO in the working directory, open for reading (non-blocking, fd 10) and writing (fd 11),
 * holding unread data. After restore: same path, still a FIFO, data intact, still usable.
 */
#include "conf.h"

static const char data[] = "data queued in the fifo before checkpoint";

int main(int argc, char **argv)
{
	char path[4096], link_before[4096], link_now[4096];
	ssize_t n;
	test_init(argc, argv);
	unlink("conf.fifo");
	if (mkfifo("conf.fifo", 0600))
		setup_fail("mkfifo");
	int r = open("conf.fifo", O_RDONLY | O_NONBLOCK);
	int w = open("conf.fifo", O_WRONLY);
	if (r < 0 || w < 0 || dup2(r, 10) < 0 || dup2(w, 11) < 0)
		setup_fail("open fifo");
	close(r);
	close(w);
	if (write_all(11, data, sizeof(data)))
		setup_fail("write fifo");
	n = readlink("/proc/self/fd/10", link_before, sizeof(link_before) - 1);
	link_before[n > 0 ? n : 0] = 0;
	test_ready();
	test_wait();

	struct stat st;
	if (fstat(10, &st) || !S_ISFIFO(st.st_mode))
		fail("fd 10 is not a FIFO any more");
	snprintf(path, sizeof(path), "/proc/self/fd/10");
	n = readlink(path, link_now, sizeof(link_now) - 1);
	link_now[n > 0 ? n : 0] = 0;
	if (strcmp(link_now, link_before))
		fail("fd 10 points to '%s', was '%s'", link_now, link_before);
	struct stat path_st;
	if (stat("conf.fifo", &path_st) || path_st.st_ino != st.st_ino)
		fail("conf.fifo in cwd is not the open FIFO");
	char buf[256];
	n = read(10, buf, sizeof(buf));
	if (n != (ssize_t)sizeof(data) || memcmp(buf, data, sizeof(data)))
		fail("fifo held %zd bytes '%.*s'", n, n > 0 ? (int)n : 0, buf);
	if (write_all(11, "y", 1) || read(10, buf, 2) != 1 || buf[0] != 'y')
		fail("fifo does not carry new data after restore");
	return test_finish();
}
