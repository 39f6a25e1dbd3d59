/*
 * A process that checkpoints itself through the RPC protocol: it spawns `criu swrk FD` detached
 * from its own tree (double fork + setsid, like pycriu/libcriu), sends a hand-encoded criu_req DUMP
 * without a pid over the SOCK_SEQPACKET socketpair, and waits for the answer. The restored copy
 * must receive criu_resp {type DUMP, success true, dump {restored true}} on that socket.
 *
 * Extra args: CRIU_PATH IMAGES_DIR (kill|leave-running).
 * Notes written to the out file: "self-dump answered restored=0" when the running original gets
 * its answer (leave-running), "self-dump answered restored=1" in the restored copy.
 */
#include "conf.h"
#include <sys/socket.h>

static size_t put_varint(unsigned char *p, uint64_t v)
{
	size_t n = 0;
	while (v >= 0x80) {
		p[n++] = (unsigned char)(v | 0x80);
		v >>= 7;
	}
	p[n++] = (unsigned char)v;
	return n;
}

static size_t put_string(unsigned char *p, unsigned field, const char *s)
{
	size_t n = put_varint(p, (field << 3) | 2);
	n += put_varint(p + n, strlen(s));
	memcpy(p + n, s, strlen(s));
	return n + strlen(s);
}

static size_t encode_dump_req(unsigned char *out, const char *images_dir, int leave_running)
{
	unsigned char opts[8192];
	size_t o = 0;
	o += put_varint(opts + o, (1 << 3) | 0); /* images_dir_fd = -1 (required) */
	o += put_varint(opts + o, (uint64_t)-1);
	if (leave_running) {
		o += put_varint(opts + o, (3 << 3) | 0);
		o += put_varint(opts + o, 1);
	}
	o += put_varint(opts + o, (9 << 3) | 0); /* log_level = 4 */
	o += put_varint(opts + o, 4);
	o += put_string(opts + o, 10, "dump.log");
	o += put_string(opts + o, 68, images_dir);
	size_t n = 0;
	n += put_varint(out + n, (1 << 3) | 0); /* type = DUMP */
	n += put_varint(out + n, 1);
	n += put_varint(out + n, (2 << 3) | 2);
	n += put_varint(out + n, o);
	memcpy(out + n, opts, o);
	return n + o;
}

static int get_varint(const unsigned char **p, const unsigned char *end, uint64_t *v)
{
	*v = 0;
	for (int shift = 0; *p < end && shift < 64; shift += 7) {
		unsigned char b = *(*p)++;
		*v |= (uint64_t)(b & 0x7f) << shift;
		if (!(b & 0x80))
			return 0;
	}
	return -1;
}

struct dump_resp {
	int type, success, restored, has_restored, cr_errno;
	char errmsg[1024];
};

/* Decodes the fields of criu_resp this test needs; 0 on success. */
static int decode_resp(const unsigned char *p, const unsigned char *end, struct dump_resp *r)
{
	while (p < end) {
		uint64_t key, v;
		if (get_varint(&p, end, &key))
			return -1;
		unsigned field = key >> 3, wt = key & 7;
		if (wt == 0) {
			if (get_varint(&p, end, &v))
				return -1;
			if (field == 1)
				r->type = (int)v;
			else if (field == 2)
				r->success = (int)v;
			else if (field == 7)
				r->cr_errno = (int)v;
		} else if (wt == 2) {
			if (get_varint(&p, end, &v) || v > (uint64_t)(end - p))
				return -1;
			if (field == 3) {
				const unsigned char *q = p, *qend = p + v;
				while (q < qend) {
					uint64_t k2, v2;
					if (get_varint(&q, qend, &k2) || (k2 & 7) != 0 || get_varint(&q, qend, &v2))
						return -1;
					if ((k2 >> 3) == 1) {
						r->restored = (int)v2;
						r->has_restored = 1;
					}
				}
			} else if (field == 9) {
				size_t l = v < sizeof(r->errmsg) - 1 ? v : sizeof(r->errmsg) - 1;
				memcpy(r->errmsg, p, l);
				r->errmsg[l] = 0;
			}
			p += v;
		} else if (wt == 5) {
			p += 4;
		} else if (wt == 1) {
			p += 8;
		} else
			return -1;
	}
	return 0;
}

int main(int argc, char **argv)
{
	static unsigned char req[16384], resp[65536];
	test_init(argc, argv);
	if (test_nargs != 3)
		setup_fail("usage: OUT READY CRIU_PATH IMAGES_DIR kill|leave-running");
	const char *criu = test_args[0], *images = test_args[1];
	int leave_running = !strcmp(test_args[2], "leave-running");
	uint64_t *heap = malloc(64);
	*heap = 0x5e1fd;
	int sk[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET, 0, sk) || dup2(sk[0], 10) < 0 || dup2(sk[1], 11) < 0)
		setup_fail("socketpair");
	close(sk[0]);
	close(sk[1]);
	pid_t mid = fork();
	if (mid < 0)
		setup_fail("fork");
	if (mid == 0) {
		if (fork() != 0)
			_exit(0);
		/* The swrk worker: not a descendant of the dumpee, own session, stdio on /dev/null. */
		setsid();
		int null = open("/dev/null", O_RDWR);
		dup2(null, 0);
		dup2(null, 1);
		dup2(null, 2);
		close_fds_from3_except(11);
		execl(criu, criu, "swrk", "11", (char *)NULL);
		_exit(127);
	}
	int status;
	waitpid_retry(mid, &status, 0);
	close(11);
	size_t len = encode_dump_req(req, images, leave_running);
	test_ready();
	if (send(10, req, len, 0) != (ssize_t)len)
		setup_fail("send criu_req DUMP");
	ssize_t n;
	do
		n = recv(10, resp, sizeof(resp), 0);
	while (n < 0 && errno == EINTR);
	struct dump_resp r = { 0 };
	if (n <= 0) {
		fail("no answer to the self-dump request (recv returned %zd: %s)", n, n < 0 ? strerror(errno) : "closed");
		return test_finish();
	}
	if (decode_resp(resp, resp + n, &r)) {
		fail("undecodable criu_resp of %zd bytes", n);
		return test_finish();
	}
	if (r.type != 1 || !r.success) {
		note("self-dump failed: type %d success %d errno %d: %s", r.type, r.success, r.cr_errno, r.errmsg);
		fail("self-dump failed: %s", r.errmsg);
		return test_finish();
	}
	note("self-dump answered restored=%d", r.restored);
	test_wait();
	if (!r.has_restored || !r.restored)
		fail("the restored process got dump.restored=%d (present %d), expected true", r.restored,
		     r.has_restored);
	if (*heap != 0x5e1fd)
		fail("heap value %#llx lost", (unsigned long long)*heap);
	return test_finish();
}
