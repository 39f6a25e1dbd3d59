/* A directory fd (fd 10, O_DIRECTORY) on a subdirectory; openat() relative to it after restore. */
#include "conf.h"

int main(int argc, char **argv)
{
	char link_before[4096], link_now[4096];
	test_init(argc, argv);
	mkdir("conf.dir", 0755);
	int fd = open("conf.dir/marker", O_WRONLY | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write_all(fd, "marker", 6))
		setup_fail("create conf.dir/marker");
	close(fd);
	fd = open("conf.dir", O_RDONLY | O_DIRECTORY);
	if (fd < 0 || dup2(fd, 10) < 0)
		setup_fail("open conf.dir");
	close(fd);
	ssize_t n = readlink("/proc/self/fd/10", link_before, sizeof(link_before) - 1);
	link_before[n > 0 ? n : 0] = 0;
	test_ready();
	test_wait();

	struct stat st;
	if (fstat(10, &st) || !S_ISDIR(st.st_mode))
		fail("fd 10 is not a directory");
	n = readlink("/proc/self/fd/10", link_now, sizeof(link_now) - 1);
	link_now[n > 0 ? n : 0] = 0;
	if (strcmp(link_now, link_before))
		fail("fd 10 points to '%s', was '%s'", link_now, link_before);
	/* Only the access mode is compared: CRIU 4.2 itself does not bring back the O_DIRECTORY f_flags bit. */
	int fl = fcntl(10, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY)
		fail("fd 10 flags %#x, expected O_RDONLY", fl);
	fd = openat(10, "marker", O_RDONLY);
	char buf[16];
	n = fd >= 0 ? read(fd, buf, sizeof(buf)) : -1;
	if (fd < 0 || n != 6 || memcmp(buf, "marker", 6))
		fail("openat(fd 10, marker) failed or read '%.*s'", n > 0 ? (int)n : 0, buf);
	if (fd >= 0)
		close(fd);
	return test_finish();
}
