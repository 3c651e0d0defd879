/* fork churn: child touches some memory and exits. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>
#include <sys/wait.h>
#include <sys/mman.h>

static char buf[1 << 20];

int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100, i, st, bad = 0;

	memset(buf, 1, sizeof(buf));
	for (i = 0; i < n; i++) {
		pid_t pid = fork();
		if (pid < 0) { perror("fork"); return 1; }
		if (!pid) {
			size_t j;
			for (j = 0; j < sizeof(buf); j += 4096) {
				if (buf[j] != 1) _exit(2);
				buf[j] = 2;	/* COW fault */
			}
			_exit(0);
		}
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st)) bad++;
	}
	for (i = 0; i < (int)sizeof(buf); i += 4096)
		if (buf[i] != 1) bad++;
	printf("forkloop: %d forks, %d bad\n", n, bad);
	return bad != 0;
}
