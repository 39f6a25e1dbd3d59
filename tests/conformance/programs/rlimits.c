/* Every rlimit recorded before checkpoint, with NOFILE, STACK, CORE and NPROC changed first. */
#include "conf.h"
#include <sys/resource.h>

int main(int argc, char **argv)
{
	struct rlimit before[RLIM_NLIMITS];
	test_init(argc, argv);
	struct rlimit nofile = { 1000, 2000 }, core = { 4096, 1 << 20 }, stack = { 4 << 20, RLIM_INFINITY };
	struct rlimit cur_nproc;
	getrlimit(RLIMIT_NPROC, &cur_nproc);
	struct rlimit nproc = { 3000, cur_nproc.rlim_max };
	if (setrlimit(RLIMIT_NOFILE, &nofile) || setrlimit(RLIMIT_CORE, &core) ||
	    setrlimit(RLIMIT_NPROC, &nproc))
		setup_fail("setrlimit");
	struct rlimit cur_stack;
	getrlimit(RLIMIT_STACK, &cur_stack);
	stack.rlim_max = cur_stack.rlim_max;
	if (setrlimit(RLIMIT_STACK, &stack))
		setup_fail("setrlimit STACK");
	for (int r = 0; r < RLIM_NLIMITS; r++)
		getrlimit(r, &before[r]);
	test_ready();
	test_wait();
	for (int r = 0; r < RLIM_NLIMITS; r++) {
		struct rlimit now;
		getrlimit(r, &now);
		if (now.rlim_cur != before[r].rlim_cur || now.rlim_max != before[r].rlim_max)
			fail("rlimit %d is %llu/%llu, expected %llu/%llu", r, (unsigned long long)now.rlim_cur,
			     (unsigned long long)now.rlim_max, (unsigned long long)before[r].rlim_cur,
			     (unsigned long long)before[r].rlim_max);
	}
	return test_finish();
}
