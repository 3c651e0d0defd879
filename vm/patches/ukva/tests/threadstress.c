/* Threads of one mm fault, munmap (freeing page tables) and mremap concurrently. */
#define _GNU_SOURCE
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <pthread.h>
#include <sys/mman.h>

#define PMD (2UL << 20)
static int iters;
static volatile int bad;

static void *worker(void *arg)
{
	long id = (long)arg;
	int it;
	size_t i, len = 3 * PMD;

	for (it = 0; it < iters; it++) {
		unsigned int *p = mmap(NULL, len, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0), *q;
		if (p == MAP_FAILED) { bad++; break; }
		for (i = 0; i < len / 4; i += 1024) p[i] = id * 100000 + i + it;
		q = mremap(p, len, 2 * len, MREMAP_MAYMOVE);
		if (q == MAP_FAILED) { bad++; break; }
		for (i = 0; i < len / 4; i += 1024) if (q[i] != id * 100000 + i + it) bad++;
		for (i = len / 4; i < 2 * len / 4; i += 1024) q[i] = 1;
		munmap(q, 2 * len);
	}
	return NULL;
}

int main(int argc, char **argv)
{
	int nt = argc > 2 ? atoi(argv[2]) : 4, i;
	pthread_t t[16];
	iters = argc > 1 ? atoi(argv[1]) : 200;
	for (i = 0; i < nt; i++) pthread_create(&t[i], NULL, worker, (void *)(long)i);
	for (i = 0; i < nt; i++) pthread_join(t[i], NULL);
	printf("threadstress: %d threads x %d iters, %d bad\n", nt, iters, bad);
	return bad != 0;
}
