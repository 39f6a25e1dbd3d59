/*
 * Per-process and per-thread prctl state: the main thread's and a worker thread's names,
 * child-subreaper, no_new_privs and THP-disable flags, and a child's parent-death signal (set in a
 * child of the root: the root's own parent is outside the checkpointed tree and goes away on restore).
 */
#include "conf.h"
#include <linux/futex.h>
#include <pthread.h>
#include <sys/mman.h>
#include <sys/prctl.h>

static volatile int worker_go;
static char worker_name_after[32];

static void *worker(void *arg)
{
	(void)arg;
	prctl(PR_SET_NAME, "conf-worker", 0, 0, 0);
	while (!worker_go)
		syscall(SYS_futex, &worker_go, FUTEX_WAIT, 0, NULL, NULL, 0);
	prctl(PR_GET_NAME, worker_name_after, 0, 0, 0);
	return NULL;
}

int main(int argc, char **argv)
{
	pthread_t thread;
	test_init(argc, argv);
	volatile int *child_ready = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (child_ready == MAP_FAILED)
		setup_fail("mmap");
	pid_t child = fork();
	if (child < 0)
		setup_fail("fork");
	if (child == 0) {
		if (prctl(PR_SET_PDEATHSIG, SIGUSR2, 0, 0, 0))
			setup_fail("PR_SET_PDEATHSIG");
		*child_ready = 1;
		test_wait();
		int sig = 0;
		prctl(PR_GET_PDEATHSIG, &sig, 0, 0, 0);
		if (sig != SIGUSR2)
			fail("parent-death signal %d, expected SIGUSR2", sig);
		exit(child_finish("child"));
	}
	while (!*child_ready)
		usleep(1000);
	note("pdeath child %d", child);
	if (prctl(PR_SET_NAME, "conf-main", 0, 0, 0) ||
	    prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) || prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) ||
	    prctl(PR_SET_THP_DISABLE, 1, 0, 0, 0))
		setup_fail("prctl");
	if (pthread_create(&thread, NULL, worker, NULL))
		setup_fail("pthread_create");
	usleep(20000);
	test_ready();
	test_wait();

	char name[32] = "";
	prctl(PR_GET_NAME, name, 0, 0, 0);
	if (strcmp(name, "conf-main"))
		fail("main thread name '%s', expected conf-main", name);
	kill(child, SIGTERM);
	int status;
	if (waitpid_retry(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("child ended with status %#x (its parent-death signal check failed)", status);
	int subreaper = 0;
	prctl(PR_GET_CHILD_SUBREAPER, &subreaper, 0, 0, 0);
	if (subreaper != 1)
		fail("child subreaper flag %d, expected 1", subreaper);
	if (prctl(PR_GET_NO_NEW_PRIVS, 0, 0, 0, 0) != 1)
		fail("no_new_privs is not set");
	if (prctl(PR_GET_THP_DISABLE, 0, 0, 0, 0) != 1)
		fail("THP disable flag is not set");
	worker_go = 1;
	syscall(SYS_futex, &worker_go, FUTEX_WAKE, 1, NULL, NULL, 0);
	pthread_join(thread, NULL);
	if (strcmp(worker_name_after, "conf-worker"))
		fail("worker thread name '%s', expected conf-worker", worker_name_after);
	return test_finish();
}
