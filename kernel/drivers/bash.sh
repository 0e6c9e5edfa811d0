# cellgate bash driver.
#
# The kernel starts `bash --norc --noprofile --noediting -i` in its own process
# group with fd 0 = the code pipe, fd 1 = stdout, fd 2 = a pseudo-terminal of
# its own (bash keeps a copy as its terminal; start-up chatter stays there),
# fd 3 = the control socket and fd 4 = the real stderr, and
# writes this file to fd 0 before anything else.  Bash reads it as typed input:
# everything here runs at the top level of an interactive shell, so it must
# print nothing, define nothing but __cg_* names (and the `read` shadow) and
# end by sending `ready` on fd 3.  Requests then arrive on fd 0 as bash source
# lines; every answer is one JSON line on fd 3.  See PROTOCOL.md, section
# "kernel -> bash driver", for the contract.
#
# Interactive mode is the point: SIGINT makes bash drop the line it is
# running and carry on with the next one, keeping all shell state.  That is
# why an execute comes as two lines, the user's code and `__cg_done $?`.
# (The driver's SIGINT trap, __cg_interrupted, only keeps bash's newline
# for the terminal out of the cell's stderr; the line is still dropped.)
#
# (No exclamation mark may appear above the `set +H` line: history expansion
# is still on until then and would silently drop the line.)

set +m +H; set +o history; PS1= PS2= PS0= PS4='+ '
unset PROMPT_COMMAND HISTFILE MAIL MAILPATH MAILCHECK TMOUT
# Real stderr to 2. The control socket moves from 3 to 253 and a second
# handle on the code pipe (for `read`) goes to 254: far above the fds user
# code picks (`exec 3<>/dev/tcp/...` must not cut the driver off).
exec 2>&4 4>&- 253>&3 3>&- 254<&0
shopt -u checkwinsize mailwarn

__cg_allow=0    # may the running cell ask for input (allow_stdin)?
__cg_status=0   # exit status of the last cell: `$?` when the next one starts
__cg_in_cell=0  # is a cell's line running (from __cg_pre to __cg_done)?
__cg_muted=0    # did __cg_interrupted point fd 2 at /dev/null?
__cg_rearm=0    # did __cg_interrupted take its own trap away?

# A word, for completion and inspection: a run of characters that are not
# blanks, operators or quotes (a backslash escapes the next character).
__cg_re_chars='(\\.|[^[:space:];|&()<>"'\''`=\])*'

# --- records ----------------------------------------------------------------

# __cg_send FORMAT ARG...: one record, one printf, one line on fd 253.  The
# arguments must already be JSON (see __cg_json).
__cg_send() {
    builtin printf "$1\n" "${@:2}" >&253
}

# __cg_json NAME: replace every element of the array NAME by its JSON string
# literal.  The work is a few expansions over the whole array rather than a
# loop over its elements, so thousands of completion matches stay cheap.
# Runs in the C locale: every byte we rewrite is ASCII, and byte-wise pattern
# substitution is far faster than the multibyte one.
__cg_json() {
    local -n __cg_jv=$1
    local LC_ALL=C __cg_jall __cg_ji __cg_jhex __cg_jc __cg_jr
    ((${#__cg_jv[@]})) || return 0
    printf -v __cg_jall '%s' "${__cg_jv[@]}"
    if [[ $__cg_jall == *[$'\x80'-$'\xff']* ]]; then
        __cg_utf8_clean "$1"   # only non-ASCII text needs the slow check
    fi
    # Replacements are quoted variables so that `&` and `\` in them stay
    # literal whatever the patsub_replacement option says.
    local __cg_bs='\' __cg_bs2='\\' __cg_q='"' __cg_bq='\"'
    __cg_jv=("${__cg_jv[@]//"$__cg_bs"/"$__cg_bs2"}")
    __cg_jv=("${__cg_jv[@]//"$__cg_q"/"$__cg_bq"}")
    if [[ $__cg_jall == *[$'\x01'-$'\x1f']* ]]; then
        for ((__cg_ji = 1; __cg_ji < 32; __cg_ji++)); do
            printf -v __cg_jhex '%02x' "$__cg_ji"
            printf -v __cg_jc "\\x$__cg_jhex"
            [[ $__cg_jall == *"$__cg_jc"* ]] || continue
            case $__cg_ji in
                9) __cg_jr='\t' ;;
                10) __cg_jr='\n' ;;
                13) __cg_jr='\r' ;;
                *) __cg_jr="\\u00$__cg_jhex" ;;
            esac
            __cg_jv=("${__cg_jv[@]//"$__cg_jc"/"$__cg_jr"}")
        done
    fi
    __cg_jv=("${__cg_jv[@]/#/"$__cg_q"}")
    __cg_jv=("${__cg_jv[@]/%/"$__cg_q"}")
}

# __cg_jstr STRING: set __cg_j to the JSON literal of STRING.
__cg_jstr() {
    __cg_j=("$1")
    __cg_json __cg_j
}

# __cg_utf8_clean NAME: make every element of the array NAME valid UTF-8 by
# replacing offending bytes with U+FFFD.  The kernel's JSON parser rejects
# invalid text and would treat it as a protocol violation.  glibc's regex
# does the checking (`.` matches no invalid byte); it is laxer than UTF-8
# proper about surrogates and code points past U+10FFFF, which a second,
# byte-wise pass removes.
__cg_utf8_clean() {
    local -n __cg_uv=$1
    local __cg_ui __cg_uall LC_ALL=$__cg_u8
    printf -v __cg_uall '%s' "${__cg_uv[@]}"
    if ! [[ $__cg_uall =~ ^.*$ ]]; then
        for __cg_ui in "${!__cg_uv[@]}"; do
            [[ ${__cg_uv[__cg_ui]} =~ ^.*$ ]] && continue
            __cg_utf8_fix "${__cg_uv[__cg_ui]}"
            __cg_uv[__cg_ui]=$__cg_fixed
        done
    fi
    # Byte-wise: surrogates, then code points past U+10FFFF.
    LC_ALL=C
    local __cg_pat __cg_fffd=$'\xef\xbf\xbd' __cg_c='[\x80-\xbf]'
    for __cg_pat in "\xed[\xa0-\xbf]$__cg_c" \
        "\xf4[\x90-\xbf]$__cg_c$__cg_c" \
        "[\xf5-\xf7]$__cg_c$__cg_c$__cg_c" \
        "[\xf8-\xfb]$__cg_c$__cg_c$__cg_c$__cg_c" \
        "[\xfc-\xfd]$__cg_c$__cg_c$__cg_c$__cg_c$__cg_c"; do
        printf -v __cg_pat "$__cg_pat"
        [[ $__cg_uall == *$__cg_pat* ]] || continue
        __cg_uv=("${__cg_uv[@]//$__cg_pat/"$__cg_fffd"}")
    done
}

# __cg_utf8_fix STRING: set __cg_fixed to STRING with each byte glibc cannot
# decode replaced by U+FFFD.  Each invalid byte counts as one character in a
# UTF-8 locale, so cutting by characters never splits a valid sequence; the
# 1024-character pieces keep the cost linear for long binary junk.
__cg_utf8_fix() {
    local LC_ALL=$__cg_u8 s=$1 piece off
    __cg_fixed=
    for ((off = 0; off < ${#s}; off += 1024)); do
        piece=${s:off:1024}
        while [[ -n $piece ]]; do
            [[ $piece =~ ^.* ]]
            __cg_fixed+=${BASH_REMATCH[0]}
            piece=${piece:${#BASH_REMATCH[0]}}
            [[ -n $piece ]] && { __cg_fixed+=$'\xef\xbf\xbd'; piece=${piece:1}; }
        done
    done
}

# --- execute ----------------------------------------------------------------

# __cg_pre ALLOW: first thing on an execute line.  Keeps the previous cell's
# status as `$?` for the user's code, and the cell's stderr as fd 251 (for
# __cg_interrupted).
__cg_pre() {
    { __cg_in_cell=1; local - __cg_flags=$- __cg_rematch=("${BASH_REMATCH[@]}"); set +x; } 2>/dev/null
    exec 251>&2 || exec 251>&-   # fd 2 may be closed: then 251 is too
    __cg_allow=$1
    __cg_send '{"t":"started"}'  # before the cell's code (PROTOCOL.md)
    __cg_keep_status
}

# __cg_keep_status: the last statement of every entry point, so that `$?`
# stays the last cell's status across requests (not under the user's
# `set -e`, where a failing status would make the shell exit), and the
# user's BASH_REMATCH survives our regexes.  Reads the caller's __cg_flags
# (`$-` from before it changed any option) and __cg_rematch.
__cg_keep_status() {
    BASH_REMATCH=("${__cg_rematch[@]}")
    [[ $__cg_flags == *e* ]] || return "$__cg_status"
}

# __cg_set_status N: make `$?` N.
__cg_set_status() {
    return "$1"
}

# __cg_done STATUS [NAME EXPR]...: the second execute line.  Reports a
# failing status, evaluates the user expressions and sends `done`.
__cg_done() {
    { __cg_in_cell=0; local - __cg_flags=$- __cg_rematch=("${BASH_REMATCH[@]}"); set +euvx +o pipefail; } 2>/dev/null
    local IFS=$' \t\n' __cg_st=$1 __cg_ev __cg_body=
    shift
    __cg_status=$__cg_st __cg_allow=0
    if ((__cg_muted)); then   # the cell was interrupted: its stderr back
        exec 2>&251
        __cg_muted=0
    fi
    if ((__cg_rearm)); then
        trap __cg_interrupted INT
        __cg_rearm=0
    fi
    if ((__cg_st != 0)); then
        __cg_ev="exit status $__cg_st"
        ((__cg_st == 130)) && __cg_ev+=" (interrupted)"
        __cg_send '{"t":"sync"}'   # the cell's own output goes first
        __cg_send '{"t":"error","ename":"ExitStatus","evalue":"%s","traceback":["%s"]}' \
            "$__cg_ev" "$__cg_ev"
    fi
    (($# >= 2)) && __cg_user_expressions "$@"
    __cg_send '{"t":"done","user_expressions":{%s}}' "$__cg_body"
    __cg_keep_status
}

# __cg_user_expressions NAME EXPR...: set __cg_body (in __cg_done) to the
# members of the user_expressions object.  Each EXPR runs as a command in a
# subshell, so it sees the cell's state and `$?` but cannot change them.
__cg_user_expressions() {
    local __cg_names=() __cg_outs=() __cg_codes=() __cg_out __cg_rc __cg_i
    local __cg_trap
    __cg_trap=$(trap -p INT)
    # An interrupt now stops the expression being evaluated, not __cg_done:
    # a trapped SIGINT no longer makes bash drop the line.
    trap : INT
    while (($# >= 2)); do
        { __cg_out=$(__cg_set_status "$__cg_st"; eval "$2" </dev/null); __cg_rc=$?; } 2>/dev/null
        __cg_names+=("$1") __cg_outs+=("$__cg_out") __cg_codes+=("$__cg_rc")
        shift 2
    done
    eval "${__cg_trap:-trap - INT}"
    __cg_json __cg_names
    __cg_json __cg_outs
    local __cg_members=()
    for __cg_i in "${!__cg_names[@]}"; do
        if ((__cg_codes[__cg_i] == 0)); then
            printf -v __cg_out '%s:{"status":"ok","data":{"text/plain":%s},"metadata":{}}' \
                "${__cg_names[__cg_i]}" "${__cg_outs[__cg_i]}"
        else
            printf -v __cg_out '%s:{"status":"error","ename":"ExitStatus","evalue":"exit status %s","traceback":[]}' \
                "${__cg_names[__cg_i]}" "${__cg_codes[__cg_i]}"
        fi
        __cg_members+=("$__cg_out")
    done
    printf -v __cg_body '%s,' "${__cg_members[@]}"
    __cg_body=${__cg_body%,}
}

# --- interrupt ----------------------------------------------------------------

# __cg_interrupted: the SIGINT trap, set at start-up.  When interactive bash
# drops an interrupted line, it first writes a newline to stderr (to end the
# terminal's `^C` line): in a notebook, an empty stderr line before the
# cell's error.  So during a cell the trap points fd 2 at /dev/null (only
# when fd 2 is still the cell's stderr, kept by __cg_pre as fd 251;
# __cg_done puts it back), takes itself away (__cg_done sets it again) and
# interrupts bash again, which then drops the line as if no trap had been
# set: bash acts on the signal when it starts its next command, hence the
# `:` after `kill`.  Between cells a SIGINT is ignored.  A trap the user sets
# replaces this one, and bash then behaves as it would for the user.
__cg_interrupted() {
    { local -; set +x; } 2>/dev/null
    ((__cg_in_cell)) || return 0
    if [[ /dev/fd/2 -ef /dev/fd/251 ]]; then
        exec 2>/dev/null
        __cg_muted=1
    fi
    trap - INT
    __cg_rearm=1
    kill -INT "$BASHPID"
    :
}

# --- input --------------------------------------------------------------------

# read: the builtin, except when it would read the cell's own stdin (the
# /dev/null of the execute line).  Then, if the cell allows input, the
# kernel is asked for a line and the builtin reads that line, with the
# caller's options, names and IFS; otherwise it fails with a clear message.
read() {
    { local -; set +euvx; } 2>/dev/null
    if ! [ /dev/stdin -ef /dev/null ]; then
        builtin read "$@"
        return
    fi
    local __cg_o OPTIND=1 OPTARG __cg_prompt= __cg_pw=false __cg_d=$'\n' __cg_opts=()
    while getopts ':a:d:ei:n:N:p:rst:u:' __cg_o; do
        case $__cg_o in
            p) __cg_prompt=$OPTARG ;;
            s) __cg_pw=true ;;
            d) __cg_d=$OPTARG
               __cg_opts+=(-d "$OPTARG") ;;
            t) [[ $OPTARG == *[1-9]* ]] || { builtin read "$@"; return; }  # -t 0 polls
               __cg_opts+=(-t "$OPTARG") ;;
            [aiNn]) __cg_opts+=("-$__cg_o" "$OPTARG") ;;
            [er]) __cg_opts+=("-$__cg_o") ;;
            *) builtin read "$@"; return ;;  # -u, or a bad option the builtin will report
        esac
    done
    shift "$((OPTIND - 1))"
    if [[ $__cg_allow != 1 ]]; then
        builtin printf '%s\n' 'bash: read: stdin is not available: this client does not allow input (allow_stdin is false)' >&2
        return 1
    fi
    __cg_request_input "$__cg_prompt" "$__cg_pw" || return
    if [[ -z $__cg_d ]]; then   # -d '': a NUL ends the line, and a here-string cannot hold one
        builtin read "${__cg_opts[@]}" "$@" < <(builtin printf '%s\0' "$__cg_reply")
    elif [[ $__cg_d == $'\n'* ]]; then
        builtin read "${__cg_opts[@]}" "$@" <<<"$__cg_reply"
    else
        builtin read "${__cg_opts[@]}" "$@" <<<"$__cg_reply${__cg_d:0:1}"
    fi
}

# __cg_request_input PROMPT PASSWORD: send `input` and set __cg_reply to the
# kernel's answer.  Fails at end of input.
__cg_request_input() {
    local __cg_j __cg_rematch=("${BASH_REMATCH[@]}")
    __cg_jstr "$1"
    BASH_REMATCH=("${__cg_rematch[@]}")   # the UTF-8 check may use a regex
    __cg_send '{"t":"sync"}'   # show what the cell printed before the prompt
    __cg_send '{"t":"input","prompt":%s,"password":%s}' "$__cg_j" "$2"
    __cg_await_reply
}

# __cg_await_reply: read the kernel's `#VALUE` line from the code pipe (fd 254)
# into __cg_reply.  Bash's parser reads the pipe 1024 bytes at a time, so
# after a long execute line the rest of the `__cg_done` line may still be in
# the pipe, ahead of the reply.  Whatever comes before the reply is taken out
# and written back behind it, where the parser will find it; an interrupt
# while waiting writes it back too, then drops the line as bash would.
__cg_await_reply() {
    local __cg_line __cg_stolen=() __cg_rc __cg_trap
    __cg_trap=$(trap -p INT)
    trap __cg_abort_read INT
    while IFS= builtin read -r -u 254 __cg_line; __cg_rc=$?; ((__cg_rc == 0)); do
        if [[ $__cg_line == '#'* ]]; then
            __cg_reply=${__cg_line#'#'}
            break
        fi
        __cg_stolen+=("$__cg_line")
    done
    __cg_give_back
    eval "${__cg_trap:-trap - INT}"
    return "$__cg_rc"
}

# __cg_abort_read: the SIGINT trap while __cg_await_reply waits.  Gives back
# what was taken, restores the user's SIGINT disposition and interrupts bash
# again, so that it drops the line as if no trap had been set.  Bash acts on
# the signal when it starts its next command, hence the `:` after `kill`.
__cg_abort_read() {
    __cg_give_back
    eval "${__cg_trap:-trap - INT}"
    kill -INT "$BASHPID"
    :
}

# __cg_give_back: put the lines in __cg_stolen (of __cg_await_reply) back
# into the code pipe.  /proc lets us open the pipe's write end.
__cg_give_back() {
    ((${#__cg_stolen[@]})) || return 0
    builtin printf '%s\n' "${__cg_stolen[@]}" >>"/proc/$BASHPID/fd/254"
    __cg_stolen=()
}

# --- complete -----------------------------------------------------------------

# __cg_complete CODE CURSOR: complete the word that ends at CURSOR (a
# code-point offset): a variable after `$`, a command name where a command
# starts, a file name elsewhere.
__cg_complete() {
    { local - __cg_flags=$- __cg_rematch=("${BASH_REMATCH[@]}"); set +euvx +o pipefail; } 2>/dev/null
    local IFS=$' \t\n' LC_ALL=$__cg_u8 pre word before start __cg_m=() __cg_j
    pre=${1:0:$2}
    [[ $pre =~ $__cg_re_chars$ ]]
    word=${BASH_REMATCH[0]}
    before=${pre:0:${#pre}-${#word}}
    start=$((${#pre} - ${#word}))
    if [[ $word =~ \$(\{?)([A-Za-z_][A-Za-z0-9_]*)?$ ]]; then
        start=$((${#pre} - ${#BASH_REMATCH[0]}))
        __cg_complete_variables "${BASH_REMATCH[2]}" "${BASH_REMATCH[1]}"
    elif [[ $word != */* && $word != [~.]* ]] && __cg_at_command_start "$before"; then
        __cg_complete_commands "$word"
    else
        __cg_complete_files "$word"
    fi
    __cg_sort_unique __cg_m
    __cg_json __cg_m
    printf -v __cg_j '%s,' "${__cg_m[@]}"
    __cg_send '{"t":"reply","matches":[%s],"cursor_start":%d,"cursor_end":%d,"metadata":{}}' \
        "${__cg_j%,}" "$start" "${#pre}"
    __cg_keep_status
}

# __cg_at_command_start TEXT: is the end of TEXT a place where a command name
# goes (start of code, after an operator, after a keyword like `then`)?
__cg_at_command_start() {
    local b=$1
    while [[ $b == *[' '$'\t'] ]]; do b=${b%?}; done
    [[ -z $b || $b == *[';|&(`{'$'\n'] ]] && return 0
    case ${b##*[[:space:];|&(]} in
        then | do | else | elif | if | while | until | time | '!' | exec | command | builtin | sudo | nohup)
            return 0 ;;
    esac
    return 1
}

# __cg_complete_variables PREFIX BRACE: matches `$NAME` (or `${NAME}`).
__cg_complete_variables() {
    local name
    while IFS= builtin read -r name; do
        [[ $name == __cg_* ]] && continue
        if [[ -n $2 ]]; then __cg_m+=("\${$name}"); else __cg_m+=("\$$name"); fi
    done < <(compgen -v -- "$1")
}

# __cg_complete_commands PREFIX: builtins, keywords, functions, aliases and
# programs on PATH, without the driver's own functions.
__cg_complete_commands() {
    mapfile -t __cg_m < <(compgen -c -- "$1")
    local i
    for i in "${!__cg_m[@]}"; do
        [[ ${__cg_m[i]} == __cg_* ]] && unset '__cg_m[i]'
    done
}

# __cg_complete_files WORD: file names, directories with a trailing `/`,
# with shell-special characters backslash-escaped as a shell would need them.
__cg_complete_files() {
    local w=${1//\\/} f i
    mapfile -t __cg_m < <(compgen -f -- "$w")
    for i in "${!__cg_m[@]}"; do
        f=${__cg_m[i]}
        [[ -d ${f/#\~/$HOME} && $f != */ ]] && __cg_m[i]=$f/
    done
    local c r
    for c in '\' ' ' $'\t' '"' "'" '$' '&' ';' '|' '(' ')' '<' '>' '*' '?' '[' ']' '{' '}' '!' '#' '`'; do
        r="\\$c"
        __cg_m=("${__cg_m[@]//"$c"/"$r"}")
    done
}

# __cg_sort_unique NAME: sort the array NAME bytewise and drop duplicates.
__cg_sort_unique() {
    local -n __cg_sv=$1
    ((${#__cg_sv[@]})) || return 0
    if type -P sort >/dev/null; then
        mapfile -t -d '' __cg_sv < <(builtin printf '%s\0' "${__cg_sv[@]}" | LC_ALL=C sort -zu)
        return
    fi
    # No sort(1) on the user's PATH: at least drop the duplicates.
    local -A __cg_seen=()
    local __cg_x __cg_kept=()
    for __cg_x in "${__cg_sv[@]}"; do
        [[ -n ${__cg_seen[$__cg_x]-} ]] && continue
        __cg_seen[$__cg_x]=1
        __cg_kept+=("$__cg_x")
    done
    __cg_sv=("${__cg_kept[@]}")
}

# --- inspect ------------------------------------------------------------------

# __cg_inspect CODE CURSOR DETAIL: describe the word around CURSOR.  Nothing
# is run: builtins and keywords get `help`, functions their definition,
# programs and aliases `type -a`, `$NAME` the variable's `declare -p`.
__cg_inspect() {
    { local - __cg_flags=$- __cg_rematch=("${BASH_REMATCH[@]}"); set +euvx +o pipefail; } 2>/dev/null
    local IFS=$' \t\n' LC_ALL=$__cg_u8 word name text= __cg_j
    [[ ${1:0:$2} =~ $__cg_re_chars$ ]] && word=${BASH_REMATCH[0]}
    [[ ${1:$2} =~ ^$__cg_re_chars ]] && word+=${BASH_REMATCH[0]}
    if [[ $word =~ ^\$\{?([A-Za-z_][A-Za-z0-9_]*)\}?$ ]]; then
        text=$(declare -p -- "${BASH_REMATCH[1]}" 2>/dev/null)
    elif [[ -n $word ]]; then
        name=${word//\\/}
        case $(type -t -- "$name" 2>/dev/null) in
            keyword | builtin) text=$(help -- "$name" 2>/dev/null) ;;
            function)
                if [[ $name == read ]]; then   # our shadow: describe the builtin
                    text=$(help read 2>/dev/null)
                else
                    text=$(declare -f -- "$name")
                fi ;;
            alias | file) text=$(type -a -- "$name" 2>/dev/null) ;;
        esac
    fi
    if [[ -z $text ]]; then
        __cg_send '{"t":"reply","found":false,"data":{},"metadata":{}}'
    else
        __cg_jstr "$text"
        __cg_send '{"t":"reply","found":true,"data":{"text/plain":%s},"metadata":{}}' "$__cg_j"
    fi
    __cg_keep_status
}

# --- is_complete --------------------------------------------------------------

# __cg_is_complete CODE: let a child `bash -n` parse CODE (it is never run
# here) and tell complete, incomplete (the parser hit the end of the input,
# or a here-document, or a line continuation, is left open) or invalid.
__cg_is_complete() {
    { local - __cg_flags=$- __cg_rematch=("${BASH_REMATCH[@]}"); set +euvx +o pipefail; } 2>/dev/null
    local err rc status=complete opts=()
    shopt -q extglob && opts+=(-O extglob)
    err=$(LC_ALL=C "${BASH:-bash}" --norc --noprofile "${opts[@]}" -n 2>&1 >/dev/null <<<"$1")
    rc=$?
    if ((rc != 0)); then
        case $err in
            *'unexpected end of file'* | *'unexpected EOF'*) status=incomplete ;;
            *) status=invalid ;;
        esac
    elif [[ $err == *'here-document'*'delimited by end-of-file'* ]]; then
        status=incomplete
    elif [[ $1 =~ (\\+)$ ]] && ((${#BASH_REMATCH[1]} % 2 == 1)); then
        status=incomplete
    fi
    __cg_send '{"t":"reply","status":"%s","indent":""}' "$status"
    __cg_keep_status
}

# --- start-up -----------------------------------------------------------------

# __cg_pick_utf8_locale: set __cg_u8 to a UTF-8 locale that works here (for
# code-point offsets and the UTF-8 check), or C if there is none.
__cg_pick_utf8_locale() {
    local l e=$'\xc3\xa9'
    for l in C.UTF-8 C.utf8 en_US.UTF-8 "${LANG:-C}"; do
        if (LC_ALL=$l; ((${#e} == 1))) 2>/dev/null; then
            __cg_u8=$l
            return
        fi
    done
    __cg_u8=C
}
__cg_pick_utf8_locale
trap __cg_interrupted INT

__cg_send '{"t":"ready","language_version":"%s"}' \
    "${BASH_VERSINFO[0]}.${BASH_VERSINFO[1]}.${BASH_VERSINFO[2]}"
