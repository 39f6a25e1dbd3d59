/*
 * Not a test: the "interactive shell" for the shell_job test. Run as
 * `pty_shell STATUS_FILE CMD ARGS...` with a pty slave as stdin/stdout/stderr, it starts a new
 * session, takes the pty as its controlling terminal, runs CMD as a child in that session, writes
 * "exit N" or "signal N" for it to STATUS_FILE, then stays alive (keeping the session and the
 * terminal) until SIGTERM.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/ioctl.h>
#include <sys/wait.h>
#include <unistd.h>

static volatile sig_atomic_t got_term;

static void on_term(int sig)
{
	(void)sig;
	got_term = 1;
}

int main(int argc, char **argv)
{
	if (argc < 3) {
		fprintf(stderr, "usage: pty_shell STATUS_FILE CMD ARGS...\n");
		return 2;
	}
	if (setsid() < 0 || ioctl(0, TIOCSCTTY, 1)) {
		perror("pty_shell: setsid/TIOCSCTTY");
		return 2;
	}
	signal(SIGHUP, SIG_IGN);
	signal(SIGTTOU, SIG_IGN);
	struct sigaction sa = { 0 };
	sa.sa_handler = on_term;
	sigaction(SIGTERM, &sa, NULL);
	pid_t child = fork();
	if (child < 0) {
		perror("pty_shell: fork");
		return 2;
	}
	if (child == 0) {
		signal(SIGHUP, SIG_DFL);
		signal(SIGTTOU, SIG_DFL);
		signal(SIGTERM, SIG_DFL);
		execvp(argv[2], argv + 2);
		perror("pty_shell: exec");
		_exit(127);
	}
	int status;
	pid_t r;
	do
		r = waitpid(child, &status, 0);
	while (r < 0 && errno == EINTR);
	char line[64];
	int n;
	if (r != child)
		n = snprintf(line, sizeof(line), "waitpid-error %d\n", errno);
	else if (WIFEXITED(status))
		n = snprintf(line, sizeof(line), "exit %d\n", WEXITSTATUS(status));
	else
		n = snprintf(line, sizeof(line), "signal %d\n", WTERMSIG(status));
	char tmp[4096];
	snprintf(tmp, sizeof(tmp), "%s.tmp", argv[1]);
	int fd = open(tmp, O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd >= 0) {
		if (write(fd, line, n) != n)
			perror("pty_shell: write status");
		close(fd);
		rename(tmp, argv[1]);
	}
	while (!got_term)
		pause();
	return 0;
}
