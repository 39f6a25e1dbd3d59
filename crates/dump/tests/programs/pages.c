/* Memory for page-server dumps: 3 MiB of private anonymous memory with a
 * pattern (every 50th page left untouched, so entries are cut by holes as
 * well as by full pipes) and 64 KiB of shared anonymous memory with another
 * pattern. Prints "ready", then on each SIGUSR1 checks both patterns and
 * prints "intact" or "damaged at <offset>". It pins itself to CPU 0: the
 * kernel rewrites the cpu ids of glibc's rseq area (in the TLS) whenever
 * the task runs on another CPU, and two dumps must see the same memory. */
#define _GNU_SOURCE
#include <sched.h>
#include <signal.h>
#include <stdio.h>
#include <string.h>
#include <sys/mman.h>
#include <unistd.h>

#define PRIV_LEN (3UL << 20)
#define SHARED_LEN (64UL << 10)
#define PAGE 4096UL

static volatile sig_atomic_t check;

static void on_usr1(int sig)
{
	(void)sig;
	check = 1;
}

static unsigned char priv_byte(unsigned long i)
{
	if ((i / PAGE) % 50 == 7)
		return 0;
	return (unsigned char)(i * 7 + i / PAGE + 1);
}

static unsigned char shared_byte(unsigned long i)
{
	return (unsigned char)(i * 13 + 5);
}

int main(void)
{
	struct sigaction sa;
	unsigned char *priv, *shared;
	unsigned long i;
	cpu_set_t cpu0;

	CPU_ZERO(&cpu0);
	CPU_SET(0, &cpu0);
	if (sched_setaffinity(0, sizeof(cpu0), &cpu0))
		return 1;
	priv = mmap(NULL, PRIV_LEN, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
	shared = mmap(NULL, SHARED_LEN, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (priv == MAP_FAILED || shared == MAP_FAILED)
		return 1;
	for (i = 0; i < PRIV_LEN; i++)
		if (priv_byte(i))
			priv[i] = priv_byte(i);
	for (i = 0; i < SHARED_LEN; i++)
		shared[i] = shared_byte(i);

	memset(&sa, 0, sizeof(sa));
	sa.sa_handler = on_usr1;
	sigaction(SIGUSR1, &sa, NULL);
	printf("ready\n");
	fflush(stdout);
	while (1) {
		pause();
		if (!check)
			continue;
		check = 0;
		for (i = 0; i < PRIV_LEN; i++)
			if (priv[i] != priv_byte(i))
				break;
		if (i < PRIV_LEN) {
			printf("damaged at private %lu\n", i);
		} else {
			for (i = 0; i < SHARED_LEN; i++)
				if (shared[i] != shared_byte(i))
					break;
			if (i < SHARED_LEN)
				printf("damaged at shared %lu\n", i);
			else
				printf("intact\n");
		}
		fflush(stdout);
	}
}
