/*
 * A child stopped by SIGSTOP (state T) across checkpoint/restore. After restore it must still be
 * stopped; SIGCONT then lets it finish with exit code 0.
 */
#include "conf.h"

static char proc_state(pid_t pid)
{
	char path[64], buf[512];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY);
	if (fd < 0)
		return '?';
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return '?';
	buf[n] = 0;
	char *paren = strrchr(buf, ')');
	return paren && paren[1] && paren[2] ? paren[2] : '?';
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	pid_t child = fork();
	if (child < 0)
		setup_fail("fork");
	if (child == 0) {
		raise(SIGSTOP);
		_exit(0);
	}
	int status;
	if (waitpid_retry(child, &status, WUNTRACED) != child || !WIFSTOPPED(status))
		setup_fail("child %d did not stop", child);
	note("stopped child %d", child);
	test_ready();
	test_wait();

	/* Give a wrongly running child time to finish, so the state check cannot race with it. */
	usleep(100000);
	char st = proc_state(child);
	if (st != 'T')
		fail("child %d state is '%c', expected stopped (T)", child, st);
	kill(child, SIGCONT);
	if (waitpid_retry(child, &status, 0) != child)
		fail("waitpid(%d): %s", child, strerror(errno));
	else if (!WIFEXITED(status) || WEXITSTATUS(status))
		fail("child ended with status %#x after SIGCONT", status);
	return test_finish();
}
