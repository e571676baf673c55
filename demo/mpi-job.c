/*
 * MPI workload for the MPI recipe and its tests: the ranks of each node
 * share an MPI shared-memory window (each rank maps every node rank's segment
 * at its own addresses) and check, every iteration, an allreduce of what they
 * read through the window against the expected value. A rank whose view of
 * shared memory, whose iteration count, or a message were wrong after a
 * restore makes the job fail with MISMATCH. Ranks may be on several nodes.
 *
 *   mpiexec -n 4 mpi-job ITERATIONS
 */
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <unistd.h>
#include <time.h>
int main(int argc, char **argv) {
	MPI_Init(&argc, &argv);
	int rank;
	MPI_Comm_rank(MPI_COMM_WORLD, &rank);
	MPI_Comm node;
	MPI_Comm_split_type(MPI_COMM_WORLD, MPI_COMM_TYPE_SHARED, rank, MPI_INFO_NULL, &node);
	int node_size;
	MPI_Comm_size(node, &node_size);
	long *base;
	MPI_Win win;
	MPI_Win_allocate_shared(4096 * sizeof(long), sizeof(long), MPI_INFO_NULL, node, &base, &win);
	int iters = atoi(argv[1]);
	for (int it = 0; it < iters; it++) {
		MPI_Win_fence(0, win);
		for (int i = 0; i < 4096; i++) base[i] = (long)(rank + 1) * (it + i);
		MPI_Win_fence(0, win);
		/* each rank reads every rank's segment through its own mapping */
		long local = 0;
		for (int r = 0; r < node_size; r++) {
			MPI_Aint sz; int du; long *p;
			MPI_Win_shared_query(win, r, &sz, &du, &p);
			for (int i = 0; i < 4096; i++) local += p[i];
		}
		/* every segment is read by each rank of its node: what the sum must be, from each rank's own state */
		long mine = 0;
		for (int i = 0; i < 4096; i++) mine += (long)(rank + 1) * (it + i);
		long sums[2] = {local, mine * node_size}, totals[2];
		MPI_Allreduce(sums, totals, 2, MPI_LONG, MPI_SUM, MPI_COMM_WORLD);
		long total = totals[0], expect = totals[1];
		/* and the iteration every rank is at: one lost or repeated step on any rank breaks it */
		long its[2] = {it, -it}, itmax[2];
		MPI_Allreduce(its, itmax, 2, MPI_LONG, MPI_MAX, MPI_COMM_WORLD);
		if (itmax[0] != it || -itmax[1] != it) total = -1;
		if (rank == 0 && (it % 10 == 0 || it == iters - 1)) { printf("iter %d total %ld %s\n", it, total, total == expect ? "ok" : "MISMATCH"); fflush(stdout); }
		if (total != expect) { fprintf(stderr, "rank %d: checksum mismatch at %d\n", rank, it); MPI_Abort(MPI_COMM_WORLD, 3); }
		struct timespec ts = {0, 100 * 1000 * 1000}; nanosleep(&ts, NULL);
	}
	if (rank == 0) { printf("done\n"); fflush(stdout); }
	MPI_Win_free(&win);
	MPI_Finalize();
	return 0;
}
