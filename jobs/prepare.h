/* `argent prepare` on a given communicator. ag_cmd_prepare (commands.h) starts MPI and
 * runs this on the world; tests also run it on MPI_COMM_SELF to compare rank counts. */
#ifndef ARGENT_JOBS_PREPARE_H
#define ARGENT_JOBS_PREPARE_H
#include <mpi.h>

/* argv[0] is the command name. Collective over comm; MPI must be running. Returns the exit
 * code (0, 1 failure, 2 usage); messages go to stderr from rank 0 (or the failing rank). */
int ag_prepare_main(int argc, char **argv, MPI_Comm comm);
#endif
