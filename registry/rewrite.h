/*
 * rewrite.h - the metadata the gateway serves, rewritten so that every
 * artifact link points back at the gateway (upstream, artifacts live on
 * another host or path). Artifact bytes are never changed; hashes and
 * integrity fields are kept. A link to anywhere else is dropped, never
 * followed: a package cannot steer the box to another host.
 *
 * All functions read untrusted bytes from upstream: bounded, validated,
 * and on any doubt an error rather than a guess.
 */
#ifndef CG_REWRITE_H
#define CG_REWRITE_H

#include <stddef.h>

/*
 * An npm packument (the full or the abbreviated document): each
 * versions[v].dist.tarball that is under upstream (e.g.
 * "https://registry.npmjs.org", no trailing slash) as
 * upstream/NAME/-/FILE.tgz becomes gateway/npm/NAME/-/FILE.tgz (gateway
 * e.g. "http://127.0.0.1:3141"); a version whose tarball is elsewhere or
 * malformed is removed (and from dist-tags). Everything else is kept.
 * Returns CG_OK and *out (malloc'd, *outlen bytes, JSON) or CG_EINVAL
 * (not a packument) / CG_ENOMEM, with err filled.
 */
int rewrite_npm_packument(const char *body, size_t len, const char *upstream,
                          const char *gateway, char **out, size_t *outlen, char *err,
                          size_t errlen);

/*
 * A PEP 503 HTML project page fetched from page_url (its absolute URL,
 * for resolving relative links): each <a href> whose resolved URL is
 * under files (the files host base, e.g. "https://files.pythonhosted.org",
 * no trailing slash) as files/PATH[#fragment] becomes
 * gateway/pypi/files/PATH[#fragment] (the #sha256=... fragment kept); other
 * anchors are dropped whole. Attributes pip reads (data-requires-python,
 * data-dist-info-metadata, data-core-metadata, data-yanked) are kept; the
 * .metadata files they announce are served at the same gateway path plus
 * ".metadata". The page is rebuilt, not patched: what comes out is a
 * minimal well-formed page with only those anchors.
 */
int rewrite_pypi_html(const char *body, size_t len, const char *page_url, const char *files,
                      const char *gateway, char **out, size_t *outlen, char *err,
                      size_t errlen);

/*
 * A PEP 691 JSON project page ("application/vnd.pypi.simple.v1+json"):
 * files[i].url rewritten as for HTML (resolved against page_url); files
 * elsewhere are removed. Everything else is kept.
 */
int rewrite_pypi_json(const char *body, size_t len, const char *page_url, const char *files,
                      const char *gateway, char **out, size_t *outlen, char *err,
                      size_t errlen);

#endif
