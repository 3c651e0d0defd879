/* Fault-heavy loop: mmap, touch every page, verify, munmap. */
#include <stdio.h>
#include <stdlib.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	int iters = argc > 1 ? atoi(argv[1]) : 100;
	size_t mb = argc > 2 ? atoi(argv[2]) : 4;
	size_t len = mb << 20, i;
	long faults = 0;
	int it;

	for (it = 0; it < iters; it++) {
		unsigned int *p = mmap(NULL, len, PROT_READ | PROT_WRITE,
				       MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		if (p == MAP_FAILED) { perror("mmap"); return 1; }
		for (i = 0; i < len / 4; i += 1024) {
			p[i] = it * 7 + i;
			faults++;
		}
		for (i = 0; i < len / 4; i += 1024)
			if (p[i] != it * 7 + i) {
				printf("faultloop: CORRUPTION at %zu\n", i);
				return 1;
			}
		if (mprotect(p, len / 2, PROT_READ)) { perror("mprotect"); return 1; }
		munmap(p, len);
	}
	printf("faultloop: %d iters x %zu MB, %ld page touches OK\n", iters, mb, faults);
	return 0;
}
