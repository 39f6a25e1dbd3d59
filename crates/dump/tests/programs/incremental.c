/* Memory for incremental-dump tests: a region of argv[1] pages of private
 * anonymous memory where every page holds a pattern of (page, generation),
 * except every 64th page, never touched. Prints "ready <addr> <pages>",
 * then on each SIGUSR1 runs the command in the file argv[2]:
 *   write <first> <count>  fill pages with the next generation
 *   kread <page>           the same for one page, written by the kernel
 *                          (read() from a pipe)
 *   mmap <pages>           a new region with generation 1 ("mapped <addr>")
 *   check                  verify both regions ("intact" or "damaged ...")
 * and prints "done". The expected generations live in the heap, so they
 * travel with the dump. Pinned to CPU 0 so that rseq's cpu id stays put. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PAGE 4096UL

static volatile sig_atomic_t command;

static void on_usr1(int sig)
{
	(void)sig;
	command = 1;
}

static unsigned char byte_of(unsigned long page, unsigned char gen, unsigned long j)
{
	return (unsigned char)(gen * 37 + page * 31 + j);
}

static void fill(unsigned char *base, unsigned long page, unsigned char gen)
{
	unsigned long j;

	for (j = 0; j < PAGE; j++)
		base[page * PAGE + j] = byte_of(page, gen, j);
}

static long check(const unsigned char *base, const unsigned char *gens, unsigned long pages)
{
	unsigned long p, j;

	for (p = 0; p < pages; p++)
		for (j = 0; j < PAGE; j++) {
			unsigned char want = gens[p] ? byte_of(p, gens[p], j) : 0;
			if (base[p * PAGE + j] != want)
				return (long)p;
		}
	return -1;
}

int main(int argc, char **argv)
{
	unsigned long pages, p, extra_pages = 0;
	unsigned char *region, *gens, *extra = NULL, *extra_gens = NULL;
	struct sigaction sa;
	cpu_set_t cpu0;

	if (argc < 3)
		return 2;
	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);
	if (sched_setaffinity(0, sizeof(cpu0), &cpu0))
		return 1;
	pages = strtoul(argv[1], NULL, 0);
	region = mmap(NULL, pages * PAGE, PROT_READ | PROT_WRITE,
		      MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	gens = calloc(pages, 1);
	if (region == MAP_FAILED || !gens)
		return 1;
	for (p = 0; p < pages; p++) {
		if (p % 64 == 63)
			continue;
		gens[p] = 1;
		fill(region, p, 1);
	}
	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	printf("ready %lx %lu\n", (unsigned long)region, pages);
	fflush(stdout);
	for (;;) {
		char line[256] = "";
		unsigned long a = 0, b = 0;
		FILE *f;

		while (!command)
			pause();
		command = 0;
		f = fopen(argv[2], "r");
		if (!f || !fgets(line, sizeof(line), f)) {
			printf("no command\n");
			fflush(stdout);
			if (f)
				fclose(f);
			continue;
		}
		fclose(f);
		if (sscanf(line, "write %lu %lu", &a, &b) == 2) {
			for (p = a; p < a + b && p < pages; p++) {
				gens[p]++;
				if (!gens[p])
					gens[p] = 1;
				fill(region, p, gens[p]);
			}
		} else if (sscanf(line, "kread %lu", &a) == 1 && a < pages) {
			unsigned char buf[PAGE];
			int fds[2];
			unsigned char gen = gens[a] + 1 ? gens[a] + 1 : 1;
			unsigned long j;

			for (j = 0; j < PAGE; j++)
				buf[j] = byte_of(a, gen, j);
			if (pipe(fds) || write(fds[1], buf, PAGE) != (long)PAGE ||
			    read(fds[0], region + a * PAGE, PAGE) != (long)PAGE)
				return 1;
			close(fds[0]);
			close(fds[1]);
			gens[a] = gen;
		} else if (sscanf(line, "mmap %lu", &a) == 1 && !extra) {
			extra = mmap(NULL, a * PAGE, PROT_READ | PROT_WRITE,
				     MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
			extra_gens = calloc(a, 1);
			if (extra == MAP_FAILED || !extra_gens)
				return 1;
			extra_pages = a;
			for (p = 0; p < a; p++) {
				extra_gens[p] = 1;
				fill(extra, p, 1);
			}
			printf("mapped %lx\n", (unsigned long)extra);
		} else if (strncmp(line, "check", 5) == 0) {
			long bad = check(region, gens, pages);
			long bad_extra = extra ? check(extra, extra_gens, extra_pages) : -1;

			if (bad < 0 && bad_extra < 0)
				printf("intact\n");
			else
				printf("damaged %ld %ld\n", bad, bad_extra);
		} else {
			printf("bad command %s", line);
		}
		printf("done\n");
		fflush(stdout);
	}
}
