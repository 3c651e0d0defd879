/* Allocate and touch memory until the OOM killer strikes (two threads). */
#include <stdio.h>
#include <stdlib.h>
#include <pthread.h>
#include <sys/mman.h>

static void *eat(void *arg)
{
	for (;;) {
		char *p = mmap(NULL, 4 << 20, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
		size_t i;
		if (p == MAP_FAILED)
			continue;
		for (i = 0; i < (4 << 20); i += 4096)
			p[i] = 1;
	}
	return NULL;
}

int main(void)
{
	pthread_t t;
	pthread_create(&t, NULL, eat, NULL);
	eat(NULL);
	return 0;
}
