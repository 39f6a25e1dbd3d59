/*
 * Memory protections: a region whose data was written before it became PROT_NONE, a read-only
 * region, and guard pages (PROT_NONE pages inside a read-write region). After restore the
 * protections in /proc/self/maps, the data (made readable again) and the faults on the guards
 * must be back.
 */
#include "conf.h"
#include <setjmp.h>
#include <sys/mman.h>

#define PAGE 4096

static sigjmp_buf probe_env;

static void on_segv(int sig)
{
	(void)sig;
	siglongjmp(probe_env, 1);
}

/* 1 if reading addr faults. */
static int faults(volatile unsigned char *addr)
{
	if (sigsetjmp(probe_env, 1))
		return 1;
	volatile unsigned char v = *addr;
	(void)v;
	return 0;
}

static int prot_in_maps(void *addr, char *perms)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long a = (unsigned long)addr;
	if (!f)
		return -1;
	while (fgets(line, sizeof(line), f)) {
		unsigned long start, end;
		char p[5];
		if (sscanf(line, "%lx-%lx %4s", &start, &end, p) == 3 && a >= start && a < end) {
			memcpy(perms, p, 5);
			fclose(f);
			return 0;
		}
	}
	fclose(f);
	return -1;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	unsigned char *none = mmap(NULL, 4 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *ro = mmap(NULL, 2 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	unsigned char *guarded = mmap(NULL, 8 * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (none == MAP_FAILED || ro == MAP_FAILED || guarded == MAP_FAILED)
		setup_fail("mmap");
	fill_pattern(none, 4 * PAGE, 0x404e);
	fill_pattern(ro, 2 * PAGE, 0x4040);
	fill_pattern(guarded, 8 * PAGE, 0x6aa4);
	if (mprotect(none, 4 * PAGE, PROT_NONE) || mprotect(ro, 2 * PAGE, PROT_READ) ||
	    mprotect(guarded, PAGE, PROT_NONE) || mprotect(guarded + 4 * PAGE, PAGE, PROT_NONE))
		setup_fail("mprotect");
	struct sigaction sa = { 0 };
	sa.sa_handler = on_segv;
	sa.sa_flags = SA_NODEFER;
	sigaction(SIGSEGV, &sa, NULL);
	note("PROT_NONE region %p, read-only %p, guarded %p", (void *)none, (void *)ro, (void *)guarded);
	test_ready();
	test_wait();

	char perms[5];
	if (prot_in_maps(none, perms) || strncmp(perms, "---p", 4))
		fail("PROT_NONE region perms '%s'", perms);
	if (prot_in_maps(ro, perms) || strncmp(perms, "r--p", 4))
		fail("read-only region perms '%s'", perms);
	if (prot_in_maps(guarded, perms) || strncmp(perms, "---p", 4))
		fail("first guard page perms '%s'", perms);
	if (prot_in_maps(guarded + 4 * PAGE, perms) || strncmp(perms, "---p", 4))
		fail("middle guard page perms '%s'", perms);
	if (prot_in_maps(guarded + 2 * PAGE, perms) || strncmp(perms, "rw-p", 4))
		fail("read-write pages between guards perms '%s'", perms);
	if (!faults(none))
		fail("PROT_NONE region is readable");
	if (!faults(guarded) || !faults(guarded + 4 * PAGE))
		fail("a guard page is readable");
	if (faults(guarded + PAGE) || faults(guarded + 7 * PAGE))
		fail("a page next to a guard faults");
	if (check_pattern(ro, 2 * PAGE, 0x4040) >= 0)
		fail("read-only data differs");
	/* Pages between and after the guards keep their data (pattern offsets from the start). */
	static unsigned char expect[8 * PAGE];
	fill_pattern(expect, sizeof(expect), 0x6aa4);
	if (memcmp(guarded + PAGE, expect + PAGE, 3 * PAGE) || memcmp(guarded + 5 * PAGE, expect + 5 * PAGE, 3 * PAGE))
		fail("data between the guard pages differs");
	if (mprotect(none, 4 * PAGE, PROT_READ) || check_pattern(none, 4 * PAGE, 0x404e) >= 0)
		fail("data written before PROT_NONE was lost");
	if (mprotect(guarded, PAGE, PROT_READ) || memcmp(guarded, expect, PAGE))
		fail("data under the first guard page was lost");
	return test_finish();
}
