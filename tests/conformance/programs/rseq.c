/*
 * The rseq area glibc registered at thread start must still be registered after restore, at the
 * same address: the kernel refreshes cpu_id after a signal, and registering the same area again
 * fails with EBUSY (a different area would fail with EINVAL).
 */
#include "conf.h"
#include <linux/rseq.h>
#include <sched.h>
#include <sys/rseq.h>

#define RSEQ_SIG 0x53053053

static void on_usr1(int sig)
{
	(void)sig;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	if (__rseq_size == 0)
		setup_fail("glibc did not register rseq");
	struct rseq *area = (struct rseq *)((char *)__builtin_thread_pointer() + __rseq_offset);
	unsigned size = __rseq_size < 32 ? 32 : __rseq_size;
	long r = syscall(SYS_rseq, area, size, 0, RSEQ_SIG);
	if (r != -1 || errno != EBUSY)
		setup_fail("rseq area at %p is not registered before checkpoint (rseq returned %ld)", (void *)area, r);
	signal(SIGUSR1, on_usr1);
	note("rseq area %p size %u cpu_id %u", (void *)area, size, area->cpu_id);
	test_ready();
	test_wait();

	errno = 0;
	r = syscall(SYS_rseq, area, size, 0, RSEQ_SIG);
	if (r != -1 || errno != EBUSY)
		fail("registering the glibc rseq area again returned %ld errno %d, expected EBUSY", r, errno);
	/* The kernel rewrites cpu_id when it delivers a signal to a registered thread. */
	area->cpu_id = 0xfffffff0u;
	raise(SIGUSR1);
	if (area->cpu_id == 0xfffffff0u)
		fail("the kernel did not update rseq cpu_id: the area is not registered");
	else if (area->cpu_id != (unsigned)sched_getcpu())
		fail("rseq cpu_id %u but sched_getcpu %d", area->cpu_id, sched_getcpu());
	return test_finish();
}
