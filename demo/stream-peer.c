/*
 * stream-peer: one end of a TCP connection on which both ends send a stream
 * of 64-bit counters (0, 1, 2, ...) and check the other's for gaps and
 * duplicates. Used to prove a checkpoint cut consistent: after a coordinated
 * dump and restore the streams go on with no error; a cut that lost or
 * duplicated bytes shows up as an error.
 *
 *   stream-peer --listen PORT   --progress FILE
 *   stream-peer --connect IP:PORT --progress FILE
 *
 * Progress is rewritten in place every 20 ms as one fixed-width line (the
 * file keeps its size, so CRIU restores it): "sent recv errors first_bad".
 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define BATCH 16 /* counters sent per millisecond */

static uint64_t now_ms(void) {
	struct timespec ts;
	clock_gettime(CLOCK_MONOTONIC, &ts);
	return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static int usage(void) {
	fprintf(stderr, "usage: stream-peer (--listen PORT | --connect IP:PORT) --progress FILE\n");
	return 2;
}

static int open_connection(const char *listen_port, const char *connect_to) {
	struct sockaddr_in a = {.sin_family = AF_INET};
	int s = socket(AF_INET, SOCK_STREAM, 0);
	if (s < 0)
		return -1;
	if (listen_port) {
		int one = 1;
		setsockopt(s, SOL_SOCKET, SO_REUSEADDR, &one, sizeof(one));
		a.sin_port = htons((uint16_t)atoi(listen_port));
		a.sin_addr.s_addr = htonl(INADDR_ANY);
		if (bind(s, (struct sockaddr *)&a, sizeof(a)) || listen(s, 1))
			return -1;
		int c = accept(s, NULL, NULL);
		close(s); /* one connection: nothing left listening to checkpoint */
		return c;
	}
	char host[64];
	const char *colon = strrchr(connect_to, ':');
	if (!colon || (size_t)(colon - connect_to) >= sizeof(host))
		return -1;
	memcpy(host, connect_to, (size_t)(colon - connect_to));
	host[colon - connect_to] = '\0';
	a.sin_port = htons((uint16_t)atoi(colon + 1));
	if (inet_pton(AF_INET, host, &a.sin_addr) != 1)
		return -1;
	for (int i = 0; i < 500; i++) { /* the listener may not be up yet */
		if (connect(s, (struct sockaddr *)&a, sizeof(a)) == 0)
			return s;
		close(s);
		s = socket(AF_INET, SOCK_STREAM, 0);
		usleep(10000);
	}
	return -1;
}

int main(int argc, char **argv) {
	const char *listen_port = NULL, *connect_to = NULL, *progress = NULL;
	for (int i = 1; i + 1 < argc; i += 2) {
		if (!strcmp(argv[i], "--listen"))
			listen_port = argv[i + 1];
		else if (!strcmp(argv[i], "--connect"))
			connect_to = argv[i + 1];
		else if (!strcmp(argv[i], "--progress"))
			progress = argv[i + 1];
		else
			return usage();
	}
	if (!progress || !!listen_port == !!connect_to)
		return usage();
	int pf = open(progress, O_WRONLY | O_CREAT, 0644);
	int s = open_connection(listen_port, connect_to);
	if (pf < 0 || s < 0) {
		perror("stream-peer");
		return 1;
	}
	fcntl(s, F_SETFL, O_NONBLOCK);
	uint64_t sent = 0, expect = 0, errors = 0, first_bad = 0;
	unsigned char out[BATCH * 8], in[65536];
	size_t out_len = 0, out_off = 0, in_len = 0;
	uint64_t next_batch = now_ms(), next_report = 0;
	for (;;) {
		uint64_t t = now_ms();
		if (out_off == out_len && t >= next_batch) {
			for (int i = 0; i < BATCH; i++, sent++)
				memcpy(out + i * 8, &sent, 8);
			out_len = sizeof(out);
			out_off = 0;
			next_batch = t + 1;
		}
		struct pollfd p = {.fd = s, .events = POLLIN | (out_off < out_len ? POLLOUT : 0)};
		poll(&p, 1, 1);
		if (p.revents & (POLLERR | POLLHUP))
			break;
		if (out_off < out_len) {
			ssize_t n = send(s, out + out_off, out_len - out_off, MSG_NOSIGNAL);
			if (n > 0)
				out_off += (size_t)n;
			else if (n < 0 && errno != EAGAIN && errno != EINTR)
				break;
		}
		ssize_t n = recv(s, in + in_len, sizeof(in) - in_len, 0);
		if (n == 0)
			break;
		if (n > 0) {
			in_len += (size_t)n;
			size_t i = 0;
			for (; i + 8 <= in_len; i += 8) {
				uint64_t v;
				memcpy(&v, in + i, 8);
				if (v != expect) {
					if (!errors)
						first_bad = expect;
					errors++;
				}
				expect = v + 1;
			}
			memmove(in, in + i, in_len - i);
			in_len -= i;
		}
		if (t >= next_report) {
			char line[96];
			int len = snprintf(line, sizeof(line), "%20llu %20llu %20llu %20llu\n", (unsigned long long)sent,
					   (unsigned long long)expect, (unsigned long long)errors, (unsigned long long)first_bad);
			if (pwrite(pf, line, (size_t)len, 0) < 0)
				return 1;
			next_report = t + 20;
		}
	}
	return 3; /* the connection ended: never, while the job runs */
}
