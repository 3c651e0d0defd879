/* Read-fault loop: anonymous read faults map the zero page (no data kmap),
 * then write faults; then fault in a file mapping read-only. */
#include <stdio.h>
#include <stdlib.h>
#include <fcntl.h>
#include <unistd.h>
#include <sys/mman.h>

int main(int argc, char **argv)
{
	int iters = argc > 1 ? atoi(argv[1]) : 100, it;
	size_t len = 4 << 20, i;
	volatile unsigned long sum = 0;

	for (it = 0; it < iters; it++) {
		char *p = mmap(NULL, len, PROT_READ, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		for (i = 0; i < len; i += 4096)
			sum += p[i];
		munmap(p, len);
	}
	printf("faultread: %d iters x %zu pages read-faulted, sum %lu\n", iters, len / 4096, sum);
	return 0;
}
