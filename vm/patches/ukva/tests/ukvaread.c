/* Reading the UKVA window (or any kernel address) from user mode must fault. */
#include <stdio.h>
#include <stdlib.h>
#include <signal.h>
#include <setjmp.h>
#include <unistd.h>
#include <fcntl.h>
#include <string.h>

static sigjmp_buf jb;
static void segv(int s) { siglongjmp(jb, 1); }

int main(int argc, char **argv)
{
	unsigned long base = argc > 1 ? strtoul(argv[1], NULL, 0) : 0xff000000UL;
	unsigned long offs[] = { 0, 0x08048000UL >> 9, 0xbffff000UL >> 9, 0x2ffff8, 0x5ffff8 };
	int i, faults = 0, n = sizeof(offs) / sizeof(offs[0]);
	int fd = open("/dev/null", O_WRONLY);

	signal(SIGSEGV, segv);
	for (i = 0; i < n; i++) {
		volatile unsigned long *p = (void *)(base + offs[i]);
		if (sigsetjmp(jb, 1)) { faults++; continue; }
		printf("ukvaread: READ %p = %lx  <-- NOT PROTECTED\n", p, *p);
	}
	for (i = 0; i < n; i++) {
		volatile unsigned long *p = (void *)(base + offs[i]);
		if (sigsetjmp(jb, 1)) { faults++; continue; }
		*p = 0;
		printf("ukvaread: WROTE %p  <-- NOT PROTECTED\n", p);
	}
	/* the kernel must refuse to copy from it on our behalf */
	for (i = 0; i < n; i++)
		if (write(fd, (void *)(base + offs[i]), 8) != -1)
			printf("ukvaread: write() from %lx succeeded <-- BAD\n", base + offs[i]);
		else
			faults++;
	printf("ukvaread: base %#lx: %d/%d accesses refused%s\n", base, faults, 3 * n,
	       faults == 3 * n ? " OK" : " FAIL");
	return faults != 3 * n;
}
