/* argent: the program users run. Subcommands live in jobs/, one small file each. */
#include <stdio.h>
#include <string.h>

int main(int argc, char **argv) {
    if (argc < 2 || !strcmp(argv[1], "--help") || !strcmp(argv[1], "-h")) {
        printf("usage: argent <command> [options]\n");
        return argc < 2 ? 2 : 0;
    }
    fprintf(stderr, "argent: unknown command '%s' (see argent --help)\n", argv[1]);
    return 2;
}
