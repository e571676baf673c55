/*
 * stagegate-hook: the executable given to `criu --action-script`.
 *
 * CRIU runs it once per action with no arguments, stdin closed and
 * stdout/stderr going into its log. It reads CRTOOLS_* and STAGEGATE_* from
 * the environment, sends one StageEvent (proto/stagegate.proto) over ZeroMQ
 * and, for the gated actions, waits for the coordinator's Verdict:
 *
 *   pre-restore   wait (the coordinator answers at once unless the session
 *                 has an arrival barrier); ABORT or silence -> exit 1 (CRIU
 *                 then restores nothing)
 *   post-restore  wait; ABORT or silence -> exit 1 (CRIU then kills the tree)
 *   pre-resume    wait; ABORT or silence -> SIGKILL the restored tree (its
 *                 tasks are ptrace-stopped and have run no user code) and
 *                 exit 1
 *   pre-dump      wait (no tree freezes before every tree has started its
 *                 dump); ABORT or silence -> exit 1 (criu dumps nothing)
 *   network-lock  wait (only trees with their own netns reach it); ABORT or
 *                 silence -> exit 1 (criu resumes the tree)
 *   post-dump     wait for the group commit; ABORT or silence -> exit 1:
 *                 criu unlocks the network and resumes the tree (rollback)
 *   anything else publish and return 0 at once
 *
 * Every event names its run (STAGEGATE_RUN, else derived from this hook's
 * criu): the coordinator lets one run restore a tree, once per attempt.
 * A gated hook re-sends its event every RESEND_MS while it waits (a
 * restarted coordinator learns that it still waits; a silent one is lost).
 *
 * While it waits with a restored tree (post-restore, pre-resume), a guardian
 * forked into a session of its own cleans up if the hook itself is killed
 * (see fork_guardian): it kills the tree and reports the run failed. At
 * pre-resume the hook also stops the tree (SIGSTOP) before it waits, so that
 * even if everything else dies criu cannot resume it; PROCEED sends SIGCONT.
 *
 * main reads as the four steps: build_event, send_event, await_verdict (in
 * pass_gate) and abort_tree. Action names come from the proto's own enum.
 *
 * It is C, not Node, because it sits on the restore's critical path: a Node
 * process start alone costs more than the whole budget of this hook.
 *
 * Exit codes: 0 proceed, 1 aborted, 2 misconfigured (bad environment).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/socket.h>
#include <sys/syscall.h>
#include <sys/uio.h>
#include <sys/un.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <dlfcn.h>
#include <sodium.h>
#include <zmq.h>

#include "stagegate.pb-c.h"
#include "hook.h"

/*
 * libzmq is loaded only for TCP (CURVE): loading it and the ~20 libraries it
 * links costs more than an action script should (about 1.3 ms of the 2.2 ms
 * this hook took before doing anything); over IPC the hook speaks ZMTP itself
 * (zmtp_open and the functions after it). The names below stand for
 * libzmq's own functions.
 */
static struct {
	void *(*ctx_new)(void);
	int (*ctx_term)(void *);
	void *(*socket)(void *, int);
	int (*close)(void *);
	int (*setsockopt)(void *, int, const void *, size_t);
	int (*connect)(void *, const char *);
	int (*send)(void *, const void *, size_t, int);
	int (*recv)(void *, void *, size_t, int);
	int (*poll)(zmq_pollitem_t *, int, long);
	int (*errno_)(void);
	const char *(*strerror)(int);
	uint8_t *(*z85_decode)(uint8_t *, const char *);
} zmq_lib;

#ifdef STAGEGATE_STATIC
/* This build has no dynamic loader (an action costs less without one), so no
 * libzmq: hook_main hands a TCP endpoint to stagegate-hook-full first. */
static int zmq_load(void) { return -1; }
static const char *zmq_load_error(void) { return "this build has none (stagegate-hook-full does)"; }
#else
static const char *zmq_load_error(void) { return dlerror(); }
/* 0 when libzmq is there; -1 otherwise (zmq_load_error says why). */
static int zmq_load(void) {
	if (zmq_lib.ctx_new)
		return 0;
	void *h = dlopen("libzmq.so.5", RTLD_NOW | RTLD_LOCAL);
	if (!h)
		return -1;
#define SYM(field, name)                                                                                               \
	if (!(*(void **)&zmq_lib.field = dlsym(h, name)))                                                              \
		return -1;
	SYM(ctx_term, "zmq_ctx_term")
	SYM(socket, "zmq_socket")
	SYM(close, "zmq_close")
	SYM(setsockopt, "zmq_setsockopt")
	SYM(connect, "zmq_connect")
	SYM(send, "zmq_send")
	SYM(recv, "zmq_recv")
	SYM(poll, "zmq_poll")
	SYM(errno_, "zmq_errno")
	SYM(strerror, "zmq_strerror")
	SYM(z85_decode, "zmq_z85_decode")
	SYM(ctx_new, "zmq_ctx_new") /* last: it marks the table complete */
#undef SYM
	return 0;
}
#endif

#define zmq_ctx_new zmq_lib.ctx_new
#define zmq_ctx_term zmq_lib.ctx_term
#define zmq_socket zmq_lib.socket
#define zmq_close zmq_lib.close
#define zmq_setsockopt zmq_lib.setsockopt
#define zmq_connect zmq_lib.connect
#define zmq_send zmq_lib.send
#define zmq_recv zmq_lib.recv
#define zmq_poll zmq_lib.poll
#define zmq_errno zmq_lib.errno_
#define zmq_strerror zmq_lib.strerror
#define zmq_z85_decode zmq_lib.z85_decode

#ifndef SYS_pidfd_open
#define SYS_pidfd_open 434
#endif
#ifndef SYS_pidfd_send_signal
#define SYS_pidfd_send_signal 424
#endif

#define PROTOCOL_VERSION 1
#define MAX_FRAME 65536
#define MAX_TREE_TASKS 65536
/* After killing the tree at pre-resume, CRIU may wait forever for a pid
 * namespace init whose dead children it still traces (zap_pid_ns_processes
 * waits for the tracer to reap them). Kill criu itself if it has not exited
 * within this grace period; the tree is already dead by then. */
#define CRIU_GRACE_MS 1000
/* A gated hook re-sends its event this often while it waits, so that a
 * restarted coordinator (which recovers its sessions from its journal) learns
 * that the hook still waits. Duplicates are harmless: the coordinator treats
 * them idempotently. */
#define RESEND_MS 1000

static const char *g_action = "?";

/* The criu this hook serves: its parent when criu runs it as an action
 * script; the `criu swrk` that `stagegate restore` drives (swrk-restore.c),
 * which forks the hook for each stage it is notified of. */
static pid_t g_criu;
static pid_t criu_pid(void) { return g_criu ? g_criu : getppid(); }
void hook_set_criu(pid_t criu) { g_criu = criu; }

/* Set while `stagegate restore` only checks its options with read_config:
 * the Node CLI it hands a bad option to says what is wrong. */
static int g_quiet;

static char **g_argv; /* as main got it: hook_need_full runs the same command */

/* The last line logged: on an abort, the reason (see note_abort). */
static char g_last[1024];

/* One line into criu's log (our stderr), remembered as the reason should the
 * hook abort. */
static void log_line(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(g_last, sizeof(g_last), fmt, ap);
	va_end(ap);
	if (!g_quiet)
		fprintf(stderr, "stagegate-hook[%s]: %s\n", g_action, g_last);
}

/* criu's log is often a file: whoever runs criu gets the reason of an abort
 * too, to print it on its own terminal. Under `criu restore --action-script`
 * (the Node CLI) STAGEGATE_ABORT_NOTE names a file, only ever created
 * (O_EXCL): the first abort's reason is kept, and no existing file is ever
 * truncated through this variable. Under `stagegate restore` (swrk-restore.c,
 * which forks this code) STAGEGATE_ABORT_NOTE_FD is an inherited memfd
 * opened for appending, whose first line it prints; any other descriptor
 * is left alone. */
static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out);

static int note_fd(void) {
	const char *s = getenv("STAGEGATE_ABORT_NOTE_FD");
	unsigned long fd;
	if (!s || parse_uint(s, 3, INT_MAX, &fd))
		return -1;
	/* only a memfd has seals to ask for; only an appending one is a note */
	int fl = fcntl((int)fd, F_GETFL);
	return fl >= 0 && (fl & O_APPEND) && fcntl((int)fd, F_GET_SEALS) >= 0 ? (int)fd : -1;
}

static void note_abort(void) {
	if (!g_last[0])
		return;
	char line[1100];
	int n = snprintf(line, sizeof(line), "%s: %s\n", g_action, g_last);
	size_t len = n > 0 && (size_t)n < sizeof(line) ? (size_t)n : strlen(line);
	int fd = note_fd();
	if (fd >= 0) {
		ssize_t w = write(fd, line, len);
		(void)w;
		return;
	}
	const char *note = getenv("STAGEGATE_ABORT_NOTE");
	if (!note || !*note)
		return;
	fd = open(note, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return;
	ssize_t w = write(fd, line, len);
	(void)w;
	close(fd);
}

/* The action's enum value, derived from the proto's own enum (the one list
 * of actions, proto/stagegate.proto): "post-restore" is POST_RESTORE.
 * restore-failed is not a CRIU action (the wrapper sends it), so criu's name
 * for it is not taken. */
static Stagegate__V1__Action parse_action(const char *name) {
	char upper[64];
	size_t n = strlen(name);
	if (n == 0 || n >= sizeof(upper))
		return STAGEGATE__V1__ACTION__ACTION_UNSPECIFIED;
	for (size_t i = 0; i <= n; i++) {
		char ch = name[i];
		if (ch && ch != '-' && !(ch >= 'a' && ch <= 'z'))
			return STAGEGATE__V1__ACTION__ACTION_UNSPECIFIED; /* criu's names are lower case and dashes */
		upper[i] = ch == '-' ? '_' : (char)(ch ? ch - 'a' + 'A' : 0);
	}
	const ProtobufCEnumValue *v = protobuf_c_enum_descriptor_get_value_by_name(&stagegate__v1__action__descriptor, upper);
	if (!v || v->value == STAGEGATE__V1__ACTION__RESTORE_FAILED)
		return STAGEGATE__V1__ACTION__ACTION_UNSPECIFIED;
	return (Stagegate__V1__Action)v->value;
}

static uint64_t clock_ns(clockid_t id) {
	struct timespec ts;
	clock_gettime(id, &ts);
	return (uint64_t)ts.tv_sec * 1000000000ull + (uint64_t)ts.tv_nsec;
}

/* A session or tree name: 1..128 bytes of [A-Za-z0-9._:-]. The daemon checks
 * the same rule; checking here gives the user the error in CRIU's log. */
static int valid_name(const char *s) {
	size_t n = strlen(s);
	if (n == 0 || n > 128)
		return 0;
	for (; *s; s++) {
		char c = *s;
		if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
		      c == '.' || c == '_' || c == ':' || c == '-'))
			return 0;
	}
	return 1;
}

static int parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out) {
	char *end;
	if (!s || !*s)
		return -1;
	errno = 0;
	unsigned long v = strtoul(s, &end, 10);
	if (errno || *end || s[0] == '-' || v < min || v > max)
		return -1;
	*out = v;
	return 0;
}

static int pidfd_open(pid_t pid) { return (int)syscall(SYS_pidfd_open, pid, 0); }
static int pidfd_signal(int fd, int sig) { return (int)syscall(SYS_pidfd_send_signal, fd, sig, NULL, 0); }

/* Sends `sig` to every task of the restored tree rooted at `root`. Every task
 * is pinned with a pidfd before any signal is sent, so a pid recycled
 * meanwhile is never hit. Returns how many tasks were signalled. */
int signal_tree(pid_t root, int sig) {
	static pid_t pids[MAX_TREE_TASKS];
	static int fds[MAX_TREE_TASKS];
	size_t n = 0, head = 0;
	int killed = 0;

	pids[n] = root;
	fds[n] = pidfd_open(root);
	if (fds[n] < 0) {
		log_line("cannot pin restored root %d: %s", root, strerror(errno));
		return -1;
	}
	n++;
	while (head < n) {
		/* children of every thread of this task */
		char tdir[64];
		snprintf(tdir, sizeof(tdir), "/proc/%d/task", pids[head]);
		DIR *d = opendir(tdir);
		struct dirent *de;
		while (d && (de = readdir(d))) {
			if (de->d_name[0] == '.')
				continue;
			char cpath[PATH_MAX];
			snprintf(cpath, sizeof(cpath), "%s/%s/children", tdir, de->d_name);
			FILE *f = fopen(cpath, "r");
			long c;
			while (f && fscanf(f, "%ld", &c) == 1 && n < MAX_TREE_TASKS) {
				int fd = pidfd_open((pid_t)c);
				if (fd < 0)
					continue; /* already gone */
				pids[n] = (pid_t)c;
				fds[n] = fd;
				n++;
			}
			if (f)
				fclose(f);
		}
		if (d)
			closedir(d);
		head++;
	}
	for (size_t i = 0; i < n; i++) {
		if (pidfd_signal(fds[i], sig) == 0)
			killed++;
		close(fds[i]);
	}
	return killed;
}

/* Tells `stagegate restore` that this tree passed the resume barrier: criu
 * exits 0 even when its pre-resume script died, so without this mark the
 * wrapper could not tell a released tree from one whose hook was killed. */
static void mark_released(void) {
	const char *mark = getenv("STAGEGATE_RELEASE_MARK");
	if (!mark || !*mark)
		return;
	int fd = open(mark, O_WRONLY | O_CREAT | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd >= 0)
		close(fd);
}

/* At post-dump, COMMIT: the verdict (with the committed set's members) for
 * `stagegate dump`, which writes the commit record once criu has exited. */
static void mark_committed(const Stagegate__V1__Verdict *v) {
	const char *mark = getenv("STAGEGATE_COMMIT_MARK");
	if (!mark || !*mark)
		return;
	size_t len = stagegate__v1__verdict__get_packed_size(v);
	uint8_t *buf = malloc(len ? len : 1);
	int fd = buf ? open(mark, O_WRONLY | O_CREAT | O_TRUNC | O_NOFOLLOW | O_CLOEXEC, 0600) : -1;
	if (fd >= 0) {
		stagegate__v1__verdict__pack(v, buf);
		if (write(fd, buf, len) != (ssize_t)len)
			log_line("could not write the commit mark %s", mark);
		close(fd);
	}
	free(buf);
}

/* Parent pid and start time (clock ticks since boot) of `pid`; -1 when unknown. */
int proc_stat(pid_t pid, long *ppid, unsigned long long *start) {
	char path[64], buf[1024];
	snprintf(path, sizeof(path), "/proc/%d/stat", pid);
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return -1;
	ssize_t n = read(fd, buf, sizeof(buf) - 1);
	close(fd);
	if (n <= 0)
		return -1;
	buf[n] = '\0';
	char *p = strrchr(buf, ')'); /* the command name may hold anything */
	if (!p)
		return -1;
	/* fields after the name: state ppid pgrp session tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime
	 * cutime cstime priority nice num_threads itrealvalue starttime */
	char state;
	if (sscanf(p + 2, "%c %ld %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &state, ppid,
		   start) != 3)
		return -1;
	return 0;
}

/* The restored root was made by the criu that runs this hook: its child, or,
 * when criu restores as a sibling (runc asks for it over RPC), a child of
 * criu's parent started after criu. Anything else (a stale or wrong
 * CRTOOLS_INIT_PID) must never be killed. */
static int is_child_of(pid_t pid, pid_t criu) {
	long ppid, criu_ppid;
	unsigned long long start, criu_start;
	if (proc_stat(pid, &ppid, &start))
		return 0;
	if (ppid == criu)
		return 1;
	return !proc_stat(criu, &criu_ppid, &criu_start) && ppid == criu_ppid && start >= criu_start;
}

/* Forks a watchdog that kills criu if it is still alive after the grace
 * period (see CRIU_GRACE_MS). The hook itself returns at once. */
static void watch_criu(pid_t criu) {
	int fd = pidfd_open(criu);
	if (fd < 0)
		return;
	pid_t w = fork();
	if (w != 0) {
		close(fd);
		return;
	}
	setsid();
	struct pollfd p = {.fd = fd, .events = POLLIN};
	if (poll(&p, 1, CRIU_GRACE_MS) == 0) {
		pidfd_signal(fd, SIGKILL);
		log_line("criu %d still waiting on the killed tree after %d ms; killed it", criu, CRIU_GRACE_MS);
	}
	_exit(0);
}

static void report_failure(const char *reason);

/* A post-restore guardian whose hook or criu died: once criu has exited
 * (after a failed post-restore script it aborts and kills the tree itself),
 * kills what is left of the tree and tells the coordinator (restore-failed),
 * which aborts the session at once. The tree never ran: it was never let past
 * post-restore with a live criu. Without this, a tree whose criu was killed
 * too (a whole process group killed at once) sleeps in criu's restorer
 * forever, and the other trees wait for it until the deadline. */
static void guard_post_restore(int done, int criufd, int rootfd, pid_t root) {
	struct pollfd p[2] = {{.fd = done, .events = POLLIN}, {.fd = criufd, .events = POLLIN}};
	for (;;) {
		int r = poll(p, 2, -1);
		if (r < 0 && errno == EINTR)
			continue;
		break;
	}
	if (p[0].revents) {
		char c;
		if (read(done, &c, 1) == 1)
			_exit(0); /* the hook finished */
	}
	struct pollfd q = {.fd = criufd, .events = POLLIN};
	while (poll(&q, 1, -1) < 0 && errno == EINTR)
		;
	char reason[160];
	if (pidfd_signal(rootfd, 0) == 0) {
		int k = signal_tree(root, SIGKILL);
		log_line("the hook waiting at post-restore and its criu are gone: killed %d task(s) of the unreleased tree rooted at %d", k,
			 root);
		snprintf(reason, sizeof(reason), "criu and its hook died at post-restore; the guardian killed %d task(s) of the tree", k);
	} else {
		snprintf(reason, sizeof(reason), "the hook died at post-restore (criu aborted the restore)");
	}
	report_failure(reason);
	_exit(0);
}

/* Forks a guardian for a hook about to wait at post-restore or pre-resume
 * with a restored tree. It runs in a session of its own, so that killing the
 * whole process group of `stagegate restore` (wrapper, criu and hook at once,
 * as batch schedulers do) spares it. If the hook dies while it waits:
 * - post-restore: see guard_post_restore;
 * - pre-resume: criu only logs the failed script and lets the tree go (held
 *   by the hook's SIGSTOP): the guardian then runs a new hook in its place
 *   (STAGEGATE_STAND_IN_ROOTFD: the root, pinned by a pidfd), which waits for
 *   the verdict and resumes or kills the tree, so the barrier still holds.
 * Returns the pipe end the hook writes to when it is done (the guardian then
 * exits), and the guardian's pid in *pid; -1 when there is none. */
static int fork_guardian(Stagegate__V1__Action action, pid_t root, pid_t *pid) {
	int rootfd = pidfd_open(root);
	int criufd = -1;
	int p[2];
	if (rootfd < 0)
		return -1;
	if (action == STAGEGATE__V1__ACTION__POST_RESTORE && (criufd = pidfd_open(criu_pid())) < 0) {
		close(rootfd);
		return -1;
	}
	if (pipe2(p, O_CLOEXEC) < 0) {
		close(rootfd);
		if (criufd >= 0)
			close(criufd);
		return -1;
	}
	*pid = fork();
	if (*pid != 0) {
		close(rootfd);
		if (criufd >= 0)
			close(criufd);
		close(p[0]);
		if (*pid > 0)
			return p[1];
		close(p[1]);
		return -1;
	}
	close(p[1]);
	setsid();
	signal(SIGPIPE, SIG_IGN); /* criu's log may be a pipe whose reader is gone */
	if (action == STAGEGATE__V1__ACTION__POST_RESTORE)
		guard_post_restore(p[0], criufd, rootfd, root);
	char c;
	ssize_t n;
	do
		n = read(p[0], &c, 1);
	while (n < 0 && errno == EINTR);
	if (n == 1)
		_exit(0); /* the hook finished */
	char fd[16];
	snprintf(fd, sizeof(fd), "%d", rootfd);
	fcntl(rootfd, F_SETFD, 0); /* pidfds are close-on-exec */
	int note = note_fd();
	if (note >= 0)
		fcntl(note, F_SETFD, 0); /* the stand-in notes an abort where this hook would have */
	setenv("STAGEGATE_STAND_IN_ROOTFD", fd, 1);
	log_line("the hook waiting at pre-resume died: a new one stands in for it");
	execl("/proc/self/exe", "stagegate-hook", (char *)NULL);
	log_line("cannot stand in: %s", strerror(errno));
	_exit(1);
}

/* Whether this hook may signal the restored tree: its root is a child of our
 * criu, or (a stand-in) the root its predecessor pinned is still there. */
static int owns_tree(pid_t root, int pinned) {
	return pinned >= 0 ? pidfd_signal(pinned, 0) == 0 : is_child_of(root, criu_pid());
}

/* An IPC endpoint is trusted through its directory: it must exist, belong to
 * this user or root and be private, or another local user could put a socket
 * there and answer in the coordinator's place. */
static int check_endpoint(const char *endpoint) {
	if (strncmp(endpoint, "ipc://", 6) != 0)
		return 0;
	char dir[PATH_MAX];
	snprintf(dir, sizeof(dir), "%s", endpoint + 6);
	char *slash = strrchr(dir, '/');
	if (!slash) {
		log_line("IPC endpoint %s is not an absolute path", endpoint);
		return -1;
	}
	if (slash == dir)
		slash[1] = '\0';
	else
		*slash = '\0';
	struct stat st;
	if (lstat(dir, &st) != 0) {
		log_line("IPC endpoint %s: directory %s does not exist (is the coordinator running?)", endpoint, dir);
		return -1;
	}
	if (!S_ISDIR(st.st_mode)) {
		log_line("refusing IPC endpoint %s: %s is not a directory", endpoint, dir);
		return -1;
	}
	if (st.st_uid != geteuid() && st.st_uid != 0) {
		log_line("refusing IPC endpoint %s: %s belongs to uid %u, neither this user nor root", endpoint, dir,
			 (unsigned)st.st_uid);
		return -1;
	}
	if (st.st_mode & 077) {
		log_line("refusing IPC endpoint %s: %s is not private (mode %o)", endpoint, dir, (unsigned)(st.st_mode & 07777));
		return -1;
	}
	return 0;
}

/* Reads a 40-character Z85 CURVE key from a file into key (41 bytes). */
static int read_key(const char *path, char key[41]) {
	FILE *f = fopen(path, "r");
	if (!f) {
		log_line("cannot read CURVE key %s: %s", path, strerror(errno));
		return -1;
	}
	size_t n = fread(key, 1, 40, f);
	fclose(f);
	key[40] = '\0';
	if (n != 40) {
		log_line("%s does not hold a CURVE key (40 Z85 characters)", path);
		return -1;
	}
	return 0;
}

/* On CURVE, every request is sealed: an HMAC-SHA-256 keyed with
 * SHA-256("stagegate seal v1" || X25519(client secret, server public)) tells
 * the daemon which allow-listed key sent it; each seal is single-use and
 * dated, and the socket's routing id binds it to this connection
 * (proto/stagegate.proto, Sealed; src/transport/seal.ts). */
typedef struct {
	int on;
	uint8_t key[crypto_auth_hmacsha256_KEYBYTES];
	uint8_t client_pk[32];
} seal_t;

/* TCP endpoints: CURVE client keys from STAGEGATE_CURVE_SERVER_PUBLIC (the
 * daemon's public key file) and STAGEGATE_CURVE_CLIENT (PREFIX of this
 * client's PREFIX.public and PREFIX.secret); fills the seal. */
static int setup_curve(void *sock, const char *endpoint, seal_t *seal) {
	const char *server = getenv("STAGEGATE_CURVE_SERVER_PUBLIC");
	const char *client = getenv("STAGEGATE_CURVE_CLIENT");
	seal->on = 0;
	if (strncmp(endpoint, "tcp://", 6) != 0 || !server || !client || !*server || !*client)
		return 0;
	char skey[41], pkey[41], sec[41], path[PATH_MAX];
	if (read_key(server, skey))
		return -1;
	snprintf(path, sizeof(path), "%s.public", client);
	if (read_key(path, pkey))
		return -1;
	snprintf(path, sizeof(path), "%s.secret", client);
	if (read_key(path, sec))
		return -1;
	if (zmq_setsockopt(sock, ZMQ_CURVE_SERVERKEY, skey, 41) || zmq_setsockopt(sock, ZMQ_CURVE_PUBLICKEY, pkey, 41) ||
	    zmq_setsockopt(sock, ZMQ_CURVE_SECRETKEY, sec, 41)) {
		log_line("cannot set CURVE keys: %s", zmq_strerror(zmq_errno()));
		return -1;
	}
	uint8_t server_pk[32], client_sk[32], shared[crypto_scalarmult_BYTES];
	if (sodium_init() < 0 || !zmq_z85_decode(server_pk, skey) || !zmq_z85_decode(client_sk, sec) ||
	    !zmq_z85_decode(seal->client_pk, pkey) || crypto_scalarmult(shared, client_sk, server_pk) != 0) {
		log_line("cannot derive the seal key from the CURVE keys");
		return -1;
	}
	crypto_hash_sha256_state h;
	crypto_hash_sha256_init(&h);
	crypto_hash_sha256_update(&h, (const uint8_t *)"stagegate seal v1", 17);
	crypto_hash_sha256_update(&h, shared, sizeof(shared));
	crypto_hash_sha256_final(&h, seal->key);
	sodium_memzero(client_sk, sizeof(client_sk));
	sodium_memzero(shared, sizeof(shared));
	/* the routing id proves that this connection was made by the holder of the
	 * seal key: "S" + hex(tag) + hex(conn nonce) (proto/stagegate.proto, Sealed) */
	uint8_t nonce[8], tag[crypto_auth_hmacsha256_BYTES];
	randombytes_buf(nonce, sizeof(nonce));
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, seal->key, sizeof(seal->key));
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)"stagegate conn v1", 17);
	crypto_auth_hmacsha256_update(&st, nonce, sizeof(nonce));
	crypto_auth_hmacsha256_final(&st, tag);
	char id[1 + 2 * 16 + 2 * 8 + 1];
	id[0] = 'S';
	sodium_bin2hex(id + 1, 33, tag, 16);
	sodium_bin2hex(id + 33, 17, nonce, sizeof(nonce));
	if (zmq_setsockopt(sock, ZMQ_ROUTING_ID, id, strlen(id))) {
		log_line("cannot set the routing id: %s", zmq_strerror(zmq_errno()));
		return -1;
	}
	seal->on = 1;
	return 0;
}

/* Packs the frame to send into out: req itself, or req sealed on CURVE.
 * Returns its length, 0 when it does not fit. */
static size_t pack_frame(Stagegate__V1__Request *req, const seal_t *seal, uint8_t *out, size_t cap) {
	size_t len = stagegate__v1__request__get_packed_size(req);
	if (!seal->on)
		return len > cap ? 0 : stagegate__v1__request__pack(req, out);
	static uint8_t inner[MAX_FRAME];
	if (len > sizeof(inner))
		return 0;
	stagegate__v1__request__pack(req, inner);
	/* single-use and dated: a fresh nonce and the time in every frame, re-sends too */
	uint8_t nonce[16], sent[8], mac[crypto_auth_hmacsha256_BYTES];
	randombytes_buf(nonce, sizeof(nonce));
	uint64_t now = clock_ns(CLOCK_REALTIME);
	for (int i = 0; i < 8; i++)
		sent[i] = (uint8_t)(now >> (8 * i));
	crypto_auth_hmacsha256_state st;
	crypto_auth_hmacsha256_init(&st, seal->key, sizeof(seal->key));
	crypto_auth_hmacsha256_update(&st, (const uint8_t *)"stagegate seal v2", 17);
	crypto_auth_hmacsha256_update(&st, nonce, sizeof(nonce));
	crypto_auth_hmacsha256_update(&st, sent, sizeof(sent));
	crypto_auth_hmacsha256_update(&st, inner, len);
	crypto_auth_hmacsha256_final(&st, mac);
	Stagegate__V1__Sealed sealed = STAGEGATE__V1__SEALED__INIT;
	sealed.request.data = inner;
	sealed.request.len = len;
	sealed.client_key.data = (uint8_t *)seal->client_pk;
	sealed.client_key.len = sizeof(seal->client_pk);
	sealed.mac.data = mac;
	sealed.mac.len = sizeof(mac);
	sealed.nonce.data = nonce;
	sealed.nonce.len = sizeof(nonce);
	sealed.sent_ns = now;
	Stagegate__V1__Request outer = STAGEGATE__V1__REQUEST__INIT;
	outer.body_case = STAGEGATE__V1__REQUEST__BODY_SEALED;
	outer.sealed = &sealed;
	size_t olen = stagegate__v1__request__get_packed_size(&outer);
	return olen > cap ? 0 : stagegate__v1__request__pack(&outer, out);
}

/* This hook's run: one `criu restore` of one tree. STAGEGATE_RUN when set
 * (`stagegate restore` makes a nonce), else derived from the criu that runs
 * this hook: boot id, pid and start time name one process of one boot. It is
 * exported, so that a stand-in forked later keeps it. Returns 0 on success. */
static int resolve_run(char *out, size_t cap) {
	const char *set = getenv("STAGEGATE_RUN");
	if (set && *set) {
		if (!valid_name(set)) {
			log_line("STAGEGATE_RUN is invalid: need 1-128 characters of [A-Za-z0-9._:-]");
			return -1;
		}
		snprintf(out, cap, "%s", set);
		return 0;
	}
	char boot[64] = "", stat[1024], path[64];
	FILE *f = fopen("/proc/sys/kernel/random/boot_id", "r");
	if (!f || !fgets(boot, sizeof(boot), f)) {
		if (f)
			fclose(f);
		log_line("cannot read the boot id to name this run");
		return -1;
	}
	fclose(f);
	boot[strcspn(boot, "\n")] = '\0';
	pid_t criu = criu_pid();
	snprintf(path, sizeof(path), "/proc/%d/stat", criu);
	f = fopen(path, "r");
	size_t n = f ? fread(stat, 1, sizeof(stat) - 1, f) : 0;
	if (f)
		fclose(f);
	stat[n] = '\0';
	/* field 22 (starttime), counting from after the ")" that ends comm */
	char *p = strrchr(stat, ')');
	unsigned long long start = 0;
	if (!p || sscanf(p + 1, " %*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %*u %*u %*d %*d %*d %*d %*d %*d %llu", &start) != 1) {
		log_line("cannot read the start time of criu %d to name this run", criu);
		return -1;
	}
	snprintf(out, cap, "criu-%s-%d-%llu", boot, criu, start);
	if (!valid_name(out)) {
		log_line("cannot name this run (boot id '%s')", boot);
		return -1;
	}
	setenv("STAGEGATE_RUN", out, 1);
	return 0;
}

typedef struct {
	const char *endpoint, *session, *tree;
	unsigned long trees, attempt;
	double timeout_s;
} config_t;

/* What a guardian needs to speak for its hook (set before it is forked). */
static const config_t *g_cfg;
static Stagegate__V1__Request *g_req;

/* A guardian's one message: its tree failed to restore (restore-failed, the
 * hook's own run), sent with a bounded linger; nothing waits for a reply. */
static int zmtp_deliver(const char *path, const uint8_t *msg, size_t len, int timeout_ms, const char **why);

/* What report_failure says failed: the restore, unless a `stagegate dump` says its dump. */
static int g_dump_failed;

static void report_failure(const char *reason) {
	if (!g_cfg || !g_req)
		return;
	Stagegate__V1__StageEvent *ev = g_req->event;
	ev->action = g_dump_failed ? STAGEGATE__V1__ACTION__DUMP_FAILED : STAGEGATE__V1__ACTION__RESTORE_FAILED;
	ev->action_name = g_dump_failed ? "dump-failed" : "restore-failed";
	ev->reason = (char *)reason;
	ev->resend_ms = 0;
	ev->resent = 0;
	ev->hook_pid = getpid();
	ev->mono_ns = clock_ns(CLOCK_MONOTONIC);
	ev->wall_ns = clock_ns(CLOCK_REALTIME);
	if (strncmp(g_cfg->endpoint, "ipc://", 6) == 0) {
		static uint8_t frame[MAX_FRAME];
		const seal_t plain = {0}; /* seals are for CURVE */
		const char *why;
		size_t n = pack_frame(g_req, &plain, frame, sizeof(frame));
		if (n && !check_endpoint(g_cfg->endpoint))
			zmtp_deliver(g_cfg->endpoint + 6, frame, n, 1000, &why);
		return;
	}
	if (zmq_load())
		return;
	void *ctx = zmq_ctx_new();
	void *sock = ctx ? zmq_socket(ctx, ZMQ_DEALER) : NULL;
	seal_t seal;
	static uint8_t buf[MAX_FRAME];
	size_t len;
	int linger = 1000;
	if (sock && !setup_curve(sock, g_cfg->endpoint, &seal) && (len = pack_frame(g_req, &seal, buf, sizeof(buf))) &&
	    !zmq_setsockopt(sock, ZMQ_LINGER, &linger, sizeof(linger)) &&
	    !zmq_setsockopt(sock, ZMQ_SNDTIMEO, &linger, sizeof(linger)) && !check_endpoint(g_cfg->endpoint) &&
	    !zmq_connect(sock, g_cfg->endpoint))
		zmq_send(sock, buf, len, 0);
	if (sock)
		zmq_close(sock);
	if (ctx)
		zmq_ctx_term(ctx);
}

static int read_config(config_t *c) {
	const char *t;
	c->endpoint = getenv("STAGEGATE_ENDPOINT");
	c->session = getenv("STAGEGATE_SESSION");
	c->tree = getenv("STAGEGATE_TREE");
	if (!c->endpoint || !*c->endpoint) {
		log_line("STAGEGATE_ENDPOINT is not set (e.g. ipc:///run/stagegate/hooks.sock)");
		return -1;
	}
	if (!c->session || !valid_name(c->session)) {
		log_line("STAGEGATE_SESSION is %s: need 1-128 characters of [A-Za-z0-9._:-]",
			 c->session ? "invalid" : "not set");
		return -1;
	}
	if (!c->tree || !valid_name(c->tree)) {
		log_line("STAGEGATE_TREE is %s: need 1-128 characters of [A-Za-z0-9._:-]",
			 c->tree ? "invalid" : "not set");
		return -1;
	}
	if (parse_uint(getenv("STAGEGATE_TREES"), 1, 65536, &c->trees)) {
		log_line("STAGEGATE_TREES must be an integer in 1..65536, got '%s'",
			 getenv("STAGEGATE_TREES") ? getenv("STAGEGATE_TREES") : "(unset)");
		return -1;
	}
	t = getenv("STAGEGATE_ATTEMPT");
	c->attempt = 1;
	if (t && parse_uint(t, 1, 1000000, &c->attempt)) {
		log_line("STAGEGATE_ATTEMPT must be an integer in 1..1000000, got '%s'", t);
		return -1;
	}
	t = getenv("STAGEGATE_TIMEOUT");
	c->timeout_s = 30;
	if (t) {
		char *end;
		errno = 0;
		c->timeout_s = strtod(t, &end);
		if (errno || *end || !(c->timeout_s > 0 && c->timeout_s <= 86400)) {
			log_line("STAGEGATE_TIMEOUT must be seconds in (0, 86400], got '%s'", t);
			return -1;
		}
	}
	return 0;
}

/* Whether the tree criu dumps has a network namespace of its own, so that
 * criu will run network-lock for it: STAGEGATE_NET_LOCK (set by `stagegate
 * dump`) when given, else the netns of the pid criu was given (-t/--tree in
 * its command line, or CRTOOLS_INIT_PID under RPC) against criu's own. 0 when
 * it cannot tell. */
static int dumps_own_netns(void) {
	const char *e = getenv("STAGEGATE_NET_LOCK");
	if (e && *e)
		return strcmp(e, "1") == 0;
	char path[64], args[8192];
	snprintf(path, sizeof(path), "/proc/%d/cmdline", criu_pid());
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	if (fd < 0)
		return 0;
	ssize_t n = read(fd, args, sizeof(args) - 1);
	close(fd);
	if (n <= 0)
		return 0;
	args[n] = '\0';
	unsigned long pid = 0;
	for (char *a = args; a < args + n; a += strlen(a) + 1) {
		char *next = a + strlen(a) + 1;
		if ((!strcmp(a, "-t") || !strcmp(a, "--tree")) && next < args + n)
			parse_uint(next, 1, INT_MAX, &pid);
		else if (!strncmp(a, "--tree=", 7))
			parse_uint(a + 7, 1, INT_MAX, &pid);
	}
	/* criu over RPC (runc, crun) has no -t: the root it dumps is CRTOOLS_INIT_PID */
	if (!pid && parse_uint(getenv("CRTOOLS_INIT_PID"), 1, INT_MAX, &pid))
		return 0;
	struct stat mine, theirs;
	char ns[64];
	snprintf(path, sizeof(path), "/proc/%d/ns/net", criu_pid());
	snprintf(ns, sizeof(ns), "/proc/%lu/ns/net", pid);
	return stat(path, &mine) == 0 && stat(ns, &theirs) == 0 && mine.st_ino != theirs.st_ino;
}

/*
 * Containers: runc and crun drive criu over RPC and reach this hook only
 * through criu's configuration file (/etc/criu/runc.conf), and podman drops
 * the environment on the way. There the hook has no STAGEGATE_*; it finds its
 * container by the 64-hex container id in its images directory's path
 * (podman: .../overlay-containers/<id>/userdata/checkpoint) and takes the
 * session, tree, tree count (and attempt, endpoint, timeout) from the line of
 * the containers file (STAGEGATE_CONTAINERS, else
 * /etc/stagegate/containers.conf) that names that id:
 *
 *   <container id, or a prefix of 12 or more> session=S tree=T trees=N [attempt=A] [endpoint=EP] [timeout=SECONDS]
 *
 * The file must be a regular file of root (or of this user), writable by no
 * one else. A container it does not name is refused (exit 2: criu aborts),
 * never waved through.
 */
#define CONTAINERS_FILE "/etc/stagegate/containers.conf"

static int is_hex_id(const char *s, size_t n) {
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return 0;
	return 1;
}

/* The container id in `dir` (a 64-hex path component), copied into id[65]; 0 when there is none. */
static int container_id_of(const char *dir, char *id) {
	for (const char *p = dir; p && *p;) {
		while (*p == '/')
			p++;
		const char *end = strchr(p, '/');
		size_t n = end ? (size_t)(end - p) : strlen(p);
		if (n == 64 && is_hex_id(p, 64)) {
			memcpy(id, p, 64);
			id[64] = '\0';
			return 1;
		}
		p = end;
	}
	return 0;
}

/* Sets STAGEGATE_* from the containers file for this hook's container. 0, or 2 (refused, said why). */
static int container_config(void) {
	if (getenv("STAGEGATE_SESSION"))
		return 0; /* told by its environment (stagegate restore/dump, or the user) */
	const char *path = getenv("STAGEGATE_CONTAINERS");
	if (!path || !*path)
		path = CONTAINERS_FILE;
	int fd = open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC);
	if (fd < 0) {
		if (errno == ENOENT && !getenv("STAGEGATE_CONTAINERS"))
			return 0; /* not a container setup: read_config says what is missing */
		log_line("cannot open the containers file %s: %s", path, strerror(errno));
		return 2;
	}
	struct stat st;
	static char buf[65536];
	ssize_t n = -1;
	if (fstat(fd, &st) || !S_ISREG(st.st_mode) || (st.st_uid != 0 && st.st_uid != geteuid()) || (st.st_mode & 022) ||
	    st.st_size >= (off_t)sizeof(buf) || (n = read(fd, buf, sizeof(buf) - 1)) < 0) {
		close(fd);
		log_line("refusing the containers file %s: it must be a regular file under 64 KiB of root (or of this user), "
			 "writable by no one else", path);
		return 2;
	}
	close(fd);
	buf[n] = '\0';
	char dir[PATH_MAX], id[65];
	const char *raw = getenv("CRTOOLS_IMAGE_DIR");
	if (!(raw && realpath(raw, dir)) && !getcwd(dir, sizeof(dir)))
		dir[0] = '\0';
	if (!container_id_of(dir, id)) {
		log_line("no STAGEGATE_SESSION, and no container id in the images directory %s: refused", dir);
		return 2;
	}
	int lineno = 0;
	for (char *save = NULL, *line = strtok_r(buf, "\n", &save); line; line = strtok_r(NULL, "\n", &save)) {
		lineno++;
		char *tok_save = NULL, *key = strtok_r(line, " \t", &tok_save);
		if (!key || *key == '#')
			continue;
		size_t klen = strlen(key);
		if (klen < 12 || klen > 64 || !is_hex_id(key, klen) || strncmp(key, id, klen) != 0)
			continue;
		static const char *const keys[][2] = {{"session", "STAGEGATE_SESSION"}, {"tree", "STAGEGATE_TREE"},
						      {"trees", "STAGEGATE_TREES"},     {"attempt", "STAGEGATE_ATTEMPT"},
						      {"endpoint", "STAGEGATE_ENDPOINT"}, {"timeout", "STAGEGATE_TIMEOUT"}};
		for (char *kv = strtok_r(NULL, " \t", &tok_save); kv; kv = strtok_r(NULL, " \t", &tok_save)) {
			char *eq = strchr(kv, '=');
			size_t k = 0;
			for (; eq && k < sizeof(keys) / sizeof(keys[0]); k++)
				if ((size_t)(eq - kv) == strlen(keys[k][0]) && !strncmp(kv, keys[k][0], (size_t)(eq - kv)))
					break;
			if (!eq || k == sizeof(keys) / sizeof(keys[0])) {
				log_line("%s line %d: unknown setting '%.64s' (known: session, tree, trees, attempt, endpoint, timeout)",
					 path, lineno, kv);
				return 2;
			}
			setenv(keys[k][1], eq + 1, 1);
		}
		if (!getenv("STAGEGATE_ENDPOINT"))
			setenv("STAGEGATE_ENDPOINT", "ipc:///run/stagegate/hooks.sock", 1);
		return 0; /* read_config checks every value */
	}
	log_line("container %.12s is not named in %s: refused (a container is coordinated only when its line says how)", id,
		 path);
	return 2;
}

/* The actions at which the hook waits for a verdict; at every other it only publishes. */
static int is_gated(Stagegate__V1__Action a) {
	return a == STAGEGATE__V1__ACTION__PRE_RESTORE || a == STAGEGATE__V1__ACTION__POST_RESTORE ||
	       a == STAGEGATE__V1__ACTION__PRE_RESUME || a == STAGEGATE__V1__ACTION__PRE_DUMP ||
	       a == STAGEGATE__V1__ACTION__NETWORK_LOCK || a == STAGEGATE__V1__ACTION__POST_DUMP;
}

int hook_gated(const char *action) { return is_gated(parse_action(action)); }

/* One run of the hook: what criu and the environment told it, and the event it sends. */
typedef struct {
	config_t cfg;
	const char *name; /* CRTOOLS_SCRIPT_ACTION */
	Stagegate__V1__Action action;
	int gated;
	int net_lock; /* pre-dump: the dumped tree has a netns of its own */
	unsigned long init_pid;
	int pinned; /* a stand-in's pidfd of the held root, else -1 */
	char run[129];
	char image_dir[PATH_MAX];
	char host[256];
	Stagegate__V1__StageEvent ev;
	Stagegate__V1__Request req;
} hook_t;


/* Reads the environment and builds the event. 0, or the exit code: 2 when
 * misconfigured, 1 when the tree cannot be guarded. */
static int build_event(hook_t *h) {
	h->name = getenv("CRTOOLS_SCRIPT_ACTION");
	if (!h->name || !*h->name) {
		log_line("CRTOOLS_SCRIPT_ACTION is not set: this program is run by criu --action-script");
		return 2;
	}
	g_action = h->name;
	if (container_config() || read_config(&h->cfg) || resolve_run(h->run, sizeof(h->run)))
		return 2;
	if (strncmp(h->cfg.endpoint, "ipc://", 6) != 0)
		hook_need_full(g_argv); /* TCP needs libzmq; returns only where this build has it or cannot hand over */
	h->action = parse_action(h->name);
	h->gated = is_gated(h->action);
	const char *commit = getenv("STAGEGATE_COMMIT");
	if (commit && *commit && !valid_name(commit)) {
		log_line("STAGEGATE_COMMIT is invalid: need 1-128 characters of [A-Za-z0-9._:-]");
		return 2;
	}
	if (h->action == STAGEGATE__V1__ACTION__PRE_DUMP)
		h->net_lock = dumps_own_netns();
	const char *ip = getenv("CRTOOLS_INIT_PID");
	if (ip && *ip && parse_uint(ip, 1, INT_MAX, &h->init_pid)) {
		log_line("CRTOOLS_INIT_PID is not a pid: '%s'", ip);
		return 2;
	}
	if (h->action == STAGEGATE__V1__ACTION__PRE_RESUME && !h->init_pid) {
		log_line("CRTOOLS_INIT_PID is not set at pre-resume: cannot guard the tree");
		return 1;
	}
	/* a stand-in for a pre-resume hook that died (see fork_guardian) */
	h->pinned = -1;
	const char *si = getenv("STAGEGATE_STAND_IN_ROOTFD");
	unsigned long pinned_fd;
	if (si && *si && h->action == STAGEGATE__V1__ACTION__PRE_RESUME && !parse_uint(si, 0, INT_MAX, &pinned_fd))
		h->pinned = (int)pinned_fd;
	/* CRTOOLS_IMAGE_DIR is /proc/<criu>/fd/<n>: resolve it while it is valid;
	 * at post-resume it no longer resolves and the cwd (criu's work dir) is used. */
	const char *raw_dir = getenv("CRTOOLS_IMAGE_DIR");
	if (!(raw_dir && realpath(raw_dir, h->image_dir)) && !getcwd(h->image_dir, sizeof(h->image_dir)))
		h->image_dir[0] = '\0';
	gethostname(h->host, sizeof(h->host) - 1);

	Stagegate__V1__StageEvent *ev = &h->ev;
	stagegate__v1__stage_event__init(ev);
	ev->protocol_version = PROTOCOL_VERSION;
	ev->session = (char *)h->cfg.session;
	ev->tree = (char *)h->cfg.tree;
	ev->action = h->action;
	ev->action_name = (char *)h->name;
	ev->init_pid = (int32_t)h->init_pid;
	ev->image_dir = h->image_dir;
	ev->host = h->host;
	ev->hook_pid = getpid();
	ev->criu_pid = criu_pid();
	ev->mono_ns = clock_ns(CLOCK_MONOTONIC);
	ev->wall_ns = clock_ns(CLOCK_REALTIME);
	ev->attempt = (uint32_t)h->cfg.attempt;
	ev->expected_trees = (uint32_t)h->cfg.trees;
	if (h->gated)
		ev->resend_ms = RESEND_MS;
	ev->resent = h->pinned >= 0;
	ev->run = h->run;
	ev->net_lock = h->net_lock;
	ev->commit = commit && *commit ? (char *)commit : "";
	stagegate__v1__request__init(&h->req);
	h->req.body_case = STAGEGATE__V1__REQUEST__BODY_EVENT;
	h->req.event = ev;
	return 0;
}

/*
 * ZeroMQ over IPC without libzmq: the ZMTP 3.0 exchange a DEALER has with the
 * daemon's ROUTER (greeting, NULL mechanism READY, then one-frame messages),
 * on a plain Unix socket. A libzmq context costs two threads and a handshake
 * across them, several times the whole cost of an action script, and CRIU
 * waits for every action script; the ROUTER cannot tell the difference.
 * libzmq is still used for TCP (CURVE).
 */
typedef struct {
	int fd;
	int shared;       /* the connection of this criu's keeper (keeper.c) */
	int in_multipart; /* inside a message of several frames (skipped) */
	size_t have;      /* bytes buffered in in[] */
	uint8_t in[MAX_FRAME + 16];
} zmtp_t;

/* The swrk driver's connection (hook_publish), kept for the whole restore; the
 * gate hooks it forks inherit it (send_event). */
static zmtp_t g_pub = {.fd = -1};
static int g_pub_connected;

static void zmtp_close(zmtp_t *z) {
	if (z->fd >= 0)
		close(z->fd);
	z->fd = -1;
	z->have = 0;
	z->shared = 0;
}

/* Reads at most `want` more bytes into z->in until `deadline`. 1 read, 0 timed
 * out, -1 closed or failed. Never more than asked: a connection this hook
 * shares with the later hooks of its criu (keeper.c) must be left at a frame
 * boundary when it exits. */
static int zmtp_fill(zmtp_t *z, size_t want, uint64_t deadline) {
	for (;;) {
		uint64_t now = clock_ns(CLOCK_MONOTONIC);
		if (now >= deadline)
			return 0;
		struct pollfd p = {.fd = z->fd, .events = POLLIN};
		int r = poll(&p, 1, (int)((deadline - now) / 1000000ull) + 1);
		if (r < 0 && errno == EINTR)
			continue;
		if (r <= 0)
			return r;
		if (z->have == sizeof(z->in) || want == 0)
			return -1;
		if (want > sizeof(z->in) - z->have)
			want = sizeof(z->in) - z->have;
		ssize_t n = read(z->fd, z->in + z->have, want);
		if (n < 0 && errno == EINTR)
			continue;
		if (n <= 0)
			return -1;
		z->have += (size_t)n;
		return 1;
	}
}

/* Connects and completes the handshake by `deadline`. 0 ready, -1 failed (`why` says why). */
static int zmtp_open(zmtp_t *z, const char *path, uint64_t deadline, const char **why) {
	struct sockaddr_un addr = {.sun_family = AF_UNIX};
	z->fd = -1;
	z->have = 0;
	z->shared = 0;
	z->in_multipart = 0;
	if (strlen(path) >= sizeof(addr.sun_path)) {
		*why = "the IPC path is too long";
		return -1;
	}
	strcpy(addr.sun_path, path);
	z->fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
	if (z->fd < 0 || connect(z->fd, (struct sockaddr *)&addr, sizeof(addr)) != 0) {
		*why = strerror(errno);
		zmtp_close(z);
		return -1;
	}
	/* greeting: signature, version 3.0, mechanism NULL, as-server 0, filler */
	uint8_t greeting[64] = {0xff, 0, 0, 0, 0, 0, 0, 0, 0, 0x7f, 3, 0, 'N', 'U', 'L', 'L'};
	/* READY with Socket-Type DEALER: a short command (flags, size, body) */
	static const uint8_t ready[] = {0x04, 28,  5,   'R', 'E', 'A', 'D', 'Y', 11,  'S', 'o', 'c', 'k', 'e', 't',
					'-',  'T', 'y', 'p', 'e', 0,   0,   0,   6,   'D', 'E', 'A', 'L', 'E', 'R'};
	_Static_assert(sizeof(ready) == 2 + 28, "READY's size byte");
	struct iovec hello[2] = {{greeting, sizeof(greeting)}, {(void *)ready, sizeof(ready)}};
	if (writev(z->fd, hello, 2) != (ssize_t)(sizeof(greeting) + sizeof(ready))) {
		*why = strerror(errno);
		zmtp_close(z);
		return -1;
	}
	/* the daemon's greeting (64 bytes), then its READY (2 + size bytes). A
	 * message must not go before it: libzmq takes one that arrives before it
	 * has sent its own READY for a bad command and drops the connection. */
	while (z->have < 66 || z->have < 66 + (size_t)z->in[65]) {
		if (zmtp_fill(z, z->have < 66 ? 66 - z->have : 66 + (size_t)z->in[65] - z->have, deadline) <= 0) {
			*why = "no ZeroMQ handshake";
			zmtp_close(z);
			return -1;
		}
	}
	if (z->in[0] != 0xff || z->in[9] != 0x7f || z->in[64] != 0x04) {
		*why = "not a ZeroMQ peer";
		zmtp_close(z);
		return -1;
	}
	size_t used = 66 + z->in[65];
	memmove(z->in, z->in + used, z->have - used);
	z->have -= used;
	return 0;
}

/* Sends one single-frame message. 0 sent, -1 failed. */
static int zmtp_send(zmtp_t *z, const uint8_t *msg, size_t len) {
	uint8_t head[9];
	size_t head_len;
	if (len <= 255) {
		head[0] = 0x00; /* last frame, short size */
		head[1] = (uint8_t)len;
		head_len = 2;
	} else {
		head[0] = 0x02; /* last frame, long size */
		for (int i = 0; i < 8; i++)
			head[1 + i] = (uint8_t)((uint64_t)len >> (56 - 8 * i));
		head_len = 9;
	}
	struct iovec iov[2] = {{head, head_len}, {(void *)msg, len}};
	/* no SIGPIPE from a daemon that closed the connection: the caller connects again */
	struct msghdr m = {.msg_iov = iov, .msg_iovlen = 2};
	return sendmsg(z->fd, &m, MSG_NOSIGNAL) == (ssize_t)(head_len + len) ? 0 : -1;
}

/* Whether `a` is an action criu runs its action scripts for (from its own
 * process, one after another: measured with criu 4.2.1, setup-namespaces
 * included), whose hooks may share a kept connection (keeper.c); not the
 * actions only RPC sends, nor an unknown one. */
static int keepable(Stagegate__V1__Action a) {
	switch (a) {
	case STAGEGATE__V1__ACTION__PRE_RESTORE:
	case STAGEGATE__V1__ACTION__SETUP_NAMESPACES:
	case STAGEGATE__V1__ACTION__POST_SETUP_NAMESPACES:
	case STAGEGATE__V1__ACTION__POST_RESTORE:
	case STAGEGATE__V1__ACTION__PRE_RESUME:
	case STAGEGATE__V1__ACTION__POST_RESUME:
	case STAGEGATE__V1__ACTION__PRE_DUMP:
	case STAGEGATE__V1__ACTION__NETWORK_LOCK:
	case STAGEGATE__V1__ACTION__POST_DUMP:
	case STAGEGATE__V1__ACTION__NETWORK_UNLOCK:
		return 1;
	default:
		return 0;
	}
}

/* Takes this criu's kept connection (keeper.c) instead of connecting: 0 taken. */
static int zmtp_take(zmtp_t *z, const char *path, Stagegate__V1__Action a) {
	if (g_criu || !keepable(a)) /* forked by the swrk driver: its own connection serves (g_pub) */
		return -1;
	int fd = keeper_take(criu_pid(), path);
	if (fd < 0)
		return -1;
	z->fd = fd;
	z->have = 0;
	z->in_multipart = 0;
	z->shared = 1;
	return 0;
}

/* Leaves a new connection (just opened by this hook) to a keeper for the
 * later hooks of this criu, unless this action is its criu's last. */
static void zmtp_keep(const zmtp_t *z, Stagegate__V1__Action a) {
	if (g_criu || z->fd < 0 || z->shared || !keepable(a) || a == STAGEGATE__V1__ACTION__POST_RESUME ||
	    a == STAGEGATE__V1__ACTION__NETWORK_UNLOCK)
		return;
	keeper_start(criu_pid(), z->fd);
}

/* Connects, sends one message and closes, all by `timeout_ms`. 0 sent, -1 not
 * (`why` says why). `keep` is the hook's action: where criu's hooks share a
 * connection (keepable), the message goes on the kept one if there is one,
 * and a new connection is left to a keeper (unless `keep` is criu's last). */
static int zmtp_deliver_as(const char *path, const uint8_t *msg, size_t len, int timeout_ms, Stagegate__V1__Action keep,
			   const char **why) {
	static zmtp_t z;
	if (zmtp_take(&z, path, keep) == 0) {
		int sent = zmtp_send(&z, msg, len) == 0;
		zmtp_close(&z);
		if (sent)
			return 0;
		/* the keeper's connection is gone (a restarted daemon): a new one, and a new keeper */
	}
	uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + (uint64_t)timeout_ms * 1000000ull;
	int ok = zmtp_open(&z, path, deadline, why) == 0;
	if (ok && zmtp_send(&z, msg, len) != 0) {
		*why = strerror(errno);
		ok = 0;
	}
	if (ok)
		zmtp_keep(&z, keep);
	zmtp_close(&z);
	return ok ? 0 : -1;
}

static int zmtp_deliver(const char *path, const uint8_t *msg, size_t len, int timeout_ms, const char **why) {
	return zmtp_deliver_as(path, msg, len, timeout_ms, STAGEGATE__V1__ACTION__ACTION_UNSPECIFIED, why);
}

/* The next message by `deadline` (commands skipped; a message of several
 * frames is not one the daemon sends a hook). Its length, 0 timed out, -1
 * closed or failed; the body is copied to `out`. */
static long zmtp_recv(zmtp_t *z, uint8_t *out, size_t cap, uint64_t deadline) {
	for (;;) {
		/* how much of the stream the current frame takes: its header (flags, then a
		 * 1- or 8-byte size) until that is in, then header and body */
		size_t need = z->have >= 1 && (z->in[0] & 0x02) ? 9 : 2;
		if (z->have >= need) {
			size_t head = need;
			uint64_t size = 0;
			if (head == 9)
				for (int i = 0; i < 8; i++)
					size = size << 8 | z->in[1 + i];
			else
				size = z->in[1];
			if (size > cap || size > sizeof(z->in) - head)
				return -1;
			if (z->have >= head + size) {
				int command = z->in[0] & 0x04, more = z->in[0] & 0x01;
				/* a lone frame is a message; the frames of a longer one are skipped */
				int whole = !command && !more && !z->in_multipart;
				if (!command)
					z->in_multipart = more;
				if (whole)
					memcpy(out, z->in + head, size);
				memmove(z->in, z->in + head + size, z->have - head - size);
				z->have -= head + size;
				if (whole)
					return (long)size;
				continue;
			}
			need = head + (size_t)size;
		}
		/* exactly the rest of this frame: see zmtp_fill */
		int r = zmtp_fill(z, need - z->have, deadline);
		if (r <= 0)
			return r;
	}
}

/* The hook's one connection to the coordinator: raw ZMTP over IPC, libzmq over TCP. */
typedef struct {
	zmtp_t *ipc; /* NULL on TCP */
	uint64_t deadline; /* IPC: when the hook gives up, from its first connect (CLOCK_MONOTONIC) */
	void *ctx, *sock;
	seal_t seal;
	int timeout_ms;
} conn_t;

/* Connects and sends the event. 0 sent; 1 no socket (the action need not
 * wait: nothing lost); -1 failed (the reason logged). */
static int send_event(hook_t *h, conn_t *c) {
	c->timeout_ms = (int)(h->cfg.timeout_s * 1000.0);
	if (c->timeout_ms < 1)
		c->timeout_ms = 1;
	/* Fire-and-forget actions must never hold CRIU up: give delivery a short,
	 * bounded linger and drop the event if the coordinator is not there. */
	int linger = h->gated ? 0 : (c->timeout_ms < 250 ? c->timeout_ms : 250);
	if (strncmp(h->cfg.endpoint, "ipc://", 6) == 0) {
		/* a plain Request: seals are for CURVE (c->seal is off) */
		static uint8_t frame[MAX_FRAME];
		size_t len = pack_frame(&h->req, &c->seal, frame, sizeof(frame));
		if (!len) {
			log_line("event too large for one frame");
			return -1;
		}
		if (check_endpoint(h->cfg.endpoint))
			return -1;
		const char *why = "";
		/* a stand-in (its parent is not criu) connects on its own */
		Stagegate__V1__Action keep = h->pinned < 0 ? h->action : STAGEGATE__V1__ACTION__ACTION_UNSPECIFIED;
		if (!h->gated) {
			if (zmtp_deliver_as(h->cfg.endpoint + 6, frame, len, linger, keep, &why) == 0)
				return 0;
			/* no coordinator there: the event is dropped (said in criu's log), the action goes on */
			log_line("event not delivered to %s: %s", h->cfg.endpoint, why);
			return 1;
		}
		static zmtp_t z;
		c->ipc = &z;
		/* one deadline for the whole wait: a daemon that accepts but never answers
		 * the handshake must not make the hook wait its timeout twice */
		c->deadline = clock_ns(CLOCK_MONOTONIC) + (uint64_t)c->timeout_ms * 1000000ull;
		if (g_pub_connected && g_pub.fd >= 0) {
			/* forked by the swrk driver: its connection, open and idle while criu waits
			 * for this gate, carries the request (no connect, no handshake, one
			 * connection per restore for the daemon); a failure falls back to a new one */
			z = g_pub;
			g_pub_connected = 0;
			if (zmtp_send(&z, frame, len) == 0)
				return 0;
			zmtp_close(&z);
		}
		/* the connection kept for this criu's hooks (keeper.c): no connect, no handshake */
		if (zmtp_take(&z, h->cfg.endpoint + 6, keep) == 0) {
			if (zmtp_send(&z, frame, len) == 0)
				return 0;
			zmtp_close(&z);
		}
		if (zmtp_open(&z, h->cfg.endpoint + 6, c->deadline, &why) != 0 || zmtp_send(&z, frame, len) != 0)
			zmtp_close(&z); /* not there yet: await_verdict connects again until the deadline, as ZeroMQ would */
		else
			zmtp_keep(&z, keep);
		return 0;
	}
	if (zmq_load()) {
		log_line("cannot load libzmq: %s", zmq_load_error());
		return h->gated ? -1 : 1;
	}
	c->ctx = zmq_ctx_new();
	c->sock = c->ctx ? zmq_socket(c->ctx, ZMQ_DEALER) : NULL;
	if (!c->sock) {
		log_line("cannot create a ZeroMQ socket: %s", zmq_strerror(zmq_errno()));
		return h->gated ? -1 : 1;
	}
	zmq_setsockopt(c->sock, ZMQ_LINGER, &linger, sizeof(linger));
	zmq_setsockopt(c->sock, ZMQ_SNDTIMEO, &c->timeout_ms, sizeof(c->timeout_ms));
	int64_t maxmsg = MAX_FRAME;
	zmq_setsockopt(c->sock, ZMQ_MAXMSGSIZE, &maxmsg, sizeof(maxmsg));
	if (setup_curve(c->sock, h->cfg.endpoint, &c->seal))
		return -1;
	static uint8_t buf[MAX_FRAME];
	size_t len = pack_frame(&h->req, &c->seal, buf, sizeof(buf));
	if (!len) {
		log_line("event too large for one frame");
		return -1;
	}
	if (check_endpoint(h->cfg.endpoint))
		return -1;
	if (zmq_connect(c->sock, h->cfg.endpoint) != 0) {
		log_line("cannot connect to '%s': %s", h->cfg.endpoint, zmq_strerror(zmq_errno()));
		return -1;
	}
	if (zmq_send(c->sock, buf, len, 0) < 0) {
		log_line("cannot send to %s: %s", h->cfg.endpoint, zmq_strerror(zmq_errno()));
		return -1;
	}
	return 0;
}

/* Waits for this event's verdict, re-sending it every RESEND_MS. NULL when
 * there is none (timeout, bad reply: the reason logged). */
static Stagegate__V1__Verdict *await_verdict_ipc(hook_t *h, conn_t *c);
static Stagegate__V1__Verdict *verdict_of(hook_t *h, const uint8_t *in, size_t len, int torn_ok, int *fatal);

static Stagegate__V1__Verdict *await_verdict(hook_t *h, conn_t *c) {
	if (c->ipc)
		return await_verdict_ipc(h, c);
	zmq_pollitem_t item = {.socket = c->sock, .events = ZMQ_POLLIN};
	uint64_t deadline = clock_ns(CLOCK_MONOTONIC) + (uint64_t)c->timeout_ms * 1000000ull;
	uint64_t resend = clock_ns(CLOCK_MONOTONIC) + RESEND_MS * 1000000ull;
	static uint8_t again[MAX_FRAME], in[MAX_FRAME];
	h->ev.resent = 1;
	for (;;) {
		uint64_t now = clock_ns(CLOCK_MONOTONIC);
		if (now >= deadline) {
			log_line("no verdict from the coordinator at %s within %.3gs (session %s, tree %s): aborting",
				 h->cfg.endpoint, h->cfg.timeout_s, h->cfg.session, h->cfg.tree);
			return NULL;
		}
		if (now >= resend) {
			/* packed anew: on CURVE every frame carries a fresh, single-use seal */
			size_t again_len = pack_frame(&h->req, &c->seal, again, sizeof(again));
			if (again_len)
				zmq_send(c->sock, again, again_len, ZMQ_DONTWAIT);
			resend = now + RESEND_MS * 1000000ull;
		}
		uint64_t until = deadline < resend ? deadline : resend;
		int r = zmq_poll(&item, 1, (long)((until - now) / 1000000ull) + 1);
		if (r < 0 && zmq_errno() == EINTR)
			continue;
		if (r < 0) {
			log_line("poll failed: %s", zmq_strerror(zmq_errno()));
			return NULL;
		}
		if (r == 0)
			continue;
		int got = zmq_recv(c->sock, in, sizeof(in), ZMQ_DONTWAIT);
		if (got < 0)
			continue;
		if (got > (int)sizeof(in)) {
			log_line("oversized reply (%d bytes) from the coordinator: aborting", got);
			return NULL;
		}
		int fatal;
		Stagegate__V1__Verdict *v = verdict_of(h, in, (size_t)got, 0, &fatal);
		if (v || fatal)
			return v;
	}
}

/* A reply that answers this hook, or NULL (logged, *fatal set) or stale (NULL,
 * *fatal 0). With `torn_ok` (a connection shared with earlier hooks, which one
 * of them may have left inside a frame), an undecodable reply is not fatal:
 * NULL, *fatal 2, and the caller connects anew. */
static Stagegate__V1__Verdict *verdict_of(hook_t *h, const uint8_t *in, size_t len, int torn_ok, int *fatal) {
	*fatal = 1;
	Stagegate__V1__Verdict *v = stagegate__v1__verdict__unpack(NULL, len, in);
	if (!v && torn_ok) {
		log_line("undecodable reply on the connection kept for this criu's hooks: connecting anew");
		*fatal = 2;
		return NULL;
	}
	if (!v) {
		log_line("undecodable reply from the coordinator: aborting");
		return NULL;
	}
	if (v->protocol_version != PROTOCOL_VERSION) {
		log_line("coordinator speaks protocol %u, this hook %u: aborting", v->protocol_version, PROTOCOL_VERSION);
		stagegate__v1__verdict__free_unpacked(v, NULL);
		return NULL;
	}
	if (strcmp(v->session, h->cfg.session) || strcmp(v->tree, h->cfg.tree) || v->action != h->action) {
		*fatal = 0; /* not ours (stale reply): keep waiting for the right one */
		stagegate__v1__verdict__free_unpacked(v, NULL);
		return NULL;
	}
	return v;
}

/* await_verdict over IPC: re-sends every RESEND_MS on the same connection;
 * a connection the daemon closed (restarted) is opened again, as ZeroMQ would. */
static Stagegate__V1__Verdict *await_verdict_ipc(hook_t *h, conn_t *c) {
	zmtp_t *z = c->ipc;
	uint64_t deadline = c->deadline;
	uint64_t resend = clock_ns(CLOCK_MONOTONIC) + RESEND_MS * 1000000ull;
	/* the frames sent from now on say they are re-sends */
	h->ev.resent = 1;
	static uint8_t again[MAX_FRAME], in[MAX_FRAME];
	size_t again_len = pack_frame(&h->req, &c->seal, again, sizeof(again));
	if (!again_len)
		return NULL;
	for (;;) {
		uint64_t now = clock_ns(CLOCK_MONOTONIC);
		if (now >= deadline) {
			log_line("no verdict from the coordinator at %s within %.3gs (session %s, tree %s): aborting",
				 h->cfg.endpoint, h->cfg.timeout_s, h->cfg.session, h->cfg.tree);
			return NULL;
		}
		if (z->fd < 0) {
			/* not connected: try again every 100 ms (ZeroMQ's reconnect interval) */
			const char *why;
			uint64_t until = now + 100 * 1000000ull < deadline ? now + 100 * 1000000ull : deadline;
			if (zmtp_open(z, h->cfg.endpoint + 6, until, &why) == 0 && zmtp_send(z, again, again_len) == 0) {
				resend = clock_ns(CLOCK_MONOTONIC) + RESEND_MS * 1000000ull;
			} else {
				zmtp_close(z);
				uint64_t after = clock_ns(CLOCK_MONOTONIC);
				if (after < until) {
					struct timespec pause = {0, (long)(until - after)};
					nanosleep(&pause, NULL);
				}
			}
			continue;
		}
		if (now >= resend) {
			if (zmtp_send(z, again, again_len) != 0)
				zmtp_close(z);
			resend = now + RESEND_MS * 1000000ull;
			continue;
		}
		long got = zmtp_recv(z, in, sizeof(in), deadline < resend ? deadline : resend);
		if (got < 0) {
			zmtp_close(z); /* closed (a restarting daemon), or a torn frame: connect again */
			continue;
		}
		if (got == 0)
			continue;
		int fatal;
		Stagegate__V1__Verdict *v = verdict_of(h, in, (size_t)got, z->shared, &fatal);
		if (fatal == 2) {
			zmtp_close(z); /* then a connection of its own, and the event again */
			continue;
		}
		if (v || fatal)
			return v;
	}
}

/* The abort: at pre-resume the hook kills the restored tree itself (criu only
 * logs a failed pre-resume script and would resume it); at post-restore and
 * pre-restore the exit code 1 makes criu kill or not restore it. */
static int abort_tree(hook_t *h) {
	note_abort();
	if (h->action != STAGEGATE__V1__ACTION__PRE_RESUME)
		return 1;
	if (!owns_tree((pid_t)h->init_pid, h->pinned)) {
		log_line("restored root %lu is not a child of criu %d: not killing it", h->init_pid, criu_pid());
		return 1;
	}
	int k = signal_tree((pid_t)h->init_pid, SIGKILL);
	if (k >= 0) {
		log_line("killed %d task(s) of the restored tree rooted at %lu before they ran", k, h->init_pid);
		if (h->pinned < 0) /* a stand-in's parent is not criu */
			watch_criu(criu_pid());
	}
	return 1;
}

/* Sends the event and, at a gate, waits for the verdict: 0 proceed, 1 aborted. */
static int pass_gate(hook_t *h, conn_t *c, int guards) {
	int sent = send_event(h, c);
	if (sent > 0)
		return 0;
	if (sent < 0)
		return abort_tree(h);
	if (!h->gated)
		return 0;
	/* Safety net at pre-resume: a pending SIGSTOP keeps the tree from running
	 * user code if this hook dies while waiting (criu would only log the failed
	 * script and resume the tree). PROCEED sends SIGCONT, which discards it. */
	int held = h->pinned >= 0; /* a stand-in: its predecessor's SIGSTOP holds the tree */
	if (guards && h->action == STAGEGATE__V1__ACTION__PRE_RESUME)
		held = signal_tree((pid_t)h->init_pid, SIGSTOP) > 0;
	Stagegate__V1__Verdict *v = await_verdict(h, c);
	if (!v)
		return abort_tree(h);
	int proceed = v->decision == STAGEGATE__V1__DECISION__PROCEED;
	if (proceed) {
		if (held)
			signal_tree((pid_t)h->init_pid, SIGCONT);
		if (h->action == STAGEGATE__V1__ACTION__PRE_RESUME)
			mark_released();
		if (h->action == STAGEGATE__V1__ACTION__POST_DUMP)
			mark_committed(v);
	} else {
		log_line("coordinator aborted session %s attempt %u at tree %s: [%s] %s", h->cfg.session, v->attempt,
			 h->cfg.tree, v->code && *v->code ? v->code : "E_ABORT",
			 v->reason && *v->reason ? v->reason : "no reason given");
	}
	stagegate__v1__verdict__free_unpacked(v, NULL);
	return proceed ? 0 : abort_tree(h);
}

int hook_main(void) {
	static hook_t h;
	int rc = build_event(&h);
	if (rc)
		return rc;
	/* A hook waiting with a restored tree guards it (guardian; at pre-resume
	 * also the SIGSTOP hold) when the root is its criu's child; a stand-in's
	 * tree is already held. Forked before any ZeroMQ state exists: forking
	 * with a context is unsafe. */
	int guards = (h.action == STAGEGATE__V1__ACTION__PRE_RESUME || h.action == STAGEGATE__V1__ACTION__POST_RESTORE) &&
		     h.init_pid && h.pinned < 0 && is_child_of((pid_t)h.init_pid, criu_pid());
	pid_t guardian = -1;
	int guard = -1;
	g_cfg = &h.cfg;
	g_req = &h.req;
	/* the guardian may have to speak for the hook: over TCP, libzmq is loaded before the fork */
	if (guards && (strncmp(h.cfg.endpoint, "ipc://", 6) == 0 || !zmq_load()))
		guard = fork_guardian(h.action, (pid_t)h.init_pid, &guardian);
	conn_t c = {0};
	rc = pass_gate(&h, &c, guards);
	if (guard >= 0) {
		/* done: the guardian exits, and is reaped here rather than left to criu */
		ssize_t w = write(guard, "d", 1);
		(void)w;
		close(guard);
		waitpid(guardian, NULL, 0);
	}
	if (c.ipc)
		zmtp_close(c.ipc);
	if (c.sock)
		zmq_close(c.sock);
	if (c.ctx)
		zmq_ctx_term(c.ctx);
	return rc;
}

/* Opens the driver's connection to the IPC `endpoint` (a trusted directory, 250 ms at most). */
static int pub_open(const char *endpoint) {
	const char *why;
	if (check_endpoint(endpoint) ||
	    zmtp_open(&g_pub, endpoint + 6, clock_ns(CLOCK_MONOTONIC) + 250 * 1000000ull, &why) != 0)
		return -1;
	g_pub_connected = 1;
	return 0;
}

int hook_publish(void) {
	static hook_t h;
	zmtp_t *const z = &g_pub;
	static uint8_t frame[MAX_FRAME];
	if (build_event(&h) || h.gated || strncmp(h.cfg.endpoint, "ipc://", 6) != 0)
		return -1;
	const seal_t plain = {0}; /* seals are for CURVE */
	size_t len = pack_frame(&h.req, &plain, frame, sizeof(frame));
	if (!len)
		return -1;
	/* one connection for every stage of the restore; opened again once if the daemon closed it */
	for (int attempt = 0; attempt < 2; attempt++) {
		if (!g_pub_connected && pub_open(h.cfg.endpoint))
			return -1;
		if (zmtp_send(z, frame, len) == 0)
			return 0;
		zmtp_close(z);
		g_pub_connected = 0;
	}
	return -1;
}

int hook_connect(void) {
	const char *ep = getenv("STAGEGATE_ENDPOINT");
	if (g_pub_connected || !ep || strncmp(ep, "ipc://", 6) != 0)
		return -1;
	g_quiet = 1; /* a bad endpoint is for the hooks to say, in criu's log */
	int rc = pub_open(ep);
	g_quiet = 0;
	return rc;
}

int hook_valid_name(const char *s) { return s && valid_name(s); }

int hook_parse_uint(const char *s, unsigned long min, unsigned long max, unsigned long *out) {
	return parse_uint(s, min, max, out);
}

int hook_config_ok(void) {
	config_t c;
	g_quiet = 1;
	int ok = read_config(&c) == 0;
	g_quiet = 0;
	return ok;
}

void hook_report_failure(const char *reason) {
	static hook_t h;
	const char *was = getenv("CRTOOLS_SCRIPT_ACTION");
	setenv("CRTOOLS_SCRIPT_ACTION", "restore-failed", 1);
	unsetenv("CRTOOLS_INIT_PID");
	if (build_event(&h) == 0) {
		g_cfg = &h.cfg;
		g_req = &h.req;
		report_failure(reason);
	}
	if (was)
		setenv("CRTOOLS_SCRIPT_ACTION", was, 1);
}

void hook_report_dump_failure(const char *reason) {
	g_dump_failed = 1;
	hook_report_failure(reason);
	g_dump_failed = 0;
}

/* The one naming rule of the two builds: the dynamic one is the static one's path + "-full". */
#define FULL_SUFFIX "-full"

int hook_build_path(int full, char *out, size_t cap) {
	ssize_t n = readlink("/proc/self/exe", out, cap);
	if (n <= 0 || (size_t)n >= cap)
		return -1;
	size_t suffix = sizeof(FULL_SUFFIX) - 1;
	int is_full = (size_t)n > suffix && memcmp(out + n - suffix, FULL_SUFFIX, suffix) == 0;
	if (is_full && !full)
		n -= (ssize_t)suffix;
	else if (!is_full && full) {
		if ((size_t)n + suffix >= cap)
			return -1;
		memcpy(out + n, FULL_SUFFIX, suffix);
		n += (ssize_t)suffix;
	}
	out[n] = '\0';
	return 0;
}

void hook_need_full(char **argv) {
#ifdef STAGEGATE_STATIC
	char full[PATH_MAX];
	int ok = hook_build_path(1, full, sizeof(full)) == 0;
	if (ok)
		execv(full, argv);
	log_line("cannot run %s: %s", ok ? full : "stagegate-hook-full", strerror(errno));
#else
	(void)argv;
#endif
}

/* criu runs the hook with no arguments; `stagegate restore` runs it as `stagegate-hook restore ...`. */
int main(int argc, char **argv) {
	g_argv = argv;
	if (argc > 1 && strcmp(argv[1], "restore") == 0)
		return swrk_restore(argc, argv);
	if (argc > 1 && strcmp(argv[1], "dump") == 0)
		return dump_tree(argc, argv);
	return hook_main();
}
