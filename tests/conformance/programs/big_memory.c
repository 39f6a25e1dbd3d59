/*
 * A large anonymous region (default 1 GiB, CONF_BIG_MB overrides) with MADV_HUGEPAGE, filled with
 * pseudo-random data and verified after restore by a checksum over the whole region plus a direct
 * recomputation of sampled pages.
 */
#include "conf.h"
#include <sys/mman.h>
#include <sys/random.h>

static uint64_t checksum(const uint64_t *p, size_t words)
{
	uint64_t h = 0xcbf29ce484222325ULL;
	for (size_t i = 0; i < words; i++)
		h = (h ^ p[i]) * 0x100000001b3ULL + (h >> 29);
	return h;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	size_t mb = 1024;
	const char *env = getenv("CONF_BIG_MB");
	if (env && atol(env) > 0)
		mb = atol(env);
	size_t len = mb << 20;
	unsigned char *mem = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	if (mem == MAP_FAILED)
		setup_fail("mmap %zu MiB", mb);
	if (madvise(mem, len, MADV_HUGEPAGE))
		note("MADV_HUGEPAGE failed: %s", strerror(errno));
	uint64_t seed;
	if (getrandom(&seed, sizeof(seed), 0) != sizeof(seed))
		setup_fail("getrandom");
	/* One pattern stream per MiB so any MiB can be recomputed independently. */
	for (size_t m = 0; m < mb; m++)
		fill_pattern(mem + (m << 20), 1 << 20, seed + m);
	uint64_t sum = checksum((uint64_t *)mem, len / 8);
	note("%zu MiB at %p, seed %#llx, checksum %#llx", mb, (void *)mem, (unsigned long long)seed,
	     (unsigned long long)sum);
	test_ready();
	test_wait();

	uint64_t now = checksum((uint64_t *)mem, len / 8);
	if (now != sum)
		fail("checksum %#llx, expected %#llx", (unsigned long long)now, (unsigned long long)sum);
	size_t step = mb / 16 ? mb / 16 : 1;
	for (size_t m = 0; m < mb; m += step) {
		long at = check_pattern(mem + (m << 20), 1 << 20, seed + m);
		if (at >= 0) {
			fail("data differs at offset %#zx", (m << 20) + (size_t)at);
			break;
		}
	}
	return test_finish();
}
