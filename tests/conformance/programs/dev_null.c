/* /dev/null open read-write at fd 10 and write-only at fd 11 (O_APPEND). */
#include "conf.h"
#include <sys/sysmacros.h>

int main(int argc, char **argv)
{
	test_init(argc, argv);
	int fd = open("/dev/null", O_RDWR);
	if (fd < 0 || dup2(fd, 10) < 0)
		setup_fail("open /dev/null");
	close(fd);
	fd = open("/dev/null", O_WRONLY | O_APPEND);
	if (fd < 0 || dup2(fd, 11) < 0)
		setup_fail("open /dev/null append");
	close(fd);
	test_ready();
	test_wait();

	for (int i = 10; i <= 11; i++) {
		struct stat st;
		if (fstat(i, &st) || !S_ISCHR(st.st_mode) || st.st_rdev != makedev(1, 3))
			fail("fd %d is not /dev/null", i);
	}
	int fl = fcntl(10, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_RDWR)
		fail("fd 10 flags %#x, expected O_RDWR", fl);
	fl = fcntl(11, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_WRONLY || !(fl & O_APPEND))
		fail("fd 11 flags %#x, expected O_WRONLY|O_APPEND", fl);
	char buf[8];
	if (write(10, "abc", 3) != 3 || read(10, buf, sizeof(buf)) != 0)
		fail("fd 10 does not behave like /dev/null");
	return test_finish();
}
