/*
 * MAP_SHARED|MAP_ANONYMOUS memory (16 pages) shared by the root and a child. Both see the data
 * written before checkpoint; after restore a write by the child must be seen by the parent.
 */
#include "conf.h"
#include <sys/mman.h>

#define LEN (16 * 4096)

int main(int argc, char **argv)
{
	test_init(argc, argv);
	unsigned char *mem = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		setup_fail("mmap");
	fill_pattern(mem, LEN - 4096, 0x5a5a);
	volatile uint32_t *flag = (uint32_t *)(mem + LEN - 4096);
	pid_t child = fork();
	if (child < 0)
		setup_fail("fork");
	if (child == 0) {
		*flag = 1;
		test_wait();
		if (check_pattern(mem, LEN - 4096, 0x5a5a) >= 0)
			fail("child: shared data differs at %ld", check_pattern(mem, LEN - 4096, 0x5a5a));
		*flag = 0xc0ffee;
		exit(child_finish("child"));
	}
	while (*flag != 1)
		usleep(1000);
	note("shared mapping %p", (void *)mem);
	test_ready();
	test_wait();
	if (check_pattern(mem, LEN - 4096, 0x5a5a) >= 0)
		fail("parent: shared data differs at %ld", check_pattern(mem, LEN - 4096, 0x5a5a));
	kill(child, SIGTERM);
	int status;
	if (waitpid_retry(child, &status, 0) != child)
		fail("waitpid(%d): %s", child, strerror(errno));
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("child ended with status %#x", status);
	if (*flag != 0xc0ffee)
		fail("parent does not see the child's write (flag %#x): memory no longer shared", *flag);
	return test_finish();
}
