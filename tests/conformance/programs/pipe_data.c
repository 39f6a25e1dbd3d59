/*
 * A pipe holding 96 KiB of unread data (pipe resized to 128 KiB), read end non-blocking at fd 10,
 * write end at fd 11. After restore the exact bytes, the pipe size and the flags must be back.
 */
#include "conf.h"

#define DATA_LEN (96 * 1024)
#define PIPE_SIZE (128 * 1024)

int main(int argc, char **argv)
{
	static unsigned char data[DATA_LEN], got[DATA_LEN + 1];
	int p[2];
	test_init(argc, argv);
	if (pipe(p) || dup2(p[0], 10) < 0 || dup2(p[1], 11) < 0)
		setup_fail("pipe");
	close(p[0]);
	close(p[1]);
	if (fcntl(10, F_SETPIPE_SZ, PIPE_SIZE) < 0)
		setup_fail("F_SETPIPE_SZ");
	if (fcntl(10, F_SETFL, O_NONBLOCK))
		setup_fail("O_NONBLOCK");
	fill_pattern(data, DATA_LEN, 0x919e);
	if (write_all(11, data, DATA_LEN))
		setup_fail("fill pipe");
	test_ready();
	test_wait();

	int size = fcntl(10, F_GETPIPE_SZ);
	if (size != PIPE_SIZE)
		fail("pipe size %d, expected %d", size, PIPE_SIZE);
	int fl = fcntl(10, F_GETFL);
	if (fl < 0 || !(fl & O_NONBLOCK))
		fail("read end flags %#x lost O_NONBLOCK", fl);
	if (fl >= 0 && (fl & O_ACCMODE) != O_RDONLY)
		fail("read end access mode %#x", fl & O_ACCMODE);
	fl = fcntl(11, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_WRONLY || (fl & O_NONBLOCK))
		fail("write end flags %#x", fl);
	size_t total = 0;
	for (;;) {
		ssize_t n = read(10, got + total, sizeof(got) - total);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			break;
		total += n;
	}
	if (total != DATA_LEN)
		fail("pipe held %zu bytes, expected %d", total, DATA_LEN);
	else if (check_pattern(got, DATA_LEN, 0x919e) >= 0)
		fail("pipe data differs at byte %ld", check_pattern(got, DATA_LEN, 0x919e));
	/* The pipe still works in both directions. */
	if (write_all(11, "x", 1) || read(10, got, 2) != 1 || got[0] != 'x')
		fail("pipe does not carry new data after restore");
	return test_finish();
}
