/*
 * doctor.c - report toolchains, sandbox features and libraries (see doctor.h).
 */
#include "cli/doctor.h"

#include "common/cgerr.h"
#include "common/clock.h"
#include "common/langs.h"
#include "common/sibling.h"
#include "common/version.h"
#include "sandbox/box.h"
#include "sandbox/boxfs.h"

#include <errno.h>
#include <jansson.h>
#include <nettle/version.h>
#include <sodium.h>
#include <stdio.h>
#include <string.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#include <zmq.h>

/* Reads the first line of a small /proc or /sys file, or "" . */
static void
read_line(const char *path, char *out, size_t len)
{
    FILE *f = fopen(path, "r");

    out[0] = '\0';
    if (!f)
        return;
    if (!fgets(out, (int)len, f))
        out[0] = '\0';
    fclose(f);
    out[strcspn(out, "\n")] = '\0';
}

/* Builds a box for real (with a throw-away /mnt/data) and says whether it
 * worked and how long it took: the one check that cannot lie. */
static void
print_box_check(void)
{
    char dir[] = "/tmp/cellgate-doctor-XXXXXX", data[64], err[512];
    struct box_opts o = { .name = "doctor" };
    double t0;

    if (!mkdtemp(dir)) {
        printf("  box                  cannot test: mkdtemp: %s\n", strerror(errno));
        return;
    }
    snprintf(data, sizeof data, "%s/data", dir);
    o.data_dir = data;
    limits_defaults(&o.limits);
    t0 = clock_now();
    struct box *b = box_new(&o, err, sizeof err);
    if (b && box_ready(b, err, sizeof err) != 0)
        box_destroy(&b);
    double ms = (clock_now() - t0) * 1e3;
    if (b)
        printf("  box                  works (built in %.1f ms; memory limit by %s)\n", ms,
               mem_mechanism_name(box_mem_mechanism(b)));
    else
        printf("  box                  FAILS: %s\n", err);
    box_destroy(&b);
    rmdir(dir);
}

static void
print_sandbox(void)
{
    char v[128];

    printf("\nsandbox features of this machine:\n");
    read_line("/proc/sys/user/max_user_namespaces", v, sizeof v);
    printf("  user namespaces      %s\n", v[0] && strcmp(v, "0") != 0 ? "available" : "not available");
    read_line("/proc/sys/kernel/unprivileged_userns_clone", v, sizeof v);
    if (v[0])
        printf("  unprivileged userns  %s\n", strcmp(v, "1") == 0 ? "allowed" : "disabled");
    read_line("/proc/sys/kernel/seccomp/actions_avail", v, sizeof v);
    printf("  seccomp filters      %s\n", v[0] ? "available" : "not available");
    printf("  running as           %s\n", geteuid() == 0 ? "root" : "an ordinary user");
    printf("  memory limit by      %s\n", mem_mechanism_name(limits_probe()));
    const char *no = boxfs_volume_unsupported();
    printf("  /mnt/data bounded by %s%s\n", no ? "NOTHING: " : "an ext4 image on a loop device "
           "(--data-size)", no ? no : "");
    print_box_check();
}

/* The registry gateway: what `cellgate-registry --check` says of the
 * operator's settings and whether each upstream answers. */
static void
print_registry(void)
{
    char prog[4200];

    printf("\npackages (registry gateway):\n");
    fflush(stdout);
    if (sibling_find("cellgate-registry", prog, sizeof prog) != CG_OK) {
        printf("  UNAVAILABLE: no cellgate-registry beside this binary: pip and npm in the "
               "box cannot install\n");
        return;
    }
    pid_t pid = fork();
    if (pid == 0) {
        execl(prog, prog, "--check", (char *)NULL);
        _exit(127);
    }
    int status = 0;
    if (pid < 0 || waitpid(pid, &status, 0) < 0 || !WIFEXITED(status) || WEXITSTATUS(status) > 1)
        printf("  FAILS: %s --check did not run (status %d)\n", prog, status);
}

int
doctor_run(void)
{
    int major, minor, patch, available = 0;
    char v[256];

    printf("cellgate %s\n\nlanguages:\n", CELLGATE_VERSION);
    for (size_t i = 0; i < langs_count(); i++) {
        const struct lang *l = langs_at(i);
        if (lang_works(l)) {
            if (lang_first_line(l, l->version_bare, v, sizeof v) != 0)
                snprintf(v, sizeof v, "?");
            printf("  %-10s yes  %-20s %s\n", l->name, l->program, v);
            available++;
        } else {
            printf("  %-10s no   %-20s (missing or not working: no kernelspec for it)\n",
                   l->name, l->program);
        }
    }
    print_sandbox();
    char fetch[4200];
    bool fetch_ok = sibling_find("cellgate-fetch", fetch, sizeof fetch) == CG_OK;
    printf("\ntools:\n  cellgate.download    %s %s\n", fetch_ok ? "by" : "UNAVAILABLE: no",
           fetch_ok ? fetch : "cellgate-fetch beside this binary");
    print_registry();
    zmq_version(&major, &minor, &patch);
    printf("\nlibraries:\n  libzmq     %d.%d.%d\n  libsodium  %s\n  nettle     %d.%d\n"
           "  jansson    %s\n", major, minor, patch, sodium_version_string(),
           nettle_version_major(), nettle_version_minor(), jansson_version_str());
    return available ? 0 : 1;
}
