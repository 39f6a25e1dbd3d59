/*
 * A semaphore eventfd (EFD_SEMAPHORE, fd 10) with count 3: after restore it must still hand out
 * one unit per read. Kept apart from eventfd.c because CRIU 4.2 does not restore EFD_SEMAPHORE.
 */
#include "conf.h"
#include <sys/eventfd.h>

int main(int argc, char **argv)
{
	test_init(argc, argv);
	int s = eventfd(0, EFD_SEMAPHORE | EFD_NONBLOCK);
	if (s < 0 || dup2(s, 10) < 0)
		setup_fail("eventfd");
	close(s);
	uint64_t v = 3;
	if (write(10, &v, 8) != 8)
		setup_fail("semaphore write");
	test_ready();
	test_wait();
	int reads = 0;
	while (read(10, &v, 8) == 8) {
		if (v != 1) {
			fail("semaphore read returned %llu, expected 1 (EFD_SEMAPHORE lost)", (unsigned long long)v);
			break;
		}
		reads++;
	}
	if (reads != 3 && !test_failed())
		fail("semaphore eventfd gave %d reads, expected 3", reads);
	return test_finish();
}
