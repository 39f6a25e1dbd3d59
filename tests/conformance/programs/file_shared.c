/*
 * One open file description shared three ways: fd 10 and its dup fd 11 in the root, and fd 10
 * inherited by a child. After restore an lseek in the child moves the root's offset, and a flag
 * set through fd 11 shows through fd 10: they are still one description, not copies.
 */
#include "conf.h"
#include <sys/mman.h>

int main(int argc, char **argv)
{
	test_init(argc, argv);
	static char content[8192];
	memset(content, 'f', sizeof(content));
	int fd = open("conf.shared", O_RDWR | O_CREAT | O_TRUNC, 0644);
	if (fd < 0 || write_all(fd, content, sizeof(content)) || dup2(fd, 10) < 0 || dup2(fd, 11) < 0)
		setup_fail("create conf.shared");
	close(fd);
	if (lseek(10, 500, SEEK_SET) != 500)
		setup_fail("lseek");
	volatile int *child_saw = mmap(NULL, 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
	if (child_saw == MAP_FAILED)
		setup_fail("mmap");
	*child_saw = -1;
	pid_t child = fork();
	if (child < 0)
		setup_fail("fork");
	if (child == 0) {
		close(11);
		test_wait();
		*child_saw = (int)lseek(10, 0, SEEK_CUR);
		lseek(10, 4242, SEEK_SET);
		exit(0);
	}
	test_ready();
	test_wait();

	if (lseek(11, 0, SEEK_CUR) != 500)
		fail("root offset %lld, expected 500", (long long)lseek(11, 0, SEEK_CUR));
	kill(child, SIGTERM);
	int status;
	if (waitpid_retry(child, &status, 0) != child || !WIFEXITED(status) || WEXITSTATUS(status))
		fail("child ended badly (%#x)", status);
	if (*child_saw != 500)
		fail("child saw offset %d, expected the shared 500", *child_saw);
	off_t now = lseek(10, 0, SEEK_CUR);
	if (now != 4242)
		fail("root fd 10 offset %lld after the child's lseek to 4242: the description is no longer shared with the child",
		     (long long)now);
	if (lseek(11, 0, SEEK_CUR) != now)
		fail("fd 11 offset differs from fd 10: the dup is no longer the same description");
	if (fcntl(11, F_SETFL, O_APPEND) || !(fcntl(10, F_GETFL) & O_APPEND))
		fail("O_APPEND set through fd 11 does not show through fd 10");
	return test_finish();
}
