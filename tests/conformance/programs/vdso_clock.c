/*
 * The vDSO after restore: CLOCK_MONOTONIC keeps increasing from its value before checkpoint,
 * CLOCK_REALTIME is sane (after the value before, within an hour, and agreeing with the raw
 * syscall), and the [vdso] mapping is where AT_SYSINFO_EHDR says.
 */
#include "conf.h"
#include <sys/auxv.h>
#include <sys/time.h>
#include <time.h>

static long long ns(struct timespec ts)
{
	return ts.tv_sec * 1000000000LL + ts.tv_nsec;
}

static unsigned long vdso_in_maps(void)
{
	FILE *f = fopen("/proc/self/maps", "r");
	char line[512];
	unsigned long start = 0, end;
	while (f && fgets(line, sizeof(line), f))
		if (strstr(line, "[vdso]")) {
			sscanf(line, "%lx-%lx", &start, &end);
			break;
		}
	if (f)
		fclose(f);
	return start;
}

int main(int argc, char **argv)
{
	struct timespec mono_before, real_before, t;
	test_init(argc, argv);
	clock_gettime(CLOCK_MONOTONIC, &mono_before);
	clock_gettime(CLOCK_REALTIME, &real_before);
	unsigned long vdso = getauxval(AT_SYSINFO_EHDR);
	if (!vdso || vdso_in_maps() != vdso)
		setup_fail("vdso not found at AT_SYSINFO_EHDR");
	test_ready();
	test_wait();

	clock_gettime(CLOCK_MONOTONIC, &t);
	long long prev = ns(t);
	if (prev <= ns(mono_before))
		fail("CLOCK_MONOTONIC went from %lld to %lld", ns(mono_before), prev);
	for (int i = 0; i < 1000; i++) {
		clock_gettime(CLOCK_MONOTONIC, &t);
		if (ns(t) < prev) {
			fail("CLOCK_MONOTONIC went backwards after restore");
			break;
		}
		prev = ns(t);
	}
	struct timespec raw;
	syscall(SYS_clock_gettime, CLOCK_MONOTONIC, &raw);
	clock_gettime(CLOCK_MONOTONIC, &t);
	if (llabs(ns(t) - ns(raw)) > 1000000000LL)
		fail("vdso CLOCK_MONOTONIC %lld disagrees with the syscall %lld", ns(t), ns(raw));
	clock_gettime(CLOCK_REALTIME, &t);
	if (ns(t) < ns(real_before) || ns(t) > ns(real_before) + 3600LL * 1000000000LL)
		fail("CLOCK_REALTIME %lld is not within an hour after %lld", ns(t), ns(real_before));
	syscall(SYS_clock_gettime, CLOCK_REALTIME, &raw);
	if (llabs(ns(t) - ns(raw)) > 1000000000LL)
		fail("vdso CLOCK_REALTIME disagrees with the syscall");
	struct timeval tv;
	gettimeofday(&tv, NULL);
	if (tv.tv_sec < real_before.tv_sec)
		fail("gettimeofday went backwards");
	if (vdso_in_maps() != getauxval(AT_SYSINFO_EHDR))
		fail("[vdso] is at %#lx, AT_SYSINFO_EHDR says %#lx", vdso_in_maps(), getauxval(AT_SYSINFO_EHDR));
	return test_finish();
}
