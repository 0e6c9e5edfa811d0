#!/usr/bin/env bash
# The project's own source checks, in the spirit of curl's checksrc:
# banned calls, a contract comment opening every C file, and no C file
# longer than MAX_LINES (a longer one holds more than one module).
set -u
status=0
files=$(git ls-files '*.c' '*.h' 2>/dev/null || find common kernel tests -name '*.[ch]')
MAX_LINES=1500
banned='\b(sprintf|vsprintf|strcpy|strcat|atoi|atol|gets|strtok|tmpnam)[[:space:]]*\('
for f in $files; do
  [ -f "$f" ] || continue  # deleted in the work tree, not yet in git
  # Comment lines are prose ("what the child gets (argv...)"), not calls.
  if grep -nE "$banned" "$f" | grep -vE '^[0-9]+:[[:space:]]*(\*|/\*|//)' \
       | grep -v 'checksrc: allow'; then
    echo "checksrc: $f uses a banned call (use snprintf, memcpy with a length, strtol...)" >&2
    status=1
  fi
  lines=$(wc -l < "$f")
  if [ "$lines" -gt $MAX_LINES ]; then
    echo "checksrc: $f has $lines lines (at most $MAX_LINES): split it into modules" >&2
    status=1
  fi
  if ! head -3 "$f" | grep -q '^/\*'; then
    echo "checksrc: $f does not open with a comment saying what it is for" >&2
    status=1
  fi
done
[ $status -eq 0 ] && echo "checksrc: $(echo $files | wc -w) files clean"
exit $status
