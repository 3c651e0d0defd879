/* Move page tables with mremap (PMD-aligned moves use move_normal_pmd). */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>
#include <stdint.h>

#define PMD (2UL << 20)

static void *aligned_area(size_t len, char **raw)
{
	char *p = mmap(NULL, len + PMD, PROT_NONE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE, -1, 0);
	uintptr_t a = ((uintptr_t)p + PMD - 1) & ~(PMD - 1);
	*raw = p;
	return (void *)a;
}

int main(int argc, char **argv)
{
	int iters = argc > 1 ? atoi(argv[1]) : 50, it, bad = 0;
	size_t len = 8 * PMD, i;

	for (it = 0; it < iters; it++) {
		char *ra, *rb;
		unsigned int *a = aligned_area(len, &ra), *b = aligned_area(len, &rb), *c;
		a = mmap(a, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		for (i = 0; i < len / 4; i += 1024)
			a[i] = i ^ it;
		c = mremap(a, len, len, MREMAP_MAYMOVE | MREMAP_FIXED, b);
		if (c == MAP_FAILED) { perror("mremap"); return 1; }
		for (i = 0; i < len / 4; i += 1024)
			if (c[i] != (i ^ it)) bad++;
		/* reuse the old range: new page tables in the old slots */
		a = mmap(a, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
		for (i = 0; i < len / 4; i += 1024)
			if (a[i] != 0) bad++; else a[i] = 5;
		for (i = 0; i < len / 4; i += 1024)
			if (c[i] != (i ^ it)) bad++;
		/* move back and forth unaligned too */
		c = mremap(c, len, len / 2, 0);
		munmap(a, len);
		munmap(c, len / 2);
		munmap(ra, len + PMD);
		munmap(rb, len + PMD);
	}
	printf("mremaptest: %d iters, %d bad\n", iters, bad);
	return bad != 0;
}
