/*
 * A shell job: the runner starts it through pty_shell (a session leader owning a pty as its
 * controlling terminal), so this process is NOT a session leader. It takes its own process group,
 * becomes the terminal's foreground group, turns ECHO off, and is checkpointed with --shell-job.
 * After restore it checks: stdin is the same terminal with the same termios (ECHO off), it is in its
 * own process group, not a session leader, in the foreground, and reads the line the runner typed.
 */
#include "conf.h"
#include <termios.h>

int main(int argc, char **argv)
{
	test_keep_session = 1;
	test_init(argc, argv);
	if (!isatty(0))
		setup_fail("stdin is not a terminal");
	if (setpgid(0, 0))
		setup_fail("setpgid");
	signal(SIGTTOU, SIG_IGN);
	if (tcsetpgrp(0, getpid()))
		setup_fail("tcsetpgrp");
	struct termios t;
	if (tcgetattr(0, &t))
		setup_fail("tcgetattr");
	t.c_lflag &= ~ECHO;
	if (tcsetattr(0, TCSANOW, &t))
		setup_fail("tcsetattr");
	char tty_before[256];
	if (ttyname_r(0, tty_before, sizeof(tty_before)))
		setup_fail("ttyname");
	test_ready();
	test_wait();

	if (!isatty(0)) {
		fail("stdin is no longer a terminal");
		return test_finish();
	}
	char tty_now[256];
	if (ttyname_r(0, tty_now, sizeof(tty_now)) || strcmp(tty_now, tty_before))
		fail("terminal is '%s', was '%s'", tty_now, tty_before);
	struct termios now;
	if (tcgetattr(0, &now) || (now.c_lflag & ECHO))
		fail("termios changed: ECHO is back on");
	if (getpgid(0) != getpid())
		fail("process group %d, expected its own %d", getpgid(0), getpid());
	if (getsid(0) == getpid())
		fail("the job became a session leader");
	if (getsid(0) != tcgetsid(0))
		fail("the terminal's session %d is not the job's session %d", tcgetsid(0), getsid(0));
	if (tcgetpgrp(0) != getpid())
		fail("foreground group %d, expected %d", tcgetpgrp(0), getpid());
	char line[256];
	int fl = fcntl(0, F_GETFL);
	fcntl(0, F_SETFL, fl | O_NONBLOCK);
	ssize_t n = -1;
	for (int i = 0; i < 200 && n < 0; i++) {
		n = read(0, line, sizeof(line) - 1);
		if (n < 0)
			usleep(10000);
	}
	fcntl(0, F_SETFL, fl);
	line[n > 0 ? n : 0] = 0;
	if (strcmp(line, "typed after restore\n"))
		fail("read '%s' from the terminal, expected the runner's line", line);
	return test_finish();
}
