#define _GNU_SOURCE
/* Read another process's /proc/PID/pagemap (foreign mm: kmap path), and our own. */
#include <stdio.h>
#include <stdlib.h>
#include <stdint.h>
#include <string.h>
#include <fcntl.h>
#include <unistd.h>
#include <signal.h>
#include <sys/mman.h>
#include <sys/wait.h>
#include <sys/uio.h>

#define N 512
static char *area;

static int count_present(pid_t pid)
{
	char path[64];
	uint64_t e[N];
	int fd, i, n = 0;

	snprintf(path, sizeof(path), "/proc/%d/pagemap", pid);
	fd = open(path, O_RDONLY);
	if (fd < 0) { perror(path); return -1; }
	if (pread(fd, e, sizeof(e), (uintptr_t)area / 4096 * 8) != sizeof(e)) { perror("pread"); return -1; }
	close(fd);
	for (i = 0; i < N; i++)
		n += !!(e[i] >> 63);
	return n;
}

int main(int argc, char **argv)
{
	int iters = argc > 1 ? atoi(argv[1]) : 50, it, bad = 0, p[2];
	area = mmap(NULL, N * 4096, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);

	for (it = 0; it < iters; it++) {
		pid_t pid;
		char c;
		int i, self, other;

		pipe(p);
		pid = fork();
		if (!pid) {
			char *priv = mmap(area, N * 4096, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_FIXED, -1, 0);
			for (i = 0; i < N; i += 2) priv[i * 4096] = 1;
			write(p[1], "x", 1);
			pause();
			_exit(0);
		}
		read(p[0], &c, 1);
		other = count_present(pid);
		{	/* get_user_pages_remote() on the child's mm */
			char v[4] = { 9, 9, 9, 9 };
			struct iovec l = { v, 4 }, r = { area, 4 };
			if (process_vm_readv(pid, &l, 1, &r, 1, 0) != 4 || v[0] != 1 || v[1] != 0) {
				printf("pagemap: process_vm_readv got %d %d\n", v[0], v[1]);
				bad++;
			}
		}
		for (i = 0; i < N; i += 4) area[i * 4096] = 1;
		self = count_present(getpid());
		if (other != N / 2 || self < N / 4) { printf("pagemap: other=%d self=%d\n", other, self); bad++; }
		kill(pid, SIGKILL);
		waitpid(pid, NULL, 0);
		close(p[0]); close(p[1]);
		madvise(area, N * 4096, MADV_DONTNEED);
	}
	printf("pagemap: %d iters, %d bad\n", iters, bad);
	return bad != 0;
}
