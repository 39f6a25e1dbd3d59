/*
 * An inotify instance (fd 10, IN_NONBLOCK) watching conf.watched for IN_CREATE|IN_DELETE. After
 * restore the watch descriptor is the same and creating/deleting a file yields exactly those events.
 */
#include "conf.h"
#include <sys/inotify.h>

int main(int argc, char **argv)
{
	char buf[4096] __attribute__((aligned(8)));
	test_init(argc, argv);
	mkdir("conf.watched", 0755);
	int fd = inotify_init1(IN_NONBLOCK);
	if (fd < 0 || dup2(fd, 10) < 0)
		setup_fail("inotify_init1");
	close(fd);
	int wd = inotify_add_watch(10, "conf.watched", IN_CREATE | IN_DELETE);
	if (wd < 0)
		setup_fail("inotify_add_watch");
	test_ready();
	test_wait();

	ssize_t n = read(10, buf, sizeof(buf));
	if (n > 0)
		fail("events were queued before the test touched the directory (%zd bytes, first '%s')", n,
		     ((struct inotify_event *)buf)->len ? ((struct inotify_event *)buf)->name : "");
	int f = open("conf.watched/after-restore", O_CREAT | O_WRONLY, 0644);
	if (f >= 0)
		close(f);
	unlink("conf.watched/after-restore");
	n = read(10, buf, sizeof(buf));
	int creates = 0, deletes = 0, others = 0;
	for (char *p = buf; n > 0 && p < buf + n;) {
		struct inotify_event *ev = (struct inotify_event *)p;
		if (ev->wd != wd)
			fail("event for wd %d, expected %d", ev->wd, wd);
		if ((ev->mask & IN_CREATE) && ev->len && !strcmp(ev->name, "after-restore"))
			creates++;
		else if ((ev->mask & IN_DELETE) && ev->len && !strcmp(ev->name, "after-restore"))
			deletes++;
		else
			others++;
		p += sizeof(*ev) + ev->len;
	}
	if (creates != 1 || deletes != 1 || others)
		fail("got %d create, %d delete and %d other events, expected 1/1/0", creates, deletes, others);
	char fdinfo[4096];
	int fi = open("/proc/self/fdinfo/10", O_RDONLY);
	n = fi >= 0 ? read(fi, fdinfo, sizeof(fdinfo) - 1) : -1;
	if (fi >= 0)
		close(fi);
	fdinfo[n > 0 ? n : 0] = 0;
	char want[64];
	snprintf(want, sizeof(want), "inotify wd:%x ", wd);
	if (!strstr(fdinfo, want) || !strstr(fdinfo, "mask:300"))
		fail("fdinfo does not show watch %d with mask 0x300", wd);
	return test_finish();
}
