/*
 * A file mapped twice: MAP_PRIVATE (pages 1 and 3 written: private copies) and MAP_SHARED
 * (page 2 written: goes to the file). After restore the private copies keep their data, the
 * untouched private pages still show the file, and the shared mapping is still shared with the
 * file in both directions.
 */
#include "conf.h"
#include <sys/mman.h>

#define PAGE 4096
#define NPAGES 8

int main(int argc, char **argv)
{
	static unsigned char file_content[NPAGES * PAGE], buf[PAGE];
	test_init(argc, argv);
	fill_pattern(file_content, sizeof(file_content), 0xa11);
	int fd = open("conf.mapped", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write_all(fd, file_content, sizeof(file_content)))
		setup_fail("create conf.mapped");
	unsigned char *priv = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_PRIVATE, fd, 0);
	unsigned char *shared = mmap(NULL, NPAGES * PAGE, PROT_READ | PROT_WRITE, MAP_SHARED, fd, 0);
	if (priv == MAP_FAILED || shared == MAP_FAILED)
		setup_fail("mmap");
	close(fd);
	fill_pattern(priv + PAGE, PAGE, 0xb01);
	fill_pattern(priv + 3 * PAGE, PAGE, 0xb03);
	/* Read page 5 of the private mapping so it is present but still file-backed. */
	volatile unsigned char sink = priv[5 * PAGE];
	(void)sink;
	fill_pattern(shared + 2 * PAGE, PAGE, 0xc02);
	note("private mapping %p, shared mapping %p", (void *)priv, (void *)shared);
	test_ready();
	test_wait();

	if (check_pattern(priv + PAGE, PAGE, 0xb01) >= 0)
		fail("private page 1 lost its private data");
	if (check_pattern(priv + 3 * PAGE, PAGE, 0xb03) >= 0)
		fail("private page 3 lost its private data");
	if (memcmp(priv, file_content, PAGE) || memcmp(priv + 5 * PAGE, file_content + 5 * PAGE, PAGE))
		fail("untouched private pages differ from the file");
	if (check_pattern(shared + 2 * PAGE, PAGE, 0xc02) >= 0)
		fail("shared page 2 lost its data");
	if (memcmp(shared, file_content, PAGE))
		fail("shared page 0 differs from the original file content");
	fd = open("conf.mapped", O_RDWR);
	if (fd < 0)
		fail("reopen conf.mapped: %s", strerror(errno));
	else {
		if (pread(fd, buf, PAGE, 2 * PAGE) != PAGE || check_pattern(buf, PAGE, 0xc02) >= 0)
			fail("the file does not hold the shared mapping's write");
		if (pread(fd, buf, PAGE, PAGE) != PAGE || memcmp(buf, file_content + PAGE, PAGE))
			fail("the private write leaked into the file");
		/* Shared in the other direction: a write to the file shows in the shared mapping. */
		if (pwrite(fd, "SHARED!", 7, 4 * PAGE) != 7 || memcmp(shared + 4 * PAGE, "SHARED!", 7))
			fail("a write to the file does not show in the MAP_SHARED mapping");
		close(fd);
	}
	return test_finish();
}
