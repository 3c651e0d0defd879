#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <sys/wait.h>
int main(int argc, char **argv)
{
	int n = argc > 1 ? atoi(argv[1]) : 100, i, st, bad = 0;
	for (i = 0; i < n; i++) {
		pid_t pid = fork();
		if (!pid) { execl("/bin/true", "true", NULL); _exit(127); }
		waitpid(pid, &st, 0);
		if (!WIFEXITED(st) || WEXITSTATUS(st)) bad++;
	}
	printf("execloop: %d execs, %d bad\n", n, bad);
	return bad != 0;
}
