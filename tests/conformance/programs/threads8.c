/*
 * Eight threads sleeping on one shared futex word, each with its own TLS value and tid. After
 * restore the main thread wakes them with FUTEX_WAKE and joins them (clear_child_tid path).
 */
#include "conf.h"
#include <linux/futex.h>
#include <dirent.h>
#include <pthread.h>

#define NTHREADS 8

static volatile int gate;
static volatile int started;
static __thread uint64_t tls_value;

struct worker {
	pthread_t thread;
	int index;
	pid_t tid_before;
	pid_t tid_after;
	uint64_t tls_after;
	int woke;
};

static struct worker workers[NTHREADS];

static void *worker_main(void *arg)
{
	struct worker *w = arg;
	tls_value = 0xab00 + w->index;
	w->tid_before = gettid();
	__atomic_add_fetch(&started, 1, __ATOMIC_SEQ_CST);
	while (!gate)
		syscall(SYS_futex, &gate, FUTEX_WAIT, 0, NULL, NULL, 0);
	w->tid_after = gettid();
	w->tls_after = tls_value;
	w->woke = 1;
	return w;
}

static int count_tasks(void)
{
	char path[64];
	int n = 0;
	snprintf(path, sizeof(path), "/proc/%d/task", getpid());
	DIR *d = opendir(path);
	struct dirent *e;
	if (!d)
		return -1;
	while ((e = readdir(d)))
		if (e->d_name[0] != '.')
			n++;
	closedir(d);
	return n;
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	for (int i = 0; i < NTHREADS; i++) {
		workers[i].index = i;
		if (pthread_create(&workers[i].thread, NULL, worker_main, &workers[i]))
			setup_fail("pthread_create %d", i);
	}
	while (started != NTHREADS)
		usleep(1000);
	/* Give every worker time to reach FUTEX_WAIT. */
	usleep(20000);
	test_ready();
	test_wait();

	int tasks = count_tasks();
	if (tasks != NTHREADS + 1)
		fail("/proc/self/task has %d entries, expected %d", tasks, NTHREADS + 1);
	for (int i = 0; i < NTHREADS; i++)
		if (workers[i].woke)
			fail("thread %d woke up before FUTEX_WAKE", i);
	gate = 1;
	syscall(SYS_futex, &gate, FUTEX_WAKE, NTHREADS, NULL, NULL, 0);
	for (int i = 0; i < NTHREADS; i++) {
		void *ret = NULL;
		int err = pthread_join(workers[i].thread, &ret);
		if (err) {
			fail("pthread_join of thread %d: %s", i, strerror(err));
			continue;
		}
		struct worker *w = &workers[i];
		if (ret != w)
			fail("thread %d returned %p, expected %p", i, ret, (void *)w);
		if (w->tid_after != w->tid_before)
			fail("thread %d tid is %d, was %d", i, w->tid_after, w->tid_before);
		if (w->tls_after != 0xab00u + i)
			fail("thread %d TLS value is %#llx", i, (unsigned long long)w->tls_after);
	}
	tasks = count_tasks();
	if (tasks != 1)
		fail("after join /proc/self/task has %d entries, expected 1", tasks);
	return test_finish();
}
