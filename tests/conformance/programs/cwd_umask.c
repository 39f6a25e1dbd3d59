/* Working directory (a subdirectory of the start directory) and umask 0345. */
#include "conf.h"

int main(int argc, char **argv)
{
	char before[4096], now[4096];
	test_init(argc, argv);
	mkdir("conf.cwd", 0755);
	if (chdir("conf.cwd") || !getcwd(before, sizeof(before)))
		setup_fail("chdir conf.cwd");
	umask(0345);
	test_ready();
	test_wait();
	if (!getcwd(now, sizeof(now)))
		fail("getcwd: %s", strerror(errno));
	else if (strcmp(now, before))
		fail("cwd is '%s', expected '%s'", now, before);
	char status[4096];
	int fd = open("/proc/self/status", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, status, sizeof(status) - 1) : -1;
	if (fd >= 0)
		close(fd);
	status[n > 0 ? n : 0] = 0;
	if (!strstr(status, "Umask:\t0345"))
		fail("/proc/self/status does not show Umask 0345");
	mode_t m = umask(0);
	if (m != 0345)
		fail("umask %03o, expected 345", m);
	return test_finish();
}
