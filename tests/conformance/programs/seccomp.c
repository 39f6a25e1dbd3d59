/*
 * A seccomp BPF filter (installed under no_new_privs) that makes sysinfo() fail with errno 77 and
 * allows everything else. After restore the filter must still be in force.
 */
#include "conf.h"
#include <linux/filter.h>
#include <linux/seccomp.h>
#include <stddef.h>
#include <sys/prctl.h>
#include <sys/sysinfo.h>

int main(int argc, char **argv)
{
	test_init(argc, argv);
	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_W | BPF_ABS, offsetof(struct seccomp_data, nr)),
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, SYS_sysinfo, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ERRNO | 77),
		BPF_STMT(BPF_RET | BPF_K, SECCOMP_RET_ALLOW),
	};
	struct sock_fprog prog = { .len = sizeof(code) / sizeof(code[0]), .filter = code };
	if (prctl(PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) || prctl(PR_SET_SECCOMP, SECCOMP_MODE_FILTER, &prog, 0, 0))
		setup_fail("install seccomp filter");
	struct sysinfo info;
	if (syscall(SYS_sysinfo, &info) != -1 || errno != 77)
		setup_fail("the filter does not act");
	test_ready();
	test_wait();

	errno = 0;
	long r = syscall(SYS_sysinfo, &info);
	if (r != -1 || errno != 77)
		fail("sysinfo returned %ld errno %d: the seccomp filter is gone", r, errno);
	char status[4096];
	int fd = open("/proc/self/status", O_RDONLY);
	ssize_t n = fd >= 0 ? read(fd, status, sizeof(status) - 1) : -1;
	if (fd >= 0)
		close(fd);
	status[n > 0 ? n : 0] = 0;
	if (!strstr(status, "Seccomp:\t2"))
		fail("/proc/self/status does not show seccomp mode 2");
	if (!strstr(status, "Seccomp_filters:\t1"))
		fail("/proc/self/status does not show exactly one filter");
	if (getpid() <= 0)
		fail("other syscalls are blocked");
	return test_finish();
}
