/*
 * `stagegate restore` without a shell and an exec per stage: drives `criu
 * swrk` over CRIU's RPC (proto/criu/rpc.proto) with notify_scripts, so that
 * criu sends each action-script stage as a NOTIFY and waits for the reply,
 * instead of running a shell and the hook for every one. At a gate it forks
 * the hook's own code (hook_main: no exec, no library to load) with the
 * CRTOOLS_* criu would have set, and replies with its outcome; the hook's
 * gates, guardian, SIGSTOP hold and abort note all work as under `criu
 * restore --action-script`. The other stages' events it publishes itself
 * (hook_publish) and replies at once, over one IPC connection that the gate
 * hooks it forks inherit for their requests. Afterwards it does what src/criu/restore.ts does
 * after criu: reports a failed restore, kills what a killed criu left
 * behind, stands in at the resume barrier for a hook that died there.
 *
 * The user's criu arguments go to criu unchanged, in a configuration file
 * (CriuOpts.config_file) that criu parses with its own option parser. What
 * this path cannot express goes to the Node CLI instead (src/criu/restore.ts,
 * `criu restore --action-script`), which also says what is wrong with bad
 * options: a restore criu would not detach (RPC restores always detach),
 * the user's own action scripts (criu refuses them beside RPC notification),
 * an argument its configuration syntax cannot hold. `restore --set` is
 * set-restore.c's: it checks the set and runs this driver once per tree.
 *
 * It is C because it is the documented restore command: a Node.js start
 * alone costs more than the budget of a whole restore (issue #11).
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <spawn.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/syscall.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>

#include "hook.h"
#include "rpc.pb-c.h"

#define MAX_RPC 65536
#define MAX_CRIU_ARGS 4096

void hook_sayv(const char *command, const char *fmt, va_list ap) {
	char line[4096];
	int p = snprintf(line, sizeof(line), "stagegate %s: ", command);
	size_t n = p < 0 ? 0 : (size_t)p;
	int k = vsnprintf(line + n, sizeof(line) - n - 1, fmt, ap);
	n = k < 0 ? n : n + (size_t)k < sizeof(line) - 1 ? n + (size_t)k : sizeof(line) - 2;
	line[n++] = '\n';
	ssize_t w = write(STDERR_FILENO, line, n);
	(void)w;
}

static void say(const char *fmt, ...) __attribute__((format(printf, 1, 2)));
static void say(const char *fmt, ...) {
	va_list ap;
	va_start(ap, fmt);
	hook_sayv("restore", fmt, ap);
	va_end(ap);
}

int hook_project_root(char *out, size_t cap) {
	ssize_t n = readlink("/proc/self/exe", out, cap - 1);
	if (n <= 0)
		return -1;
	out[n] = '\0';
	for (int up = 0; up < 2; up++) {
		char *slash = strrchr(out, '/');
		if (!slash || slash == out)
			return -1;
		*slash = '\0';
	}
	return 0;
}

int hook_node_cli(char **argv) {
	char root[PATH_MAX], cli[PATH_MAX + 32];
	if (hook_project_root(root, sizeof(root))) {
		fprintf(stderr, "stagegate %s: cannot find the stagegate checkout from /proc/self/exe\n", argv[1]);
		return 2;
	}
	snprintf(cli, sizeof(cli), "%s/bin/stagegate", root);
	setenv("STAGEGATE_NO_SWRK", "1", 1);
	argv[0] = cli;
	execv(cli, argv);
	fprintf(stderr, "stagegate %s: cannot run %s: %s\n", argv[1], cli, strerror(errno));
	return 2;
}

static const char *const OPTIONS[][2] = {{"session", "STAGEGATE_SESSION"}, {"tree", "STAGEGATE_TREE"},
					  {"trees", "STAGEGATE_TREES"},     {"endpoint", "STAGEGATE_ENDPOINT"},
					  {"attempt", "STAGEGATE_ATTEMPT"}, {"timeout", "STAGEGATE_TIMEOUT"}};
#define N_OPTIONS (sizeof(OPTIONS) / sizeof(OPTIONS[0]))

int hook_tree_options(int argc, char **argv, int *full_checksum) {
	int i = 2;
	for (; i < argc; i++) {
		const char *a = argv[i];
		if (strcmp(a, "--") == 0)
			break;
		if (strncmp(a, "--", 2) != 0)
			return 0;
		a += 2;
		if (full_checksum && strcmp(a, "full-checksum") == 0) {
			*full_checksum = 1;
			continue;
		}
		size_t k = 0, len = strcspn(a, "=");
		while (k < N_OPTIONS && !(strlen(OPTIONS[k][0]) == len && strncmp(a, OPTIONS[k][0], len) == 0))
			k++;
		if (k == N_OPTIONS)
			return 0; /* --set, --help, or one the CLI rejects */
		const char *value = a[len] == '=' ? a + len + 1 : (i + 1 < argc ? argv[++i] : NULL);
		if (!value)
			return 0;
		setenv(OPTIONS[k][1], value, 1);
	}
	if (i >= argc)
		return 0;
	return restore_env_ok() ? i + 1 : 0;
}

int restore_env_ok(void) {
	/* under a launcher: one tree per rank */
	const char *rank = getenv("PMI_RANK") ? getenv("PMI_RANK") : getenv("SLURM_PROCID");
	if (!getenv("STAGEGATE_TREE") && rank) {
		char tree[160];
		snprintf(tree, sizeof(tree), "rank%s", rank);
		setenv("STAGEGATE_TREE", tree, 1);
	}
	const char *size = getenv("PMI_SIZE") ? getenv("PMI_SIZE") : getenv("SLURM_NTASKS");
	if (!getenv("STAGEGATE_TREES") && size)
		setenv("STAGEGATE_TREES", size, 1);
	if (!getenv("STAGEGATE_TIMEOUT"))
		setenv("STAGEGATE_TIMEOUT", "60", 1);
	if (!getenv("STAGEGATE_ENDPOINT")) {
		char ep[PATH_MAX + 32];
		const char *dir = getenv("STAGEGATE_RUNTIME_DIR");
		if (dir)
			snprintf(ep, sizeof(ep), "ipc://%s/hooks.sock", dir);
		else if (geteuid() == 0)
			snprintf(ep, sizeof(ep), "ipc:///run/stagegate/hooks.sock");
		else
			snprintf(ep, sizeof(ep), "ipc://%s/stagegate-%u/hooks.sock",
				 getenv("XDG_RUNTIME_DIR") ? getenv("XDG_RUNTIME_DIR") : "/tmp", (unsigned)geteuid());
		setenv("STAGEGATE_ENDPOINT", ep, 1);
	}
	return hook_config_ok();
}

/* What the criu arguments say, as far as this path needs to know, and the
 * lines of criu's configuration file that say the same. */
typedef struct {
	const char *images; /* -D */
	const char *work;   /* -W */
	const char *log;    /* -o */
	int log_level;
	int detached;
	char *lines[MAX_CRIU_ARGS]; /* "name" or "name=value": criu prefixes "--" */
	int n;
} criu_args_t;

/* criu's short options (its short_opts) and their long names; ':' after the
 * letter takes a value, '?' an optional one (only in the same word). */
static const struct {
	char letter, arg;
	const char *name;
} SHORT[] = {{'d', 0, "restore-detached"}, {'S', 0, "restore-sibling"}, {'s', 0, "leave-stopped"},
	     {'R', 0, "leave-running"},    {'t', ':', "tree"},           {'D', ':', "images-dir"},
	     {'o', ':', "log-file"},       {'v', '?', "verbosity"},      {'x', '?', "ext-unix-sk"},
	     {'r', ':', "root"},           {'j', 0, "shell-job"},        {'J', ':', "join-ns"},
	     {'l', 0, "file-locks"},       {'W', ':', "work-dir"},       {'L', ':', "libdir"},
	     {'M', ':', "ext-mount-map"}};

/* A word criu's configuration syntax holds as it is: no blanks, quotes, backslashes or comment. */
static int plain_word(const char *w) { return *w && w[0] != '#' && !strpbrk(w, " \t\n\r\v\f\"'\\"); }

static int add_line(criu_args_t *c, const char *name, const char *value) {
	if (c->n == MAX_CRIU_ARGS || !plain_word(name) || (value && !plain_word(value)))
		return -1;
	if (asprintf(&c->lines[c->n], value ? "%s=%s" : "%s", name, value) < 0)
		return -1;
	c->n++;
	/* what RPC cannot carry (criu refuses action scripts beside notifications, ...),
	 * then the options this path reads; getopt takes an unambiguous prefix of a
	 * long name for the name, so a prefix of any of them goes to the Node CLI */
	static const char *const refused[] = {"action-script", "config", "no-default-config", "exec-cmd", "status-fd", "help",
					      "version", "no-restore-detached", "no-daemon"};
	static const char *const read[] = {"restore-detached", "daemon", "images-dir", "work-dir", "log-file", "verbosity"};
	for (size_t k = 0; k < sizeof(refused) / sizeof(refused[0]); k++)
		if (strncmp(refused[k], name, strlen(name)) == 0)
			return -1;
	for (size_t k = 0; k < sizeof(read) / sizeof(read[0]); k++)
		if (strncmp(read[k], name, strlen(name)) == 0 && strcmp(read[k], name) != 0)
			return -1;
	if (!strcmp(name, "restore-detached") || !strcmp(name, "daemon"))
		c->detached = 1;
	else if (!strcmp(name, "images-dir"))
		c->images = value;
	else if (!strcmp(name, "work-dir"))
		c->work = value;
	else if (!strcmp(name, "log-file"))
		c->log = value;
	else if (!strcmp(name, "verbosity"))
		c->log_level = !value ? c->log_level + 1 : value[0] == 'v' ? c->log_level + (int)strlen(value) + 1 : atoi(value);
	return 0;
}

/* Reads the criu arguments as criu's getopt would; 0 when this path can pass them on. */
static int read_criu_args(char **args, int n, criu_args_t *c) {
	memset(c, 0, sizeof(*c));
	c->log_level = 2; /* criu's default */
	for (int i = 0; i < n; i++) {
		const char *a = args[i];
		if (a[0] != '-' || !a[1] || !strcmp(a, "--"))
			return -1; /* criu restore takes no operands */
		if (a[1] == '-') {
			const char *eq = strchr(a, '=');
			char name[128];
			size_t len = eq ? (size_t)(eq - a - 2) : strlen(a + 2);
			if (len == 0 || len >= sizeof(name))
				return -1;
			memcpy(name, a + 2, len);
			name[len] = '\0';
			/* "--name value": criu restore takes no operands, so a word that is
			 * not an option is this option's value (getopt would take it so) */
			const char *value = eq ? eq + 1 : (i + 1 < n && args[i + 1][0] != '-' ? args[++i] : NULL);
			if (add_line(c, name, value))
				return -1;
			continue;
		}
		for (const char *p = a + 1; *p; p++) {
			size_t k = 0;
			while (k < sizeof(SHORT) / sizeof(SHORT[0]) && SHORT[k].letter != *p)
				k++;
			if (k == sizeof(SHORT) / sizeof(SHORT[0]))
				return -1; /* -h, -V, or unknown: the Node CLI runs criu itself */
			const char *value = NULL;
			if (SHORT[k].arg && p[1])
				value = p + 1;
			else if (SHORT[k].arg == ':' && (value = i + 1 < n ? args[++i] : NULL) == NULL)
				return -1;
			if (add_line(c, SHORT[k].name, value))
				return -1;
			if (value)
				break;
		}
	}
	return c->detached ? 0 : -1;
}

int hook_criu_path(char *out, size_t cap) {
	char root[PATH_MAX];
	const char *set = getenv("STAGEGATE_CRIU");
	if (set && *set)
		snprintf(out, cap, "%s", set);
	else if (!hook_project_root(root, sizeof(root)))
		snprintf(out, cap, "%s/.criu/bin/criu", root);
	else
		return -1;
	return access(out, X_OK);
}

int hook_new_run(char run[40]) {
	memcpy(run, "sg-", 3);
	int fd = open("/proc/sys/kernel/random/uuid", O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, run + 3, 36) : -1;
	if (fd >= 0)
		close(fd);
	run[n == 36 ? 39 : 3] = '\0';
	return n == 36 ? 0 : -1;
}

int hook_criu_exit(int status, char *why, size_t cap) {
	if (WIFSIGNALED(status)) {
		const char *name = sigabbrev_np(WTERMSIG(status));
		snprintf(why, cap, "criu killed by SIG%s", name ? name : "?");
		return 128 + WTERMSIG(status);
	}
	int code = WIFEXITED(status) ? WEXITSTATUS(status) : 1;
	snprintf(why, cap, "criu exited with %d", code);
	return code;
}

/* One message from criu (any fds it passes are closed); its length, -1 when criu is gone. */
static ssize_t rpc_recv(int sk, uint8_t *buf, size_t cap) {
	union {
		char space[CMSG_SPACE(sizeof(int) * 8)];
		struct cmsghdr align;
	} ctl;
	struct iovec iov = {buf, cap};
	struct msghdr m = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.space, .msg_controllen = sizeof(ctl.space)};
	ssize_t n;
	do
		n = recvmsg(sk, &m, MSG_CMSG_CLOEXEC);
	while (n < 0 && errno == EINTR);
	for (struct cmsghdr *c = CMSG_FIRSTHDR(&m); c; c = CMSG_NXTHDR(&m, c))
		if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_RIGHTS)
			for (size_t k = 0; k < (c->cmsg_len - CMSG_LEN(0)) / sizeof(int); k++)
				close(((int *)CMSG_DATA(c))[k]);
	if (n <= 0 || (m.msg_flags & (MSG_TRUNC | MSG_CTRUNC)))
		return -1;
	return n;
}

static int rpc_send(int sk, CriuReq *req) {
	static uint8_t buf[MAX_RPC];
	size_t len = criu_req__get_packed_size(req);
	if (len > sizeof(buf))
		return -1;
	criu_req__pack(req, buf);
	return send(sk, buf, len, MSG_NOSIGNAL) == (ssize_t)len ? 0 : -1;
}

/* The criu this restore drives. */
static struct {
	pid_t pid;
	int pidfd;    /* readable once it has exited */
	int reaped;   /* its exit status is in `status` */
	int status;
	int reported; /* restore-failed was sent */
} g_criu_run = {.pidfd = -1};

/* Reaps criu once it has exited: 1 when it has. */
static int criu_gone(void) {
	if (!g_criu_run.reaped && waitpid(g_criu_run.pid, &g_criu_run.status, WNOHANG) == g_criu_run.pid)
		g_criu_run.reaped = 1;
	return g_criu_run.reaped;
}

/* Tells the coordinator at once that criu failed (once): the session aborts now, not at its deadline. */
static void report_criu_failure(void) {
	char why[128];
	if (g_criu_run.reported)
		return;
	g_criu_run.reported = 1;
	if (hook_criu_exit(g_criu_run.status, why, sizeof(why)) == 0)
		snprintf(why, sizeof(why), "criu exited with 1");
	hook_report_failure(why);
}

/* Hooks of stages nobody waits on, still delivering their event: reaped at the end. */
static pid_t g_publishing[64];
static int g_n_publishing;

static void reap_publishing(void) {
	for (int i = 0; i < g_n_publishing; i++)
		while (waitpid(g_publishing[i], NULL, 0) < 0 && errno == EINTR)
			;
	g_n_publishing = 0;
}

/* Runs the hook for one stage in a child, as criu would run the action
 * script; its exit code, or -1 when it died of a signal. `log` (>= 0) becomes
 * its stdout and stderr, as criu's log is an action script's. At a stage the
 * hook does not wait at, its outcome is known before it runs (it publishes
 * and returns 0 whatever happens, within a bounded linger): criu goes on at
 * once while it delivers. Should criu die while a gated hook waits, the
 * coordinator hears of it at once (as from src/criu/restore.ts), and the
 * waiting hook gets its ABORT. */
static int run_hook(const char *action, int pid, const char *images, const char *work, int log) {
	setenv("CRTOOLS_SCRIPT_ACTION", action, 1);
	if (pid > 0) {
		char p[16];
		snprintf(p, sizeof(p), "%d", pid);
		setenv("CRTOOLS_INIT_PID", p, 1);
	} else {
		unsetenv("CRTOOLS_INIT_PID");
	}
	/* as criu's own: at post-resume criu has closed the images directory, and
	 * its action script names its cwd instead, criu's work dir (which holds stats-restore) */
	setenv("CRTOOLS_IMAGE_DIR", strcmp(action, "post-resume") == 0 ? work : images, 1);
	int gated = hook_gated(action);
	/* a stage nobody waits on: published from here, over one connection for the
	 * whole restore (no process, no handshake); a forked hook when that fails */
	if (!gated && hook_publish() == 0)
		return 0;
	if (!gated && g_n_publishing == (int)(sizeof(g_publishing) / sizeof(g_publishing[0])))
		reap_publishing();
	fflush(stderr);
	pid_t child = fork();
	if (child < 0)
		return 1;
	if (child == 0) {
		if (chdir(work) != 0)
			_exit(1);
		/* a restarting daemon closes the hook's connection under a write: the
		 * hook reconnects (as under criu, whose scripts run with SIGPIPE ignored) */
		signal(SIGPIPE, SIG_IGN);
		if (log >= 0) {
			dup2(log, STDOUT_FILENO);
			dup2(log, STDERR_FILENO);
		}
		_exit(hook_main());
	}
	if (!gated) {
		g_publishing[g_n_publishing++] = child;
		return 0;
	}
	int hookfd = (int)syscall(SYS_pidfd_open, child, 0);
	while (hookfd >= 0 && g_criu_run.pidfd >= 0 && !g_criu_run.reaped) {
		struct pollfd p[2] = {{.fd = hookfd, .events = POLLIN}, {.fd = g_criu_run.pidfd, .events = POLLIN}};
		if (poll(p, 2, -1) < 0 && errno != EINTR)
			break;
		if (p[0].revents)
			break;
		if (p[1].revents && criu_gone())
			report_criu_failure();
	}
	if (hookfd >= 0)
		close(hookfd);
	int status;
	while (waitpid(child, &status, 0) < 0 && errno == EINTR)
		;
	return WIFEXITED(status) ? WEXITSTATUS(status) : -1;
}

/* Kills the trees a killed criu left to us (its subreaper), those started after it. */
static void kill_leftovers(pid_t criu, unsigned long long criu_start) {
	char path[64], buf[4096];
	snprintf(path, sizeof(path), "/proc/self/task/%d/children", (int)getpid());
	int fd = open(path, O_RDONLY | O_CLOEXEC);
	ssize_t n = fd >= 0 ? read(fd, buf, sizeof(buf) - 1) : -1;
	if (fd >= 0)
		close(fd);
	if (n <= 0)
		return;
	buf[n] = '\0';
	for (char *save = NULL, *t = strtok_r(buf, " \n", &save); t; t = strtok_r(NULL, " \n", &save)) {
		pid_t pid = (pid_t)atoi(t);
		long ppid;
		unsigned long long start;
		if (pid <= 0 || pid == criu || proc_stat(pid, &ppid, &start) || start < criu_start)
			continue;
		int k = signal_tree(pid, SIGKILL);
		if (k > 0)
			say("criu was killed; killed %d leftover task(s) of tree %s (root %d)", k, getenv("STAGEGATE_TREE"), pid);
	}
}

/* The hooks' abort note (STAGEGATE_ABORT_NOTE_FD, stagegate-hook.c's
 * note_abort): a memfd the gate hooks forked here inherit, read back here
 * and printed on this terminal, since criu's log may be a file. A memfd
 * rather than a file in a temporary directory: creating, then removing, a
 * directory and two files cost a restore more than the rest of this driver
 * (ext4 inode allocation, issue #11). -1 until made. */
static int g_note = -1;

/* The first line of the abort note, printed: the first abort's reason. */
static void print_abort_note(void) {
	char line[1200];
	ssize_t n = g_note >= 0 ? pread(g_note, line, sizeof(line) - 1, 0) : -1;
	if (n <= 0)
		return;
	line[n] = '\0';
	line[strcspn(line, "\n")] = '\0';
	say("aborted at %s", line);
}

static int restore(const criu_args_t *ca, char *const criu);

int swrk_restore(int argc, char **argv) {
	if (getenv("STAGEGATE_NO_SWRK"))
		return hook_node_cli(argv); /* not reached: bin/stagegate sends it to Node */
	/* a daemon that restarts closes the driver's connection under a write: reported, not fatal */
	signal(SIGPIPE, SIG_IGN);
	for (int i = 2; i < argc && strcmp(argv[i], "--"); i++) {
		if (strcmp(argv[i], "--set") == 0) {
			hook_need_full(argv); /* libcrypto */
			int rc = set_restore(argc, argv);
			return rc < 0 ? hook_node_cli(argv) : rc;
		}
	}
	int first = hook_tree_options(argc, argv, NULL);
	const char *ep = getenv("STAGEGATE_ENDPOINT");
	if (first && ep && strncmp(ep, "ipc://", 6) != 0)
		hook_need_full(argv); /* libzmq */
	static criu_args_t ca;
	if (!first || read_criu_args(argv + first, argc - first, &ca))
		return hook_node_cli(argv);
	char criu[PATH_MAX + 32];
	if (hook_criu_path(criu, sizeof(criu)))
		return hook_node_cli(argv); /* the CLI says where it looked */
	int rc = restore(&ca, criu);
	reap_publishing();
	return rc;
}

/* criu's configuration file, one option per line (criu puts "--" before
 * each), in a memfd that only criu inherits: criu opens it as
 * /proc/self/fd/N. Returns the memfd (close-on-exec), -1 on failure. */
static int config_memfd(const criu_args_t *ca) {
	int fd = memfd_create("stagegate-criu-config", MFD_CLOEXEC);
	int w = fd >= 0 ? dup(fd) : -1; /* the stream's own, closed with it */
	FILE *f = w >= 0 ? fdopen(w, "w") : NULL;
	if (!f) {
		if (w >= 0)
			close(w);
		if (fd >= 0)
			close(fd);
		return -1;
	}
	for (int i = 0; i < ca->n; i++)
		fprintf(f, "%s\n", ca->lines[i]);
	if (fclose(f)) {
		close(fd);
		return -1;
	}
	return fd;
}

/* A restore that fails before criu runs: said here, and told to the
 * coordinator (restore-failed) so that the session aborts now. */
static int fail_early(const char *what) {
	char why[256];
	snprintf(why, sizeof(why), "%.200s: %s", what, strerror(errno));
	say("%s", why);
	hook_report_failure(why);
	return 1;
}

static int restore(const criu_args_t *ca, char *const criu) {
	/* this restore's identity: every hook of this criu, and this wrapper, speak as this run */
	char run[40];
	if (hook_new_run(run)) {
		say("cannot read a random uuid to name this run");
		return 1;
	}
	setenv("STAGEGATE_RUN", run, 1);
	int conf = config_memfd(ca);
	if (conf < 0)
		return fail_early("cannot write criu's configuration file");
	char conf_path[32], note_fd[16], images[PATH_MAX], work[PATH_MAX];
	snprintf(conf_path, sizeof(conf_path), "/proc/self/fd/%d", conf);
	g_note = memfd_create("stagegate-abort-note", MFD_CLOEXEC);
	if (g_note < 0 || fcntl(g_note, F_SETFL, O_APPEND)) {
		close(conf);
		return fail_early("cannot make the abort note");
	}
	snprintf(note_fd, sizeof(note_fd), "%d", g_note);
	/* the images and work directories as criu's action scripts see them (criu
	 * resolves both against this cwd); criu itself says when one is missing */
	if (!realpath(ca->images ? ca->images : ".", images))
		snprintf(images, sizeof(images), "%s", ca->images ? ca->images : ".");
	if (!realpath(ca->work ? ca->work : images, work))
		snprintf(work, sizeof(work), "%s", ca->work ? ca->work : images);
	unsetenv("STAGEGATE_ABORT_NOTE"); /* a path given to this command is not this run's note */
	setenv("STAGEGATE_ABORT_NOTE_FD", note_fd, 1);
	unsetenv("STAGEGATE_RELEASE_MARK"); /* this process knows whether the tree was released */

	/* a killed criu's tasks (at any stage) become our children, not init's */
	prctl(PR_SET_CHILD_SUBREAPER, 1);
	int sv[2];
	if (socketpair(AF_UNIX, SOCK_SEQPACKET | SOCK_CLOEXEC, 0, sv)) {
		close(conf);
		return fail_early("cannot make criu's RPC socket");
	}
	fflush(stderr);
	/* posix_spawn (glibc: CLONE_VM|CLONE_VFORK) rather than fork: criu is
	 * exec'd at once, so nothing of this process need be copied for it. A dup2
	 * of a descriptor onto itself clears its close-on-exec: criu gets the RPC
	 * socket and its configuration, nothing else of ours. */
	char sock[16];
	snprintf(sock, sizeof(sock), "%d", sv[1]);
	posix_spawn_file_actions_t fa;
	posix_spawnattr_t attr;
	sigset_t def;
	sigemptyset(&def);
	sigaddset(&def, SIGPIPE); /* criu as it would be started from a shell */
	pid_t pid = -1;
	int err = posix_spawn_file_actions_init(&fa);
	if (!err && !(err = posix_spawnattr_init(&attr))) {
		if (!(err = posix_spawn_file_actions_adddup2(&fa, sv[1], sv[1])) && !(err = posix_spawn_file_actions_adddup2(&fa, conf, conf)) &&
		    !(err = posix_spawnattr_setsigdefault(&attr, &def)) && !(err = posix_spawnattr_setflags(&attr, POSIX_SPAWN_SETSIGDEF)))
			err = posix_spawn(&pid, criu, &fa, &attr, (char *[]){criu, "swrk", sock, NULL}, environ);
		posix_spawnattr_destroy(&attr);
	}
	posix_spawn_file_actions_destroy(&fa);
	if (err) {
		close(conf);
		close(sv[0]);
		close(sv[1]);
		char what[PATH_MAX + 48];
		snprintf(what, sizeof(what), "cannot run %s", criu);
		errno = err;
		return fail_early(what);
	}
	close(sv[1]);
	close(conf); /* criu has its own */
	hook_set_criu(pid);
	g_criu_run.pid = pid;
	g_criu_run.pidfd = (int)syscall(SYS_pidfd_open, pid, 0);
	long ppid;
	unsigned long long criu_start = 0;
	proc_stat(pid, &ppid, &criu_start);

	CriuOpts opts = CRIU_OPTS__INIT;
	opts.images_dir_fd = -1; /* the configuration file names it */
	opts.has_log_level = 1;
	opts.log_level = ca->log_level; /* criu takes it from the request, not the file */
	opts.has_notify_scripts = 1;
	opts.notify_scripts = 1;
	opts.config_file = conf_path;
	CriuReq req = CRIU_REQ__INIT;
	req.type = CRIU_REQ_TYPE__RESTORE;
	req.opts = &opts;
	int ok = 0, released = 0, resumed_hook_died = 0, saw_pre_resume = 0, root = 0;
	/* criu's log, where an action script's output goes: opened once criu has
	 * made it (its path as criu opens it, relative to the work dir) */
	int log = -1, log_tried = 0;
	char log_path[PATH_MAX * 2 + 2] = "";
	if (ca->log && strcmp(ca->log, "-") != 0)
		snprintf(log_path, sizeof(log_path), "%s%s%s", ca->log[0] == '/' ? "" : work,
			 ca->log[0] == '/' ? "" : "/", ca->log);
	if (rpc_send(sv[0], &req) == 0) {
		static uint8_t buf[MAX_RPC];
		hook_connect(); /* while criu starts: its first stage is a gate */
		for (;;) {
			ssize_t n = rpc_recv(sv[0], buf, sizeof(buf));
			if (n < 0)
				break; /* criu is gone */
			CriuResp *resp = criu_resp__unpack(NULL, (size_t)n, buf);
			if (!resp)
				break;
			if (resp->type == CRIU_REQ_TYPE__NOTIFY && resp->notify && resp->notify->script) {
				const char *action = resp->notify->script;
				if (!log_tried++ && log_path[0])
					log = open(log_path, O_WRONLY | O_APPEND | O_NOFOLLOW | O_CLOEXEC);
				/* criu names the root only at setup-namespaces and post-restore;
				 * its action scripts get it (CRTOOLS_INIT_PID) at every later stage */
				if (resp->notify->has_pid && resp->notify->pid > 0)
					root = resp->notify->pid;
				int rc = run_hook(action, root, images, work, log);
				if (strcmp(action, "pre-resume") == 0) {
					saw_pre_resume = 1;
					released = rc == 0;
					resumed_hook_died = rc < 0;
				}
				CriuReq reply = CRIU_REQ__INIT;
				reply.type = CRIU_REQ_TYPE__NOTIFY;
				reply.has_notify_success = 1;
				reply.notify_success = rc == 0;
				criu_resp__free_unpacked(resp, NULL);
				if (rpc_send(sv[0], &reply))
					break;
				continue;
			}
			if (resp->type == CRIU_REQ_TYPE__RESTORE) {
				ok = resp->success;
				if (resp->restore)
					root = resp->restore->pid;
			}
			criu_resp__free_unpacked(resp, NULL);
			break;
		}
	}
	close(sv[0]);
	if (log >= 0)
		close(log);
	while (!g_criu_run.reaped && waitpid(pid, &g_criu_run.status, 0) < 0 && errno == EINTR)
		;
	g_criu_run.reaped = 1;
	int status = g_criu_run.status;
	char why[128];
	int rc = hook_criu_exit(status, why, sizeof(why));
	if (!ok) {
		if (rc == 0)
			rc = 1;
		print_abort_note();
		report_criu_failure();
		/* A killed criu leaves its tasks behind (at setup-namespaces, asleep in
		 * the restorer, stopped at pre-resume); unless the barrier released them
		 * (or a stand-in now decides), they never run. */
		if (WIFSIGNALED(status) && !released && !resumed_hook_died)
			kill_leftovers(pid, criu_start);
		return rc;
	}
	if (released)
		return 0;
	if (!saw_pre_resume || !root) {
		say("tree %s was restored without passing the resume barrier; its tasks stay stopped (kill -CONT or kill -KILL them)",
		    getenv("STAGEGATE_TREE"));
		return 1;
	}
	if (!resumed_hook_died) {
		print_abort_note(); /* aborted: the hook killed the tree before it ran */
		return 1;
	}
	/* the hook died at the barrier: criu let the tree go, held by the hook's
	 * SIGSTOP; wait there in its place, as the guardian's stand-in does */
	say("the hook of tree %s died at the resume barrier; waiting there in its place", getenv("STAGEGATE_TREE"));
	int pinned = (int)syscall(SYS_pidfd_open, root, 0);
	if (pinned < 0) {
		say("the restored root %d is gone", root);
		return 1;
	}
	char fd[16];
	snprintf(fd, sizeof(fd), "%d", pinned);
	setenv("STAGEGATE_STAND_IN_ROOTFD", fd, 1);
	return run_hook("pre-resume", root, images, work, -1) == 0 ? 0 : 1;
}
