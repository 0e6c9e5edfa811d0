/*
 * drivers.c - the in-box drivers (kernel/drivers/), embedded in the binary so a
 * kernel needs no file of ours where its runtimes run.
 */
#include "common/embed.h"
#include "common/langs.h"

#include <string.h>

EMBED_FILE(cg_driver_python, "kernel/drivers/python.py");
EMBED_FILE(cg_driver_python_boot, "kernel/drivers/python_boot.py");
#ifndef CG_PYTHON_COMPILED /* made by the build: scripts/pycompile.py */
#define CG_PYTHON_COMPILED "build/kernel/drivers/python.bin"
#endif
EMBED_FILE(cg_driver_python_compiled, CG_PYTHON_COMPILED);
EMBED_FILE(cg_driver_bash, "kernel/drivers/bash.sh");
EMBED_FILE(cg_driver_javascript, "kernel/drivers/javascript.js");
EMBED_FILE(cg_driver_ruby, "kernel/drivers/ruby.rb");
EMBED_FILE(cg_driver_perl, "kernel/drivers/perl.pl");
EMBED_FILE(cg_driver_php, "kernel/drivers/php.php");
EMBED_FILE(cg_driver_compiled, "kernel/drivers/compiled.py");
#ifndef CG_COMPILED_COMPILED /* made by the build: scripts/pycompile.py */
#define CG_COMPILED_COMPILED "build/kernel/drivers/compiled.bin"
#endif
EMBED_FILE(cg_driver_compiled_compiled, CG_COMPILED_COMPILED);

const char *
drivers_source(const char *driver, size_t *len)
{
    static const struct {
        const char *name, *start, *end;
    } drivers[] = {
        { "python", cg_driver_python_start, cg_driver_python_end },
        { "python-boot", cg_driver_python_boot_start, cg_driver_python_boot_end },
        { "python-compiled", cg_driver_python_compiled_start, cg_driver_python_compiled_end },
        { "bash", cg_driver_bash_start, cg_driver_bash_end },
        { "javascript", cg_driver_javascript_start, cg_driver_javascript_end },
        { "ruby", cg_driver_ruby_start, cg_driver_ruby_end },
        { "perl", cg_driver_perl_start, cg_driver_perl_end },
        { "php", cg_driver_php_start, cg_driver_php_end },
        { "compiled", cg_driver_compiled_start, cg_driver_compiled_end },
        { "compiled-compiled", cg_driver_compiled_compiled_start,
          cg_driver_compiled_compiled_end },
    };

    for (size_t i = 0; i < sizeof drivers / sizeof drivers[0]; i++)
        if (strcmp(drivers[i].name, driver) == 0) {
            *len = (size_t)(drivers[i].end - drivers[i].start);
            return drivers[i].start;
        }
    *len = 0;
    return NULL;
}
