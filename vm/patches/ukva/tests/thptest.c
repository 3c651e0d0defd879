/* THP: huge faults, splits (mprotect/munmap of part), MADV_COLLAPSE. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <sys/mman.h>
#ifndef MADV_COLLAPSE
#define MADV_COLLAPSE 25
#endif
#define PMD (2UL << 20)

int main(int argc, char **argv)
{
	int iters = argc > 1 ? atoi(argv[1]) : 20, it, bad = 0, collapsed = 0;
	size_t len = 4 * PMD, i;

	for (it = 0; it < iters; it++) {
		char *raw = mmap(NULL, len + PMD, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		unsigned int *p = (void *)(((uintptr_t)raw + PMD - 1) & ~(PMD - 1));
		/* 4K pages first, then collapse them */
		for (i = 0; i < len / 4; i += 1024) p[i] = i + it;
		madvise(p, len, MADV_HUGEPAGE);
		if (madvise(p, len, MADV_COLLAPSE) == 0) collapsed++;
		for (i = 0; i < len / 4; i += 1024) if (p[i] != i + it) bad++;
		/* split by mprotect of a part, and by partial munmap */
		mprotect((char *)p + 4096, 4096, PROT_READ);
		munmap((char *)p + PMD + 8192, 4096);
		for (i = 0; i < len / 4; i += 1024) {
			if (i * 4 >= PMD + 8192 && i * 4 < PMD + 12288) continue;
			if (p[i] != i + it) bad++;
		}
		for (i = 0; i < len / 4; i += 1024) {
			if (i * 4 >= 4096 && i * 4 < 8192) continue;
			if (i * 4 >= PMD + 8192 && i * 4 < PMD + 12288) continue;
			p[i] = 3;
		}
		/* collapse again after the split */
		mprotect((char *)p + 4096, 4096, PROT_READ | PROT_WRITE);
		madvise((char *)p + 2 * PMD, 2 * PMD, MADV_COLLAPSE);
		munmap(raw, len + PMD);
	}
	printf("thptest: %d iters, %d collapsed, %d bad\n", iters, collapsed, bad);
	return bad != 0;
}
