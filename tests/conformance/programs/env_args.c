/* argv, environment (original env area and a variable set at run time), /proc/self/cmdline and environ. */
#include "conf.h"

static const char *expected_args[] = { "alpha", "two words", "", "\xc3\xbcnicode" };
#define NARGS (int)(sizeof(expected_args) / sizeof(expected_args[0]))

static size_t slurp(const char *path, char *buf, size_t cap)
{
	int fd = open(path, O_RDONLY);
	size_t total = 0;
	ssize_t n;
	if (fd < 0)
		return (size_t)-1;
	while (total < cap && (n = read(fd, buf + total, cap - total)) > 0)
		total += n;
	close(fd);
	return total;
}

int main(int argc, char **argv)
{
	static char cmdline[65536], environ_before[65536], buf[65536];
	size_t cmdline_len, environ_len, n;

	test_init(argc, argv);
	if (test_nargs != NARGS)
		setup_fail("expected %d extra args, got %d", NARGS, test_nargs);
	if (!getenv("CONF_ENV_MARKER"))
		setup_fail("CONF_ENV_MARKER not in environment");
	if (setenv("CONF_RUNTIME_VAR", "set-while-running", 1))
		setup_fail("setenv");
	cmdline_len = slurp("/proc/self/cmdline", cmdline, sizeof(cmdline));
	environ_len = slurp("/proc/self/environ", environ_before, sizeof(environ_before));
	if (cmdline_len == (size_t)-1 || environ_len == (size_t)-1)
		setup_fail("read /proc/self/cmdline or environ");

	test_ready();
	test_wait();

	for (int i = 0; i < NARGS && i < test_nargs; i++)
		if (strcmp(test_args[i], expected_args[i]))
			fail("argv[%d] is '%s', expected '%s'", i + 3, test_args[i], expected_args[i]);
	const char *marker = getenv("CONF_ENV_MARKER");
	if (!marker || strcmp(marker, "conformance-env-42"))
		fail("CONF_ENV_MARKER is '%s'", marker ? marker : "(unset)");
	const char *rt = getenv("CONF_RUNTIME_VAR");
	if (!rt || strcmp(rt, "set-while-running"))
		fail("CONF_RUNTIME_VAR is '%s'", rt ? rt : "(unset)");
	n = slurp("/proc/self/cmdline", buf, sizeof(buf));
	if (n != cmdline_len || memcmp(buf, cmdline, n))
		fail("/proc/self/cmdline changed (%zu bytes, was %zu)", n, cmdline_len);
	n = slurp("/proc/self/environ", buf, sizeof(buf));
	if (n != environ_len || memcmp(buf, environ_before, n))
		fail("/proc/self/environ changed (%zu bytes, was %zu)", n, environ_len);
	return test_finish();
}
