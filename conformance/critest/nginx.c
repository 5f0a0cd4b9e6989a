/* The stand-in for critest's nginx images: what the specs look at, from a
 * process named nginx (`pidof nginx`) whose command line reads "nginx:
 * master process" (/proc/1/cmdline) and whose pid is in /var/run/nginx.pid;
 * busybox's httpd, its child, serves /usr/share/nginx/html on $NGINX_PORT
 * (default 80). SIGTERM or SIGINT stops both. */
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>
#include <unistd.h>

static pid_t child;

static void stop(int sig) {
	if (child > 0)
		kill(child, SIGTERM);
	(void)sig;
	_exit(0);
}

/* Rewrites the argument area as nginx does, as far as it reaches. */
static void set_title(int argc, char **argv, const char *title) {
	char *end = argv[argc - 1] + strlen(argv[argc - 1]);
	size_t room = (size_t)(end - argv[0]);
	memset(argv[0], 0, room);
	strncpy(argv[0], title, room);
}

int main(int argc, char **argv) {
	const char *port = getenv("NGINX_PORT");
	FILE *f = fopen("/var/run/nginx.pid", "w");
	if (!f || fprintf(f, "%d\n", (int)getpid()) < 0 || fclose(f) != 0) {
		perror("/var/run/nginx.pid");
		return 1;
	}
	signal(SIGTERM, stop);
	signal(SIGINT, stop);
	child = fork();
	if (child < 0) {
		perror("fork");
		return 1;
	}
	if (child == 0) {
		execl("/bin/busybox", "httpd", "-f", "-p", port ? port : "80", "-h", "/usr/share/nginx/html",
		      (char *)NULL);
		perror("/bin/busybox");
		_exit(127);
	}
	set_title(argc, argv, "nginx: master process /usr/sbin/nginx");
	int status;
	while (waitpid(child, &status, 0) < 0)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : 1;
}
