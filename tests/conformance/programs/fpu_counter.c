/*
 * Stack and heap counters, x87/SSE control state, and SSE/AVX registers that stay live in the
 * registers while the task sleeps in FUTEX_WAIT during checkpoint/restore. A busy thread keeps an
 * integer and a double counter in lock step in registers while it is being dumped.
 */
#include "conf.h"
#include <cpuid.h>
#include <linux/futex.h>
#include <pthread.h>

static volatile int busy_stop;
static volatile int busy_bad;
static volatile uint64_t busy_iterations;
/* Heap and stack checks compare against values published here (the tamper self-check writes them). */
static uint64_t *heap_counter;

static void *busy(void *arg)
{
	(void)arg;
	uint64_t i = 0;
	double d = 0.0;
	while (!busy_stop) {
		i++;
		d += 1.0;
		if ((double)i != d)
			busy_bad = 1;
		if ((i & 0xffff) == 0)
			busy_iterations = i;
	}
	busy_iterations = i;
	return NULL;
}

static int have_avx(void)
{
	unsigned a, b, c, d;
	if (!__get_cpuid(1, &a, &b, &c, &d))
		return 0;
	if (!(c & bit_AVX) || !(c & bit_OSXSAVE))
		return 0;
	unsigned lo, hi;
	__asm__ volatile("xgetbv" : "=a"(lo), "=d"(hi) : "c"(0));
	return (lo & 6) == 6;
}

int main(int argc, char **argv)
{
	volatile uint64_t stack_counter = 0;
	static unsigned char in[16 * 32] __attribute__((aligned(32)));
	static unsigned char out[16 * 32] __attribute__((aligned(32)));
	uint64_t gpr_out[5];
	unsigned mxcsr_before, mxcsr_after;
	unsigned short fcw_before = 0x0b7f, fcw_after; /* round toward -inf, extended precision */
	long double x87_after;
	pthread_t thread;
	int avx;

	test_init(argc, argv);
	heap_counter = malloc(4096);
	if (!heap_counter)
		setup_fail("malloc");
	for (int i = 0; i < 1000; i++) {
		stack_counter++;
		(*heap_counter) += 3;
	}
	note("heap_counter at %p", (void *)heap_counter);
	avx = have_avx();
	fill_pattern(in, sizeof(in), 0xf00d);
	if (pthread_create(&thread, NULL, busy, NULL))
		setup_fail("pthread_create");
	/* The busy thread must be mid-computation when the checkpoint happens. */
	while (busy_iterations == 0)
		usleep(1000);

	/* Rounding mode "toward zero" and flush-to-zero in MXCSR, a custom x87 control word. */
	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr_before));
	mxcsr_before = (mxcsr_before & ~0x6000u) | 0x6000u | 0x8000u;
	__asm__ volatile("ldmxcsr %0" : : "m"(mxcsr_before));
	__asm__ volatile("fldcw %0" : : "m"(fcw_before));

	test_ready();

	/*
	 * Load vector registers and callee-saved GPRs, push a value on the x87 stack, then sleep
	 * in FUTEX_WAIT without leaving this asm block, so the values stay in registers across C/R.
	 */
	void *ctx[5] = { in, out, gpr_out, (void *)&test_got_term, &x87_after };
	if (avx) {
		__asm__ volatile(
			"movq 0(%[ctx]), %%rax\n"
			"vmovdqu 0(%%rax), %%ymm0\n"
			"vmovdqu 32(%%rax), %%ymm1\n"
			"vmovdqu 64(%%rax), %%ymm2\n"
			"vmovdqu 96(%%rax), %%ymm3\n"
			"vmovdqu 128(%%rax), %%ymm4\n"
			"vmovdqu 160(%%rax), %%ymm5\n"
			"vmovdqu 192(%%rax), %%ymm6\n"
			"vmovdqu 224(%%rax), %%ymm7\n"
			"vmovdqu 256(%%rax), %%ymm8\n"
			"vmovdqu 288(%%rax), %%ymm9\n"
			"vmovdqu 320(%%rax), %%ymm10\n"
			"vmovdqu 352(%%rax), %%ymm11\n"
			"vmovdqu 384(%%rax), %%ymm12\n"
			"vmovdqu 416(%%rax), %%ymm13\n"
			"vmovdqu 448(%%rax), %%ymm14\n"
			"vmovdqu 480(%%rax), %%ymm15\n"
			"movabs $0x1111222233334444, %%rbx\n movabs $0x5555666677778888, %%r12\n"
			"movabs $0x9999aaaabbbbcccc, %%r13\n movabs $0xddddeeeeffff0001, %%r14\n"
			"movabs $0x0123456789abcdef, %%r15\n"
			"fldpi\n"
			"1: movq 24(%[ctx]), %%rdi\n movl (%%rdi), %%eax\n testl %%eax, %%eax\n jnz 2f\n"
			"movl $202, %%eax\n xorl %%esi, %%esi\n xorl %%edx, %%edx\n"
			"xorl %%r10d, %%r10d\n syscall\n jmp 1b\n"
			"2:\n"
			"movq 32(%[ctx]), %%rax\n fstpt (%%rax)\n"
			"movq 8(%[ctx]), %%rax\n"
			"vmovdqu %%ymm0, 0(%%rax)\n"
			"vmovdqu %%ymm1, 32(%%rax)\n"
			"vmovdqu %%ymm2, 64(%%rax)\n"
			"vmovdqu %%ymm3, 96(%%rax)\n"
			"vmovdqu %%ymm4, 128(%%rax)\n"
			"vmovdqu %%ymm5, 160(%%rax)\n"
			"vmovdqu %%ymm6, 192(%%rax)\n"
			"vmovdqu %%ymm7, 224(%%rax)\n"
			"vmovdqu %%ymm8, 256(%%rax)\n"
			"vmovdqu %%ymm9, 288(%%rax)\n"
			"vmovdqu %%ymm10, 320(%%rax)\n"
			"vmovdqu %%ymm11, 352(%%rax)\n"
			"vmovdqu %%ymm12, 384(%%rax)\n"
			"vmovdqu %%ymm13, 416(%%rax)\n"
			"vmovdqu %%ymm14, 448(%%rax)\n"
			"vmovdqu %%ymm15, 480(%%rax)\n"
			"movq 16(%[ctx]), %%rax\n"
			"movq %%rbx, 0(%%rax)\n movq %%r12, 8(%%rax)\n movq %%r13, 16(%%rax)\n"
			"movq %%r14, 24(%%rax)\n movq %%r15, 32(%%rax)\n"
			:
			: [ctx] "r"(ctx)
			: "rax", "rcx", "rdx", "rsi", "rdi", "r10", "r11", "rbx", "r12", "r13", "r14", "r15",
			  "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
			  "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st");
	} else {
		__asm__ volatile(
			"movq 0(%[ctx]), %%rax\n"
			"movdqu 0(%%rax), %%xmm0\n"
			"movdqu 32(%%rax), %%xmm1\n"
			"movdqu 64(%%rax), %%xmm2\n"
			"movdqu 96(%%rax), %%xmm3\n"
			"movdqu 128(%%rax), %%xmm4\n"
			"movdqu 160(%%rax), %%xmm5\n"
			"movdqu 192(%%rax), %%xmm6\n"
			"movdqu 224(%%rax), %%xmm7\n"
			"movdqu 256(%%rax), %%xmm8\n"
			"movdqu 288(%%rax), %%xmm9\n"
			"movdqu 320(%%rax), %%xmm10\n"
			"movdqu 352(%%rax), %%xmm11\n"
			"movdqu 384(%%rax), %%xmm12\n"
			"movdqu 416(%%rax), %%xmm13\n"
			"movdqu 448(%%rax), %%xmm14\n"
			"movdqu 480(%%rax), %%xmm15\n"
			"movabs $0x1111222233334444, %%rbx\n movabs $0x5555666677778888, %%r12\n"
			"movabs $0x9999aaaabbbbcccc, %%r13\n movabs $0xddddeeeeffff0001, %%r14\n"
			"movabs $0x0123456789abcdef, %%r15\n"
			"fldpi\n"
			"1: movq 24(%[ctx]), %%rdi\n movl (%%rdi), %%eax\n testl %%eax, %%eax\n jnz 2f\n"
			"movl $202, %%eax\n xorl %%esi, %%esi\n xorl %%edx, %%edx\n"
			"xorl %%r10d, %%r10d\n syscall\n jmp 1b\n"
			"2:\n"
			"movq 32(%[ctx]), %%rax\n fstpt (%%rax)\n"
			"movq 8(%[ctx]), %%rax\n"
			"movdqu %%xmm0, 0(%%rax)\n"
			"movdqu %%xmm1, 32(%%rax)\n"
			"movdqu %%xmm2, 64(%%rax)\n"
			"movdqu %%xmm3, 96(%%rax)\n"
			"movdqu %%xmm4, 128(%%rax)\n"
			"movdqu %%xmm5, 160(%%rax)\n"
			"movdqu %%xmm6, 192(%%rax)\n"
			"movdqu %%xmm7, 224(%%rax)\n"
			"movdqu %%xmm8, 256(%%rax)\n"
			"movdqu %%xmm9, 288(%%rax)\n"
			"movdqu %%xmm10, 320(%%rax)\n"
			"movdqu %%xmm11, 352(%%rax)\n"
			"movdqu %%xmm12, 384(%%rax)\n"
			"movdqu %%xmm13, 416(%%rax)\n"
			"movdqu %%xmm14, 448(%%rax)\n"
			"movdqu %%xmm15, 480(%%rax)\n"
			"movq 16(%[ctx]), %%rax\n"
			"movq %%rbx, 0(%%rax)\n movq %%r12, 8(%%rax)\n movq %%r13, 16(%%rax)\n"
			"movq %%r14, 24(%%rax)\n movq %%r15, 32(%%rax)\n"
			:
			: [ctx] "r"(ctx)
			: "rax", "rcx", "rdx", "rsi", "rdi", "r10", "r11", "rbx", "r12", "r13", "r14", "r15",
			  "memory", "xmm0", "xmm1", "xmm2", "xmm3", "xmm4", "xmm5", "xmm6", "xmm7", "xmm8",
			  "xmm9", "xmm10", "xmm11", "xmm12", "xmm13", "xmm14", "xmm15", "st");
	}

	__asm__ volatile("stmxcsr %0" : "=m"(mxcsr_after));
	__asm__ volatile("fnstcw %0" : "=m"(fcw_after));
	busy_stop = 1;
	pthread_join(thread, NULL);

	if (stack_counter != 1000)
		fail("stack counter is %llu, expected 1000", (unsigned long long)stack_counter);
	if (*heap_counter != 3000)
		fail("heap counter is %llu, expected 3000", (unsigned long long)*heap_counter);
	size_t reg_bytes = avx ? 32 : 16;
	for (int r = 0; r < 16; r++) {
		if (memcmp(in + r * 32, out + r * 32, reg_bytes))
			fail("%s%d changed across checkpoint/restore", avx ? "ymm" : "xmm", r);
	}
	static const uint64_t gpr_expected[5] = { 0x1111222233334444ULL, 0x5555666677778888ULL,
						  0x9999aaaabbbbccccULL, 0xddddeeeeffff0001ULL,
						  0x0123456789abcdefULL };
	static const char *gpr_names[5] = { "rbx", "r12", "r13", "r14", "r15" };
	for (int r = 0; r < 5; r++)
		if (gpr_out[r] != gpr_expected[r])
			fail("%s is %#llx, expected %#llx", gpr_names[r], (unsigned long long)gpr_out[r],
			     (unsigned long long)gpr_expected[r]);
	long double pi;
	__asm__ volatile("fldpi\n fstpt %0" : "=m"(pi));
	if (memcmp(&pi, &x87_after, 10))
		fail("x87 st(0) no longer holds pi");
	if (mxcsr_after != mxcsr_before)
		fail("MXCSR is %#x, expected %#x", mxcsr_after, mxcsr_before);
	if (fcw_after != fcw_before)
		fail("x87 control word is %#x, expected %#x", fcw_after, fcw_before);
	if (busy_bad)
		fail("busy thread saw its integer and double counters disagree");
	if (busy_iterations == 0)
		fail("busy thread never ran");
	return test_finish();
}
