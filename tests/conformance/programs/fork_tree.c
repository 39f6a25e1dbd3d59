/*
 * A process tree three levels deep with sessions and process groups:
 *   root (session leader, pgrp leader)
 *   ├── a   (own process group)
 *   │   └── a1 (own session)
 *   │       └── a1x (in a1's session and group)
 *   └── b   (root's group)
 *       └── b1 (own process group)
 *           └── b1x (root's session, b1's group)
 * Every process remembers its pid, ppid, pgid and sid, and checks them after restore. SIGTERM is
 * forwarded down the tree; each parent reaps its children and checks their exit status.
 */
#include "conf.h"

enum group_kind { SAME_GROUP, NEW_GROUP, NEW_SESSION };

struct node {
	const char *name;
	enum group_kind kind;
	int nchildren;
	struct node *children[2];
};

static struct node a1x = { "a1x", SAME_GROUP, 0, { 0 } };
static struct node a1 = { "a1", NEW_SESSION, 1, { &a1x } };
static struct node a = { "a", NEW_GROUP, 1, { &a1 } };
static struct node b1x = { "b1x", SAME_GROUP, 0, { 0 } };
static struct node b1 = { "b1", NEW_GROUP, 1, { &b1x } };
static struct node b = { "b", SAME_GROUP, 1, { &b1 } };
static struct node root = { "root", SAME_GROUP, 2, { &a, &b } };

struct identity {
	pid_t pid, ppid, pgid, sid;
};

static struct identity me;
static pid_t child_pids[2];

static void record(struct identity *id)
{
	id->pid = getpid();
	id->ppid = getppid();
	id->pgid = getpgid(0);
	id->sid = getsid(0);
}

static void check_identity(const char *name, int check_ppid)
{
	struct identity now;
	record(&now);
	if (now.pid != me.pid)
		fail("%s: pid %d, was %d", name, now.pid, me.pid);
	if (check_ppid && now.ppid != me.ppid)
		fail("%s: ppid %d, was %d", name, now.ppid, me.ppid);
	if (now.pgid != me.pgid)
		fail("%s: pgid %d, was %d", name, now.pgid, me.pgid);
	if (now.sid != me.sid)
		fail("%s: sid %d, was %d", name, now.sid, me.sid);
}

static void spawn_children(struct node *n);

/* Forks one child for node c; returns after c's whole subtree is set up. */
static pid_t spawn(struct node *c)
{
	int p[2];
	char byte;
	if (pipe(p))
		setup_fail("pipe");
	pid_t pid = fork();
	if (pid < 0)
		setup_fail("fork");
	if (pid == 0) {
		close_fds_from3_except(p[1]);
		if (c->kind == NEW_GROUP && setpgid(0, 0))
			setup_fail("setpgid in %s", c->name);
		if (c->kind == NEW_SESSION && setsid() < 0)
			setup_fail("setsid in %s", c->name);
		spawn_children(c);
		record(&me);
		close(p[1]);
		test_wait();
		check_identity(c->name, 1);
		for (int i = 0; i < c->nchildren; i++) {
			int status;
			kill(child_pids[i], SIGTERM);
			if (waitpid_retry(child_pids[i], &status, 0) != child_pids[i])
				fail("%s: waitpid(%d): %s", c->name, child_pids[i], strerror(errno));
			else if (!WIFEXITED(status) || WEXITSTATUS(status))
				fail("%s: child %d ended with status %#x", c->name, child_pids[i], status);
		}
		exit(child_finish(c->name));
	}
	close(p[1]);
	/* EOF once the child (and everything it forked) has closed the write end. */
	while (read(p[0], &byte, 1) > 0 || errno == EINTR)
		;
	close(p[0]);
	return pid;
}

static void spawn_children(struct node *n)
{
	for (int i = 0; i < n->nchildren; i++)
		child_pids[i] = spawn(n->children[i]);
}

int main(int argc, char **argv)
{
	test_init(argc, argv);
	spawn_children(&root);
	record(&me);
	test_ready();
	test_wait();
	/* The root's parent is the runner, which may change across restore. */
	check_identity("root", 0);
	for (int i = 0; i < root.nchildren; i++) {
		int status;
		kill(child_pids[i], SIGTERM);
		if (waitpid_retry(child_pids[i], &status, 0) != child_pids[i])
			fail("root: waitpid(%d): %s", child_pids[i], strerror(errno));
		else if (!WIFEXITED(status) || WEXITSTATUS(status))
			fail("root: child %d ended with status %#x", child_pids[i], status);
	}
	return test_finish();
}
