/*
 * regpolicy.h - the operator's settings for the registry gateway, read
 * from the kernel's environment (a client or the box can change none):
 *
 *   CELLGATE_REGISTRIES          ecosystems on: "npm,pypi" (default), "none"
 *   CELLGATE_REGISTRY_NPM        npm upstream (default https://registry.npmjs.org)
 *   CELLGATE_REGISTRY_PYPI       PyPI simple index (default https://pypi.org/simple)
 *   CELLGATE_REGISTRY_PYPI_FILES PyPI files host (default
 *                                https://files.pythonhosted.org for the
 *                                default index, else the index's origin)
 *   CELLGATE_REGISTRY_ALLOW      "eco:glob,..." only these packages (default all)
 *   CELLGATE_REGISTRY_DENY       "eco:glob,..." never these (wins over ALLOW)
 *   CELLGATE_REGISTRY_MAX_BYTES  largest artifact (default 256 MiB)
 *   CELLGATE_REGISTRY_CA_FILE    PEM bundle replacing the system's CAs
 *   CELLGATE_REGISTRY_TIMEOUT    seconds per upstream request (default 60)
 *   CELLGATE_REGISTRY_METADATA_TTL  seconds metadata is served from the
 *                                shared cache before it is fetched again
 *                                (default 300, as npm's own cache; 0: always)
 */
#ifndef CG_REGPOLICY_H
#define CG_REGPOLICY_H

#include "registry/regpath.h"

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define REGPOLICY_URL_MAX 512
#define REGPOLICY_RULES_MAX 64

struct regpolicy {
    bool on[REG_ECO_COUNT];                 /* ecosystems served */
    char npm[REGPOLICY_URL_MAX];            /* upstream bases, no trailing slash */
    char pypi[REGPOLICY_URL_MAX];
    char pypi_files[REGPOLICY_URL_MAX];
    char ca_file[4096];                     /* "" for the system store */
    uint64_t max_bytes;
    unsigned timeout_s;
    unsigned metadata_ttl_s;                /* 0: metadata always fetched */
    size_t n_allow, n_deny;
    struct regrule {
        enum reg_eco eco;
        char glob[REGPATH_NAME_MAX + 1];
    } allow[REGPOLICY_RULES_MAX], deny[REGPOLICY_RULES_MAX];
};

/*
 * Reads the settings from getenv into *p. Returns CG_OK, or CG_EINVAL with
 * err naming the variable and what is wrong (a bad URL, an unknown
 * ecosystem, a malformed rule, ...): the gateway refuses to start rather
 * than guess.
 */
int regpolicy_load(struct regpolicy *p, char *err, size_t errlen);

/*
 * May package name of eco be served? true, or false with why filled
 * ("npm package \"left-pad\" is denied by CELLGATE_REGISTRY_DENY rule
 * npm:left-*"), for the 403 body. name is as regpath gives it (pypi
 * normalised; globs are matched against the normalised form).
 */
bool regpolicy_allows(const struct regpolicy *p, enum reg_eco eco, const char *name, char *why,
                      size_t whylen);

/* The ecosystem's name ("npm", "pypi"). */
const char *regpolicy_eco_name(enum reg_eco eco);

#endif
