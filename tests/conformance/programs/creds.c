/*
 * Non-root credentials: uid 18943, gid 58467, supplementary groups 27495 48244, and capabilities
 * kept across the uid change (permitted+effective CAP_NET_RAW and CAP_SYS_NICE, inheritable
 * CAP_NET_RAW), one capability dropped from the bounding set, dumpable re-enabled.
 */
#include "conf.h"
#include <grp.h>
#include <linux/capability.h>
#include <sys/prctl.h>

#define UID 18943
#define GID 58467

static int get_caps(struct __user_cap_data_struct data[2])
{
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	return syscall(SYS_capget, &hdr, data);
}

int main(int argc, char **argv)
{
	gid_t groups[2] = { 27495, 48244 };
	struct __user_cap_data_struct caps[2], now[2];
	test_init(argc, argv);
	if (setgroups(2, groups))
		setup_fail("setgroups");
	if (setresgid(GID, GID, GID))
		setup_fail("setresgid");
	if (prctl(PR_CAPBSET_DROP, CAP_SYS_BOOT, 0, 0, 0))
		setup_fail("PR_CAPBSET_DROP");
	if (prctl(PR_SET_KEEPCAPS, 1, 0, 0, 0))
		setup_fail("PR_SET_KEEPCAPS");
	if (setresuid(UID, UID, UID))
		setup_fail("setresuid");
	memset(caps, 0, sizeof(caps));
	caps[0].permitted = (1u << CAP_NET_RAW) | (1u << CAP_SYS_NICE);
	caps[0].effective = caps[0].permitted;
	caps[0].inheritable = 1u << CAP_NET_RAW;
	struct __user_cap_header_struct hdr = { _LINUX_CAPABILITY_VERSION_3, 0 };
	if (syscall(SYS_capset, &hdr, caps))
		setup_fail("capset");
	/* setuid cleared dumpable; the engine needs it to ptrace us like zdtm tests do. */
	if (prctl(PR_SET_DUMPABLE, 1, 0, 0, 0))
		setup_fail("PR_SET_DUMPABLE");
	test_ready();
	test_wait();

	uid_t r, e, s;
	gid_t rg, eg, sg;
	getresuid(&r, &e, &s);
	getresgid(&rg, &eg, &sg);
	if (r != UID || e != UID || s != UID)
		fail("uids %d/%d/%d, expected %d", r, e, s, UID);
	if (rg != GID || eg != GID || sg != GID)
		fail("gids %d/%d/%d, expected %d", rg, eg, sg, GID);
	gid_t got[16];
	int n = getgroups(16, got);
	if (n != 2 || got[0] != groups[0] || got[1] != groups[1])
		fail("supplementary groups: %d entries (%d, %d)", n, n > 0 ? (int)got[0] : -1,
		     n > 1 ? (int)got[1] : -1);
	if (get_caps(now))
		fail("capget: %s", strerror(errno));
	else if (now[0].permitted != caps[0].permitted || now[0].effective != caps[0].effective ||
		 now[0].inheritable != caps[0].inheritable || now[1].permitted || now[1].effective)
		fail("capabilities prm %#x eff %#x inh %#x, expected %#x %#x %#x", now[0].permitted,
		     now[0].effective, now[0].inheritable, caps[0].permitted, caps[0].effective,
		     caps[0].inheritable);
	if (prctl(PR_CAPBSET_READ, CAP_SYS_BOOT, 0, 0, 0) != 0)
		fail("CAP_SYS_BOOT is back in the bounding set");
	if (prctl(PR_CAPBSET_READ, CAP_NET_RAW, 0, 0, 0) != 1)
		fail("CAP_NET_RAW is missing from the bounding set");
	if (prctl(PR_GET_DUMPABLE, 0, 0, 0, 0) != 1)
		fail("dumpable is %d, expected 1", prctl(PR_GET_DUMPABLE, 0, 0, 0, 0));
	if (prctl(PR_GET_KEEPCAPS, 0, 0, 0, 0) != 1)
		fail("keepcaps is not set");
	return test_finish();
}
