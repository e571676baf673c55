/*
 * The connection keeper: one IPC connection to the coordinator for every
 * action script of one criu.
 *
 * criu runs the hook once per stage, six times per restored tree, and a new
 * connection each time costs the coordinator an accept, a ZMTP handshake and
 * the bookkeeping of a new peer (about half of its per-connection CPU is in
 * its main thread), and costs the hook a round trip to the daemon's I/O
 * thread before it may send. So the first hook of a criu that opens a
 * connection forks a keeper that holds it: a process of its own session
 * that does nothing but sleep. Later hooks of the same criu find the keeper
 * by an abstract socket named after that criu (pid and start time), learn its
 * pid from the socket's credentials (SO_PEERCRED, valid before any accept),
 * and copy the connection out of it with pidfd_getfd: no message to the
 * keeper, no wait for it to run. criu runs its action scripts one at a time,
 * so one hook at a time uses the connection; hooks read it frame by frame
 * (stagegate-hook.c's zmtp_fill), so none leaves half a frame for the next.
 *
 * Trust: the name can be squatted by anyone, so the keeper must run as this
 * hook's user (pidfd_getfd needs ptrace rights over it anyway), and the copied
 * descriptor must be a Unix stream socket connected to this hook's endpoint
 * (getpeername); otherwise the hook connects on its own, as before.
 *
 * The hook that starts a keeper returns once it listens (KEEPER_READY_MS at
 * most), so that the next hook of its criu finds it. The keeper exits when
 * its criu exits, when the coordinator closes the
 * connection (a restarted daemon: the next hook connects anew and starts a
 * new keeper), or after KEEPER_IDLE_MS without a hook looking for it.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <poll.h>
#include <signal.h>
#include <stddef.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hook.h"

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_getfd
#define SYS_pidfd_getfd 438
#endif
#ifndef SYS_close_range
#define SYS_close_range 436
#endif

/* Where the keeper holds its descriptors, so that a hook knows which to copy. */
#define KEEPER_CONN_FD 3
#define KEEPER_LISTEN_FD 4
#define KEEPER_CRIU_FD 5
/* A keeper nobody has looked for in this long goes (a gate can hold a hook
 * longer: the next hook then connects anew). Short, so that a hook run by
 * something that is not criu (a test, a shell loop) leaves nothing behind
 * for long. */
#define KEEPER_IDLE_MS 3000
/* How long the hook that starts a keeper waits for it to listen, at most (it
 * is a fork away: well under a millisecond on an idle host); a later hook that
 * comes before it listens connects on its own. */
#define KEEPER_READY_MS 50

/* The abstract socket name of the keeper of `criu`: its pid and start time (a
 * recycled pid is another name). 0 named, -1 criu unknown. */
static int keeper_name(pid_t criu, struct sockaddr_un *a, socklen_t *len) {
	long ppid;
	unsigned long long start;
	if (criu <= 1 || proc_stat(criu, &ppid, &start))
		return -1;
	memset(a, 0, sizeof(*a));
	a->sun_family = AF_UNIX;
	/* sun_path[0] = '\0': the abstract namespace (no file to remove, gone with the keeper) */
	int n = snprintf(a->sun_path + 1, sizeof(a->sun_path) - 1, "stagegate-keeper/%d/%llu", (int)criu, start);
	if (n <= 0 || (size_t)n >= sizeof(a->sun_path) - 1)
		return -1;
	*len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + 1 + (size_t)n);
	return 0;
}

/* Whether `fd` is a Unix stream socket connected to the socket bound at `path`. */
static int connected_to(int fd, const char *path) {
	int type = 0, domain = 0;
	socklen_t l = sizeof(type);
	if (getsockopt(fd, SOL_SOCKET, SO_TYPE, &type, &l) || type != SOCK_STREAM)
		return 0;
	l = sizeof(domain);
	if (getsockopt(fd, SOL_SOCKET, SO_DOMAIN, &domain, &l) || domain != AF_UNIX)
		return 0;
	struct sockaddr_un peer;
	socklen_t pl = sizeof(peer);
	memset(&peer, 0, sizeof(peer));
	if (getpeername(fd, (struct sockaddr *)&peer, &pl) || peer.sun_family != AF_UNIX)
		return 0;
	size_t n = pl > offsetof(struct sockaddr_un, sun_path) ? pl - offsetof(struct sockaddr_un, sun_path) : 0;
	size_t want = strlen(path);
	/* the bound name may or may not carry its terminating NUL */
	if (n > 0 && peer.sun_path[n - 1] == '\0')
		n--;
	return n == want && memcmp(peer.sun_path, path, want) == 0;
}

int keeper_take(pid_t criu, const char *path) {
	struct sockaddr_un a;
	socklen_t alen;
	if (keeper_name(criu, &a, &alen))
		return -1;
	int s = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0);
	if (s < 0)
		return -1;
	struct ucred cred = {0};
	socklen_t cl = sizeof(cred);
	int ok = connect(s, (struct sockaddr *)&a, alen) == 0 && getsockopt(s, SOL_SOCKET, SO_PEERCRED, &cred, &cl) == 0;
	close(s);
	if (!ok || cred.pid <= 0 || cred.uid != geteuid())
		return -1;
	int pidfd = (int)syscall(SYS_pidfd_open, cred.pid, 0);
	if (pidfd < 0)
		return -1;
	int fd = (int)syscall(SYS_pidfd_getfd, pidfd, KEEPER_CONN_FD, 0); /* close-on-exec */
	close(pidfd);
	if (fd < 0)
		return -1;
	if (!connected_to(fd, path)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* The keeper's life: sleeps until its criu exits, the coordinator hangs up,
 * or nobody has looked for it in KEEPER_IDLE_MS. */
static void keeper_run(void) {
	struct pollfd p[3] = {
		{.fd = KEEPER_CONN_FD, .events = POLLRDHUP}, /* not POLLIN: replies there are the hooks' to read */
		{.fd = KEEPER_LISTEN_FD, .events = POLLIN},
		{.fd = KEEPER_CRIU_FD, .events = POLLIN},
	};
	for (;;) {
		int r = poll(p, 3, KEEPER_IDLE_MS);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0 || p[0].revents || p[2].revents || (p[1].revents & ~POLLIN))
			return;
		/* a hook looked for it: accept and drop (the hook already has what it came for) */
		int c = accept4(KEEPER_LISTEN_FD, NULL, NULL, SOCK_CLOEXEC | SOCK_NONBLOCK);
		if (c >= 0)
			close(c);
	}
}

void keeper_start(pid_t criu, int conn) {
	struct sockaddr_un a;
	socklen_t alen;
	if (keeper_name(criu, &a, &alen))
		return;
	int criufd = (int)syscall(SYS_pidfd_open, criu, 0);
	if (criufd < 0)
		return;
	/* the keeper says when it listens: the next hook of this criu may come at once */
	int ready[2];
	if (pipe2(ready, O_CLOEXEC) != 0) {
		close(criufd);
		return;
	}
	/* forked twice: the keeper is nobody's child in particular (not this hook's, which
	 * may have a guardian to be told apart; it goes to the subreaper or init) */
	pid_t k = fork();
	if (k != 0) {
		close(criufd);
		close(ready[1]);
		if (k > 0) {
			while (waitpid(k, NULL, 0) < 0 && errno == EINTR)
				;
			/* a byte once it listens; end of file if it gave up (the name is taken) */
			struct pollfd p = {.fd = ready[0], .events = POLLIN};
			while (poll(&p, 1, KEEPER_READY_MS) < 0 && errno == EINTR)
				;
		}
		close(ready[0]);
		return;
	}
	close(ready[0]);
	if (fork() != 0)
		_exit(0);
	setsid();
	signal(SIGPIPE, SIG_IGN);
	signal(SIGHUP, SIG_IGN);
	int l = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	/* taken: another keeper serves this criu already (or a squatter, whom hooks refuse) */
	if (l < 0 || bind(l, (struct sockaddr *)&a, alen) != 0 || listen(l, 64) != 0)
		_exit(0);
	int null = open("/dev/null", O_RDWR | O_CLOEXEC);
	/* out of the way of 0..5 first, then into place; everything else is closed, above all
	 * criu's log (its reader would wait for the keeper) and a guardian's pipe (its end
	 * must close with the hook) */
	int c2 = fcntl(conn, F_DUPFD_CLOEXEC, 16), l2 = fcntl(l, F_DUPFD_CLOEXEC, 16), p2 = fcntl(criufd, F_DUPFD_CLOEXEC, 16);
	int n2 = null >= 0 ? fcntl(null, F_DUPFD_CLOEXEC, 16) : -1, r2 = fcntl(ready[1], F_DUPFD_CLOEXEC, 16);
	if (c2 < 0 || l2 < 0 || p2 < 0 || n2 < 0 || r2 < 0)
		_exit(0);
	if (dup2(n2, 0) < 0 || dup2(n2, 1) < 0 || dup2(n2, 2) < 0 || dup2(c2, KEEPER_CONN_FD) < 0 || dup2(l2, KEEPER_LISTEN_FD) < 0 ||
	    dup2(p2, KEEPER_CRIU_FD) < 0)
		_exit(0);
	/* ready: the connection is where hooks copy it from */
	ssize_t w = write(r2, "k", 1);
	(void)w;
	if (syscall(SYS_close_range, KEEPER_CRIU_FD + 1, ~0U, 0) != 0)
		for (int fd = KEEPER_CRIU_FD + 1; fd < 1024; fd++)
			close(fd);
	keeper_run();
	_exit(0);
}
