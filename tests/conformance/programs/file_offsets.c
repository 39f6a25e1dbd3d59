/*
 * Regular files: fd 10 read-write at offset 12345 (FD_CLOEXEC set), fd 11 O_APPEND on a second
 * file, fd 12 read-only sharing nothing. After restore: offsets, flags, FD_CLOEXEC and contents.
 */
#include "conf.h"

#define FILE_LEN 65536

int main(int argc, char **argv)
{
	static unsigned char content[FILE_LEN], buf[FILE_LEN + 16];
	test_init(argc, argv);
	fill_pattern(content, FILE_LEN, 0xf11e);
	int fd = open("conf.rw", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write_all(fd, content, FILE_LEN) || dup2(fd, 10) < 0)
		setup_fail("create conf.rw");
	close(fd);
	if (lseek(10, 12345, SEEK_SET) != 12345 || fcntl(10, F_SETFD, FD_CLOEXEC))
		setup_fail("seek conf.rw");
	fd = open("conf.append", O_WRONLY | O_CREAT | O_TRUNC | O_APPEND, 0600);
	if (fd < 0 || write_all(fd, "first line\n", 11) || dup2(fd, 11) < 0)
		setup_fail("create conf.append");
	close(fd);
	fd = open("conf.rw", O_RDONLY);
	if (fd < 0 || dup2(fd, 12) < 0 || lseek(12, 777, SEEK_SET) != 777)
		setup_fail("open conf.rw read-only");
	close(fd);
	test_ready();
	test_wait();

	off_t off = lseek(10, 0, SEEK_CUR);
	if (off != 12345)
		fail("conf.rw offset %lld, expected 12345", (long long)off);
	int fl = fcntl(10, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_RDWR)
		fail("fd 10 flags %#x, expected O_RDWR", fl);
	if (fcntl(10, F_GETFD) != FD_CLOEXEC)
		fail("fd 10 lost FD_CLOEXEC");
	if (fcntl(11, F_GETFD) != 0)
		fail("fd 11 gained FD_CLOEXEC");
	off = lseek(12, 0, SEEK_CUR);
	if (off != 777)
		fail("read-only fd offset %lld, expected 777", (long long)off);
	fl = fcntl(12, F_GETFL);
	if (fl < 0 || (fl & O_ACCMODE) != O_RDONLY)
		fail("fd 12 flags %#x, expected O_RDONLY", fl);
	struct stat st;
	if (fstat(10, &st) || st.st_size != FILE_LEN)
		fail("conf.rw size %lld, expected %d", (long long)st.st_size, FILE_LEN);
	ssize_t n = pread(10, buf, sizeof(buf), 0);
	if (n != FILE_LEN || check_pattern(buf, FILE_LEN, 0xf11e) >= 0)
		fail("conf.rw content differs (read %zd bytes)", n);
	fl = fcntl(11, F_GETFL);
	if (fl < 0 || !(fl & O_APPEND) || (fl & O_ACCMODE) != O_WRONLY)
		fail("fd 11 flags %#x, expected O_WRONLY|O_APPEND", fl);
	/* An O_APPEND write lands at the end even after a seek. */
	lseek(11, 0, SEEK_SET);
	if (write_all(11, "second line\n", 12))
		fail("append write: %s", strerror(errno));
	int rfd = open("conf.append", O_RDONLY);
	n = rfd >= 0 ? read(rfd, buf, sizeof(buf)) : -1;
	if (rfd >= 0)
		close(rfd);
	if (n != 23 || memcmp(buf, "first line\nsecond line\n", 23))
		fail("conf.append holds %zd bytes '%.*s'", n, n > 0 ? (int)n : 0, (char *)buf);
	/* The read-write fd writes at its offset. */
	if (write_all(10, "Z", 1) || lseek(10, 0, SEEK_CUR) != 12346)
		fail("write through fd 10 did not advance the offset to 12346");
	return test_finish();
}
