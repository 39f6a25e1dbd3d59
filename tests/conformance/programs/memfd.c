/*
 * A memfd (fd 10) named "conf-memfd", 3 pages of data, sealed against shrinking, mapped shared.
 * After restore: name, size, seals, content through read() and through the mapping, and sharing.
 */
#include "conf.h"
#include <sys/mman.h>

#define LEN (3 * 4096)

int main(int argc, char **argv)
{
	static unsigned char buf[LEN];
	test_init(argc, argv);
	int fd = memfd_create("conf-memfd", MFD_ALLOW_SEALING);
	if (fd < 0 || dup2(fd, 10) < 0)
		setup_fail("memfd_create");
	close(fd);
	fill_pattern(buf, LEN, 0x3e3f);
	if (write_all(10, buf, LEN) || lseek(10, 100, SEEK_SET) != 100)
		setup_fail("fill memfd");
	if (fcntl(10, F_ADD_SEALS, F_SEAL_SHRINK))
		setup_fail("F_ADD_SEALS");
	unsigned char *map = mmap(NULL, LEN, PROT_READ | PROT_WRITE, MAP_SHARED, 10, 0);
	if (map == MAP_FAILED)
		setup_fail("mmap memfd");
	test_ready();
	test_wait();

	char link[4096];
	ssize_t n = readlink("/proc/self/fd/10", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (strcmp(link, "/memfd:conf-memfd (deleted)"))
		fail("fd 10 links to '%s'", link);
	struct stat st;
	if (fstat(10, &st) || st.st_size != LEN)
		fail("memfd size %lld, expected %d", (long long)st.st_size, LEN);
	int seals = fcntl(10, F_GET_SEALS);
	if (seals != F_SEAL_SHRINK)
		fail("memfd seals %#x, expected F_SEAL_SHRINK", seals);
	if (lseek(10, 0, SEEK_CUR) != 100)
		fail("memfd offset %lld, expected 100", (long long)lseek(10, 0, SEEK_CUR));
	memset(buf, 0, LEN);
	if (pread(10, buf, LEN, 0) != LEN || check_pattern(buf, LEN, 0x3e3f) >= 0)
		fail("memfd content differs");
	if (check_pattern(map, LEN, 0x3e3f) >= 0)
		fail("memfd mapping content differs at %ld", check_pattern(map, LEN, 0x3e3f));
	if (pwrite(10, "memfd", 5, 4096) != 5 || memcmp(map + 4096, "memfd", 5))
		fail("the mapping is no longer shared with the memfd");
	if (ftruncate(10, 4096) == 0)
		fail("F_SEAL_SHRINK is not enforced");
	return test_finish();
}
