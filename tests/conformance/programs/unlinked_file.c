/* An open file (fd 10, offset 5000) whose path has been unlinked: a ghost file for the engine. */
#include "conf.h"

#define FILE_LEN 20000

int main(int argc, char **argv)
{
	static unsigned char buf[FILE_LEN + 16];
	test_init(argc, argv);
	fill_pattern(buf, FILE_LEN, 0x9057);
	int fd = open("conf.ghost", O_RDWR | O_CREAT | O_TRUNC, 0640);
	if (fd < 0 || write_all(fd, buf, FILE_LEN) || dup2(fd, 10) < 0)
		setup_fail("create conf.ghost");
	close(fd);
	if (lseek(10, 5000, SEEK_SET) != 5000 || unlink("conf.ghost"))
		setup_fail("seek/unlink conf.ghost");
	test_ready();
	test_wait();

	struct stat st;
	if (fstat(10, &st))
		fail("fstat fd 10: %s", strerror(errno));
	else {
		if (st.st_nlink != 0)
			fail("unlinked file has %ld links", (long)st.st_nlink);
		if (st.st_size != FILE_LEN)
			fail("unlinked file size %lld, expected %d", (long long)st.st_size, FILE_LEN);
		if ((st.st_mode & 07777) != 0640)
			fail("unlinked file mode %o, expected 640", st.st_mode & 07777);
	}
	if (access("conf.ghost", F_OK) == 0)
		fail("conf.ghost reappeared in the directory");
	off_t off = lseek(10, 0, SEEK_CUR);
	if (off != 5000)
		fail("offset %lld, expected 5000", (long long)off);
	ssize_t n = pread(10, buf, sizeof(buf), 0);
	if (n != FILE_LEN || check_pattern(buf, FILE_LEN, 0x9057) >= 0)
		fail("unlinked file content differs (read %zd bytes)", n);
	char link[4096];
	n = readlink("/proc/self/fd/10", link, sizeof(link) - 1);
	link[n > 0 ? n : 0] = 0;
	if (!strstr(link, "conf.ghost") || !strstr(link, "(deleted)"))
		fail("fd 10 links to '%s'", link);
	return test_finish();
}
