/* A zombie child: exited with status 7, not yet reaped. After restore waitpid must return it. */
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
	if (child == 0)
		_exit(7);
	for (int i = 0; i < 5000 && proc_state(child) != 'Z'; i++)
		usleep(1000);
	if (proc_state(child) != 'Z')
		setup_fail("child %d never became a zombie", child);
	test_ready();
	test_wait();

	char st = proc_state(child);
	if (st != 'Z')
		fail("child %d state is '%c', expected a zombie", child, st);
	int status;
	pid_t got = waitpid_retry(child, &status, WNOHANG);
	if (got != child)
		fail("waitpid(%d, WNOHANG) returned %d (%s)", child, got, got < 0 ? strerror(errno) : "");
	else if (!WIFEXITED(status) || WEXITSTATUS(status) != 7)
		fail("zombie status %#x, expected exit code 7", status);
	return test_finish();
}
