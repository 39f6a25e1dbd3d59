/* An eventfd (fd 10, EFD_NONBLOCK) with counter 42 and a blocking one (fd 11) with counter 7. */
#include "conf.h"
#include <sys/eventfd.h>

int main(int argc, char **argv)
{
	test_init(argc, argv);
	int e = eventfd(5, EFD_NONBLOCK);
	int s = eventfd(7, 0);
	if (e < 0 || s < 0 || dup2(e, 10) < 0 || dup2(s, 11) < 0)
		setup_fail("eventfd");
	close(e);
	close(s);
	uint64_t v = 37;
	if (write(10, &v, 8) != 8)
		setup_fail("eventfd write");
	test_ready();
	test_wait();
	if (read(10, &v, 8) != 8 || v != 42)
		fail("eventfd counter %llu, expected 42", (unsigned long long)v);
	if (read(10, &v, 8) != -1 || errno != EAGAIN)
		fail("eventfd not empty after reading its counter");
	if (fcntl(11, F_GETFL) & O_NONBLOCK)
		fail("fd 11 became non-blocking");
	if (read(11, &v, 8) != 8 || v != 7)
		fail("second eventfd counter %llu, expected 7", (unsigned long long)v);
	return test_finish();
}
