# cellgate's Perl driver: the process that runs a notebook's Perl code.
#
# The cellgate kernel (C) starts this whole file as
#
#     /usr/bin/perl -e "<this file>"
#
# in its own process group with CELLGATE_DRIVER=1 and CELLGATE_CONTROL_FD=3.
# fd 3 is an AF_UNIX stream socket carrying JSON lines both ways (see
# PROTOCOL.md next to this file), fd 1/2 are raw pipes the kernel shows as
# stream output, fd 0 is /dev/null.  Only core modules are used.
#
# Cells:
#   * every cell is compiled as `sub { CELL }` in package main with
#     `no strict` (so `$x = 1` persists) and run; subs, `use`d modules and
#     package variables persist because they live in the package;
#   * a `my` declaration at the top level of a cell (brace depth 0, start of
#     a statement) is rewritten to `our`, so `my $x = 1;` in one cell is
#     visible in the next.  `my` inside blocks and subs is left alone.
#     Without the rewrite every top-level `my` would silently vanish at the
#     end of its cell (each cell is a separate compilation unit);
#   * Perl has no "value of the last expression" worth showing (print
#     returns 1, assignments return their value), so no `result` is sent;
#   * a die is one `error` record: ename is the class of an exception
#     object, "Error" for a plain string, "SyntaxError"/"CompileError" when
#     the cell does not compile, "KeyboardInterrupt" for SIGINT;
#   * STDOUT/STDERR are tied: output is buffered and sent as `stream`
#     records (64 KiB, $| set, 50 ms since the last send, before any other
#     record, before system/exec/fork/backticks, at the end of the cell);
#   * STDIN is tied: <STDIN> asks the notebook through an `input` record.

package CellGate;
use strict;
use JSON::PP ();
use Time::HiRes ();
use Fcntl ();

use constant {
    FLUSH_AT     => 64 * 1024,   # buffered bytes that trigger a send
    FLUSH_AFTER  => 0.05,        # seconds: a write this long after the last send goes out now
    STREAM_CHUNK => 1 << 20,     # bytes per stream record
    FIONREAD     => 0x541B,      # <asm-generic/ioctls.h>
};

my $CTL_FD = $ENV{CELLGATE_CONTROL_FD} // 3;
open(my $CTL, '+<&=', $CTL_FD) or POSIX_exit(1, "cannot open fd $CTL_FD: $!");
binmode $CTL;
# children started by system() must not inherit the control socket
fcntl($CTL, Fcntl::F_SETFD(), Fcntl::FD_CLOEXEC());
open(my $RAW_OUT, '>&=', 1);
open(my $RAW_ERR, '>&=', 2);
my %RAW = (stdout => $RAW_OUT, stderr => $RAW_ERR);

my $JSON = JSON::PP->new->utf8->canonical->allow_nonref->allow_unknown->allow_blessed;

our $RUNNING = 0;          # user code is running: SIGINT dies
our $IN_SEND = 0;          # writing to fd 3: SIGINT waits until the line is whole
our $PENDING_INT = 0;
our $IN_CHILD = 0;         # in a child forked by a cell: fd 3 is not ours
our $ALLOW_STDIN = 0;
my %SOURCES;               # "<cell N>" -> [lines], for tracebacks

sub POSIX_exit {
    my ($code, $why) = @_;
    syswrite(STDERR, "cellgate perl driver: $why\n") if defined $why;
    require POSIX;
    POSIX::_exit($code);
}

sub log_line {
    my ($message) = @_;
    my $line = "cellgate perl driver: $message\n";
    utf8::encode($line) if utf8::is_utf8($line);
    syswrite($RAW_ERR, $line);
}

# ---------------------------------------------------------------------------
# The control channel

sub write_line {
    my ($bytes) = @_;
    local $IN_SEND = 1;   # SIGINT now only sets $PENDING_INT
    my $off = 0;
    while ($off < length $bytes) {
        my $n = syswrite($CTL, $bytes, length($bytes) - $off, $off);
        if (!defined $n) {
            next if $!{EINTR} || $!{EAGAIN};
            POSIX_exit(0);  # the kernel is gone: nobody left to talk to
        }
        $off += $n;
    }
}

# A SIGINT that arrived mid-write is raised once the line is complete.
sub raise_pending {
    if ($PENDING_INT && !$IN_SEND) {
        $PENDING_INT = 0;
        die KeyboardInterrupt->new if $RUNNING;
    }
}

# Raw output of subprocesses waiting unread in fd 1/2 was written before
# what we are about to send: ask the kernel to drain the pipes first.
sub sync_raw {
    for my $fh ($RAW_OUT, $RAW_ERR) {
        my $n = pack('L', 0);
        next unless ioctl($fh, FIONREAD, $n);
        if (unpack('L', $n)) {
            write_line(qq({"t":"sync"}\n));
            return;
        }
    }
}

sub send_record {
    my ($record) = @_;
    return if $IN_CHILD;
    flush_streams();
    my $line = $JSON->encode($record) . "\n";
    {
        local $IN_SEND = 1;
        sync_raw();
        write_line($line);
    }
    raise_pending();
}

my $RBUF = '';
my @HELD;   # requests that arrived while <STDIN> waited for its reply

# The next request (a hash), or undef at end of file.
sub next_message {
    return shift @HELD if @HELD;
    while (1) {
        my $nl = index($RBUF, "\n");
        if ($nl < 0) {
            my $n = sysread($CTL, $RBUF, 1 << 16, length $RBUF);
            if (!defined $n) {
                next if $!{EINTR};
                return undef;
            }
            return undef if $n == 0;
            next;
        }
        my $line = substr($RBUF, 0, $nl + 1, '');
        my $msg = eval { $JSON->decode($line) };
        return $msg if ref $msg eq 'HASH';
        log_line("bad request line: " . substr($line, 0, 200));
    }
}

# ---------------------------------------------------------------------------
# Output: one buffer holding text of one stream at a time, so the order
# across stdout and stderr is exact.

my $BUF = '';
my $BUF_NAME = 'stdout';
my $LAST_FLUSH = 0;

sub flush_streams {
    return unless length $BUF;
    if ($IN_CHILD) {
        syswrite($RAW{$BUF_NAME}, $BUF);
        $BUF = '';
        return;
    }
    local $IN_SEND = 1;
    sync_raw();
    while (length $BUF) {
        my $take = length($BUF) > STREAM_CHUNK ? STREAM_CHUNK : length $BUF;
        # never cut a UTF-8 sequence: back up over continuation bytes
        $take-- while $take < length($BUF) && $take > 1
            && (ord(substr($BUF, $take, 1)) & 0xC0) == 0x80;
        my $chunk = substr($BUF, 0, $take, '');
        write_line(qq({"t":"stream","name":"$BUF_NAME","bytes":) . length($chunk) . "}\n" . $chunk);
    }
    $LAST_FLUSH = Time::HiRes::time();
}

# Text as valid UTF-8 bytes.  Character strings are encoded; byte strings
# are taken as UTF-8 when they are valid, else as Latin-1.
sub to_bytes {
    my ($s) = @_;
    $s = '' unless defined $s;
    if (utf8::is_utf8($s)) {
        utf8::encode($s);
    } elsif ($s =~ /[\x80-\xff]/) {
        my $copy = $s;
        if (!utf8::decode($copy)) {
            utf8::upgrade($s);
            utf8::encode($s);
        }
    }
    return $s;
}

sub autoflush_on {
    my ($name) = @_;
    return 1 if $name eq 'stderr';   # STDERR is unbuffered in Perl too
    my $old = select(*main::STDOUT);
    my $on = $|;
    select($old);
    return $on;
}

sub emit {
    my ($name, $text) = @_;
    my $bytes = to_bytes($text);
    if ($IN_CHILD) {
        syswrite($RAW{$name}, $bytes);
        return;
    }
    flush_streams() if $BUF_NAME ne $name;
    $BUF_NAME = $name;
    $BUF .= $bytes;
    if (length($BUF) >= FLUSH_AT || autoflush_on($name)
        || Time::HiRes::time() - $LAST_FLUSH >= FLUSH_AFTER) {
        flush_streams();
        raise_pending();
    }
}

package CellGate::Output;   # tied STDOUT / STDERR

sub TIEHANDLE { my ($class, $name, $fd) = @_; bless { name => $name, fd => $fd }, $class }
sub PRINT {
    my $self = shift;
    my $text = join(defined $, ? $, : '', map { defined $_ ? $_ : '' } @_);
    $text .= $\ if defined $\;
    CellGate::emit($self->{name}, $text);
    return 1;
}
sub PRINTF {
    my $self = shift;
    my $format = shift;
    CellGate::emit($self->{name}, sprintf($format, @_));
    return 1;
}
sub WRITE {
    my ($self, $buf, $len, $offset) = @_;
    $len = length($buf) unless defined $len;
    CellGate::emit($self->{name}, substr($buf, $offset || 0, $len));
    return $len;
}
sub FILENO { $_[0]{fd} }       # for code that dups STDOUT for a child
sub BINMODE { 1 }
sub CLOSE { CellGate::flush_streams(); 1 }   # closing would silence the notebook
sub OPEN { 1 }
sub EOF { 0 }
sub UNTIE { CellGate::flush_streams() }

package CellGate::Input;    # tied STDIN

sub TIEHANDLE { bless {}, shift }
sub READLINE {
    my $line = CellGate::request_input();
    return wantarray ? ($line) : $line;   # list context: one line, not forever
}
sub GETC { substr(CellGate::request_input(), 0, 1) }
sub READ {
    my $line = CellGate::request_input();
    my $len = $_[2];
    $_[1] = substr($line, 0, $len);
    return length $_[1];
}
sub EOF { !$CellGate::ALLOW_STDIN }
sub FILENO { 0 }
sub BINMODE { 1 }
sub CLOSE { 1 }

package CellGate;

# A line from the notebook user (with "\n"), through an `input` record.
sub request_input {
    die StdinNotImplementedError->new(
        "reading STDIN was requested, but this client does not support input "
        . "requests (allow_stdin is false)") if !$ALLOW_STDIN || $IN_CHILD;
    send_record({t => 'input', prompt => '', password => JSON::PP::false});
    while (1) {
        my $msg = next_message();
        die EOFError->new("the kernel closed the control channel") unless $msg;
        if (($msg->{t} // '') eq 'input_reply') {
            my $value = $msg->{value};
            return (defined $value && !ref $value ? $value : '') . "\n";
        }
        push @HELD, $msg;   # not ours: the request loop's
    }
}

# ---------------------------------------------------------------------------
# Exception classes the driver raises

package CellGate::Exception;
sub new { my ($class, $message) = @_; bless { message => $message // '' }, $class }
sub message { $_[0]{message} }
use overload '""' => sub { $_[0]{message} }, fallback => 1;

@KeyboardInterrupt::ISA = ('CellGate::Exception');
@StdinNotImplementedError::ISA = ('CellGate::Exception');
@EOFError::ISA = ('CellGate::Exception');
@SystemExit::ISA = ('CellGate::Exception');

package CellGate;

# ---------------------------------------------------------------------------
# Builtins that must see our buffered output first

sub install_overrides {
    no warnings 'once';
    *CORE::GLOBAL::system = sub { flush_streams(); CORE::system(@_) };
    *CORE::GLOBAL::exec = sub { flush_streams(); CORE::exec(@_) };
    *CORE::GLOBAL::readpipe = sub { flush_streams(); CORE::readpipe($_[0]) };
    *CORE::GLOBAL::fork = sub {
        flush_streams();
        my $pid = CORE::fork();
        $IN_CHILD = 1 if defined $pid && $pid == 0;
        return $pid;
    };
    # `exit` in a cell ends the cell, not the notebook's interpreter
    *CORE::GLOBAL::exit = sub {
        my $code = @_ ? $_[0] : 0;
        if ($IN_CHILD) { flush_streams(); CORE::exit($code) }
        die SystemExit->new($code // 0);
    };
}

# ---------------------------------------------------------------------------
# A cheap Perl lexer: brackets, quotes, q-like operators, heredocs, comments
# and POD.  It answers is_complete and finds top-level `my` declarations.
# Regex literals (/.../) are not recognised: `/` is an operator here.

my %CLOSER = ('(' => ')', '[' => ']', '{' => '}', '<' => '>');

# Returns { depth, state ('code'|'string'|'heredoc'|'pod'), invalid,
# starts => [offsets where a statement starts at depth 0] }.
sub scan_perl {
    my ($code) = @_;
    my @stack;
    my @starts = (0);
    my @heredocs;   # terminators waiting for the next line
    my $pos = 0;
    my $len = length $code;
    while ($pos < $len) {
        my $c = substr($code, $pos, 1);
        if ($c eq "\n" && @heredocs) {
            # the bodies of the heredocs opened on this line follow it
            pos($code) = $pos + 1;
            while (my $term = shift @heredocs) {
                return { state => 'heredoc', depth => scalar @stack, starts => \@starts }
                    unless $code =~ /\G.*?^[ \t]*\Q$term\E[ \t]*(?:\n|\z)/gcms;
            }
            $pos = pos($code);
            next;
        }
        if ($c eq '#') {
            my $nl = index($code, "\n", $pos);
            $pos = $nl < 0 ? $len : $nl;
            next;
        }
        if ($c eq '=' && ($pos == 0 || substr($code, $pos - 1, 1) eq "\n")
            && substr($code, $pos) =~ /^=[a-zA-Z]/) {
            pos($code) = $pos;
            return { state => 'pod', depth => scalar @stack, starts => \@starts }
                unless $code =~ /\G.*?^=cut\b[^\n]*(?:\n|\z)/gcms;
            $pos = pos($code);
            next;
        }
        if ($c eq '"' || $c eq "'" || $c eq '`') {
            my $end = find_close($code, $pos + 1, $c, $c);
            return { state => 'string', depth => scalar @stack, starts => \@starts } if $end < 0;
            $pos = $end + 1;
            next;
        }
        if ($c =~ /[a-z]/ && ($pos == 0 || substr($code, $pos - 1, 1) !~ /[\w\$\@%&:>-]/)) {
            pos($code) = $pos;
            if ($code =~ /\G(qq|qw|qx|qr|q|m|s|tr|y)\s*([^\w\s])/gc
                && !($2 eq '=' && substr($code, pos($code), 1) eq '>')) {
                my ($op, $open) = ($1, $2);
                my $close = $CLOSER{$open} // $open;
                my $end = find_close($code, pos($code), $open, $close);
                if ($end >= 0 && ($op eq 's' || $op eq 'tr' || $op eq 'y')) {
                    # the replacement part: s{a}{b} or s/a/b/
                    my $next = $end + 1;
                    if ($close ne $open) {
                        pos($code) = $next;
                        $code =~ /\G\s*([^\w\s])/gc or return { state => 'string', depth => scalar @stack, starts => \@starts };
                        my $o2 = $1;
                        $end = find_close($code, pos($code), $o2, $CLOSER{$o2} // $o2);
                    } else {
                        $end = find_close($code, $next, $open, $close);
                    }
                }
                return { state => 'string', depth => scalar @stack, starts => \@starts } if $end < 0;
                $pos = $end + 1;
                next;
            }
            $code =~ /\G\w+/gc;
            $pos = pos($code);
            next;
        }
        if ($c eq '<' && substr($code, $pos) =~ /^<<(~?)(?:"([^"\n]*)"|'([^'\n]*)'|([A-Za-z_]\w*))/) {
            push @heredocs, $2 // $3 // $4;
            $pos += length $&;
            next;
        }
        if ($c eq '$') {
            # $# $' $" $` $; are variables, not comments, quotes or ends
            $pos += substr($code, $pos + 1, 1) =~ /^[#'"`;]$/ ? 2 : 1;
            next;
        }
        if ($c eq '(' || $c eq '[' || $c eq '{') {
            push @stack, $c;
        } elsif ($c eq ')' || $c eq ']' || $c eq '}') {
            my $open = pop @stack;
            return { invalid => 1, depth => 0, state => 'code', starts => \@starts }
                if !defined $open || $CLOSER{$open} ne $c;
            push @starts, $pos + 1 if $c eq '}' && !@stack;
        } elsif ($c eq ';' && !@stack) {
            push @starts, $pos + 1;
        }
        $pos++;
    }
    return { state => @heredocs ? 'heredoc' : 'code', depth => scalar @stack, starts => \@starts };
}

# Offset of the unescaped close delimiter from $pos (nesting when the
# delimiters differ), or -1.
sub find_close {
    my ($code, $pos, $open, $close) = @_;
    my $depth = 0;
    my $len = length $code;
    for (; $pos < $len; $pos++) {
        my $c = substr($code, $pos, 1);
        if ($c eq '\\') { $pos++; next }
        if ($c eq $close) {
            return $pos if $depth == 0;
            $depth--;
        } elsif ($c eq $open && $open ne $close) {
            $depth++;
        }
    }
    return -1;
}

sub is_complete {
    my ($code) = @_;
    return ('complete', undef) unless $code =~ /\S/;
    my $scan = scan_perl($code);
    return ('invalid', undef) if $scan->{invalid};
    return ('incomplete', '') if $scan->{state} ne 'code';
    return ('incomplete', '    ' x $scan->{depth}) if $scan->{depth};
    return ('complete', undef);
}

# `my VARS` starting a top-level statement becomes `our VARS` (and
# `my VARS;` becomes `our VARS = ();`, so re-running a cell starts afresh
# as it would with `my`).  Anything the lexer is unsure of stays as it is.
sub globalize_my {
    my ($code) = @_;
    my $scan = scan_perl($code);
    return $code if $scan->{invalid} || $scan->{state} ne 'code' || $scan->{depth};
    my $vars = qr/(?:[\$\@%][A-Za-z_]\w*|\(\s*[\$\@%][A-Za-z_]\w*(?:\s*,\s*[\$\@%][A-Za-z_]\w*)*\s*\))/;
    for my $start (reverse @{ $scan->{starts} }) {
        pos($code) = $start;
        next unless $code =~ /\G((?:\s|#[^\n]*\n)*)my(\s*)($vars)(\s*;)?/gc;
        my ($space, $gap, $decl, $semi) = ($1, $2, $3, $4);
        my $replacement = $space . 'our' . ($gap eq '' ? ' ' : $gap) . $decl
            . (defined $semi ? " = ()$semi" : '');
        substr($code, $start, pos($code) - $start) = $replacement;
    }
    return $code;
}

# ---------------------------------------------------------------------------
# Errors and tracebacks

my ($LAST_DIE, $LAST_FRAMES);

# $SIG{__DIE__} while a cell runs: remember the stack of the latest die.
sub capture_stack {
    my ($error) = @_;
    my @raw;
    for (my $i = 0; my @c = caller($i); $i++) {
        push @raw, [$c[1], $c[2], $c[3]];
    }
    my @frames;
    for my $i (0 .. $#raw) {
        my ($file, $line) = @{ $raw[$i] };
        next if $file eq '-e';   # the driver's own frames
        my $outer = $raw[$i + 1];
        my $in = !$outer || $outer->[0] eq '-e' ? 'main' : $outer->[2];
        push @frames, [$file, $line, $in];
    }
    ($LAST_DIE, $LAST_FRAMES) = ($error, \@frames);
}

sub same_error {
    my ($a, $b) = @_;
    return 0 unless defined $a && defined $b;
    return ref $a ? (ref $b && $a == $b) : (!ref $b && $a eq $b);
}

sub error_value {
    my ($e) = @_;
    my $blessed = ref $e && eval { $e->isa('UNIVERSAL') };
    my $text;
    if ($blessed) {
        $text = eval { $e->can('message') ? $e->message : undef };
        $text = eval { "$e" } unless defined $text;
    } else {
        $text = ref $e ? eval { "$e" } : $e;
    }
    $text = defined $text ? "$text" : '';   # a string even for `exit 3`
    chomp $text;
    return ($blessed ? ref $e : 'Error', $text);
}

sub format_traceback {
    my ($ename, $evalue, $frames) = @_;
    my @lines;
    if ($frames && @$frames) {
        push @lines, 'Traceback (most recent call last):';
        for my $frame (reverse @$frames) {
            my ($file, $line, $in) = @$frame;
            push @lines, "  $file, line $line, in $in";
            my $source = $SOURCES{$file};
            if ($source && defined $source->[$line - 1] && $source->[$line - 1] =~ /\S/) {
                (my $text = $source->[$line - 1]) =~ s/^\s+|\s+$//g;
                push @lines, "    $text";
            }
        }
    }
    push @lines, split /\n/, "$ename: $evalue";
    return \@lines;
}

sub error_fields {
    my ($e, $frames) = @_;
    my ($ename, $evalue) = error_value($e);
    $frames = $LAST_FRAMES if !$frames && same_error($e, $LAST_DIE);
    return (ename => $ename, evalue => $evalue,
            traceback => format_traceback($ename, $evalue, $frames));
}

# ---------------------------------------------------------------------------
# execute

sub on_sigint {
    return unless $RUNNING;       # between cells and in the driver: ignored
    if ($IN_SEND) { $PENDING_INT = 1; return }
    die KeyboardInterrupt->new('interrupted');
}

sub compile_cell {
    my ($code, $name) = @_;
    $SOURCES{$name} = [split /\n/, $code, -1];
    $code = globalize_my($code);
    # `no strict`: `$x = 1` makes a package variable that persists
    my $wrapped = "package main; no strict; no warnings; sub {\n#line 1 \"$name\"\n$code\n;}";
    local $RUNNING = 1;           # BEGIN blocks and `use` run user code
    my $sub = eval $wrapped;
    return ($sub, $@);
}

sub run_sub {
    my ($sub) = @_;
    local $SIG{__DIE__} = \&capture_stack;
    ($LAST_DIE, $LAST_FRAMES) = ();
    my $ok = eval {
        $RUNNING = 1;
        $sub->();
        $RUNNING = 0;             # inside the eval: a late SIGINT still lands here
        1;
    };
    $RUNNING = 0;
    return undef if $ok;
    # $@ can be emptied while a die unwinds (e.g. out of a tied handle);
    # the __DIE__ hook saw the exception itself
    return $@ ne '' ? $@ : defined $LAST_DIE ? $LAST_DIE : 'Died';
}

sub cell_name {
    my ($count, $code) = @_;
    my $base = defined $count && !ref $count ? "<cell $count>" : '<cell>';
    my ($name, $copy) = ($base, 1);
    while ($SOURCES{$name} && join("\n", @{ $SOURCES{$name} }) ne $code) {
        $copy++;
        $name = substr($base, 0, -1) . " ($copy)>";
    }
    return $name;
}

sub run_cell {
    my ($code, $count) = @_;
    my $name = cell_name($count, $code);
    my ($sub, $compile_error) = compile_cell($code, $name);
    if (!$sub) {
        my $e = $compile_error;
        if (ref $e) {   # e.g. an interrupt during a BEGIN block
            send_record({t => 'error', error_fields($e, [])});
        } else {
            chomp(my $text = $e);
            $text =~ s/^BEGIN not safe after errors--compilation aborted.*\n?//m;
            my $ename = $text =~ /syntax error/ ? 'SyntaxError' : 'CompileError';
            send_record({t => 'error', ename => $ename, evalue => $text,
                         traceback => [split(/\n/, $text)]});
        }
        return 0;
    }
    my $error = run_sub($sub);
    return 1 unless defined $error;
    send_record({t => 'error', error_fields($error)});
    return 0;
}

sub format_value {
    my ($value) = @_;
    return 'undef' unless defined $value;
    return "$value" unless ref $value;
    require Data::Dumper;
    local $Data::Dumper::Terse = 1;
    local $Data::Dumper::Indent = 1;
    local $Data::Dumper::Sortkeys = 1;
    my $text = Data::Dumper::Dumper($value);
    chomp $text;
    return $text;
}

sub user_expressions {
    my ($expressions) = @_;
    my %replies;
    for my $key (sort keys %$expressions) {
        my $source = $expressions->{$key} // '';
        local $RUNNING = 1;
        my $value = eval "package main; no strict; no warnings;\n#line 1 \"<user expression>\"\n$source";
        if (my $e = $@) {
            $replies{$key} = {status => 'error', error_fields($e, [])};
        } else {
            $replies{$key} = {status => 'ok', data => {'text/plain' => format_value($value)},
                              metadata => {}};
        }
    }
    return \%replies;
}

sub handle_execute {
    my ($request) = @_;
    # Before any user code: a driver that dies before this never ran the
    # cell, and the kernel may give it to a fresh runtime (PROTOCOL.md).
    write_line(qq({"t":"started"}\n));
    my $code = $request->{code};
    $code = '' unless defined $code && !ref $code;
    $ALLOW_STDIN = $request->{allow_stdin} ? 1 : 0;
    $PENDING_INT = 0;
    $LAST_FLUSH = 0;               # the first output of a cell goes out at once
    my $replies = {};
    my $ok = eval { run_cell($code, $request->{execution_count}) };
    if (!defined $ok) {           # an interrupt raced the end of the cell
        $ok = 0;
        send_record({t => 'error', error_fields($@, [])});
    }
    if ($IN_CHILD) {              # a forked child fell off the end of the cell
        flush_streams();
        POSIX_exit($ok ? 0 : 1);
    }
    my $expressions = $request->{user_expressions};
    if ($ok && ref $expressions eq 'HASH' && %$expressions) {
        $replies = eval { user_expressions($expressions) } || {};
    }
    $ALLOW_STDIN = 0;
    send_record({t => 'done', user_expressions => $replies});
}

# ---------------------------------------------------------------------------
# complete / inspect / is_complete

my @BUILTINS = qw(
    abs chomp chop chr close defined delete die do each eof eval exec exists exit
    grep hex index join keys last lc lcfirst length local map my next oct open
    ord our pop print printf push rand readline redo ref require return reverse
    say scalar shift sort splice split sprintf sqrt substr system uc ucfirst
    undef unless unlink unshift until use values wantarray warn while foreach
    elsif else sub package local sleep time localtime
);

# Names in a package's symbol table that start with $prefix and have the
# slot the sigil asks for ('' = subs).
sub stash_names {
    my ($package, $sigil, $prefix) = @_;
    no strict 'refs';
    my $stash = \%{"${package}::"};
    my @names;
    for my $name (keys %$stash) {
        next unless $name =~ /^[A-Za-z_]\w*(?:::)?$/ && index($name, $prefix) == 0;
        next if $package eq 'main' && $name =~ /^(?:CellGate|KeyboardInterrupt|StdinNotImplementedError|EOFError|SystemExit)::$/;
        if ($name =~ /::$/) { push @names, $name; next }
        my $full = "${package}::$name";
        my $has = $sigil eq '$' ? defined ${$full}
                : $sigil eq '@' ? defined *{$full}{ARRAY} && @{$full}
                : $sigil eq '%' ? defined *{$full}{HASH} && %{$full}
                : defined &{$full};
        push @names, $name if $has;
    }
    return @names;
}

sub complete {
    my ($code, $cursor) = @_;
    my $before = substr($code, 0, $cursor);
    $before =~ /((?:[\$\@%&])?)((?:[A-Za-z_]\w*::)*)(\w*)\z/;
    my ($sigil, $package, $prefix) = ($1, $2, $3);
    my $start = $cursor - length($sigil . $package . $prefix);
    $sigil = '' if $sigil eq '&';
    my $stash = $package eq '' ? 'main' : substr($package, 0, -2);
    my %matches;
    $matches{"$sigil$package$_"} = 1 for stash_names($stash, $sigil, $prefix);
    if ($sigil eq '' && $package eq '') {
        $matches{$_} = 1 for grep { index($_, $prefix) == 0 } @BUILTINS;
    }
    return ([sort keys %matches], $start);
}

sub inspect_at {
    my ($code, $cursor) = @_;
    my $end = $cursor;
    $end++ while $end < length($code) && substr($code, $end, 1) =~ /\w/;
    substr($code, 0, $end) =~ /([\$\@%]?)((?:[A-Za-z_]\w*::)*[A-Za-z_]\w*)\z/
        or return {found => JSON::PP::false, data => {}, metadata => {}};
    my ($sigil, $name) = ($1, $2);
    my $full = $name =~ /::/ ? $name : "main::$name";
    no strict 'refs';
    my $text;
    if ($sigil eq '$' && defined ${$full}) { $text = "\$$name = " . format_value(${$full}) }
    elsif ($sigil eq '@' && *{$full}{ARRAY}) { $text = "\@$name = " . format_value(\@{$full}) }
    elsif ($sigil eq '%' && *{$full}{HASH}) { $text = "%$name = " . format_value(\%{$full}) }
    elsif ($sigil eq '' && defined &{$full}) { $text = "sub $full" }
    return {found => JSON::PP::false, data => {}, metadata => {}} unless defined $text;
    return {found => JSON::PP::true, data => {'text/plain' => $text}, metadata => {}};
}

sub code_and_cursor {
    my ($request) = @_;
    my $code = $request->{code};
    $code = '' unless defined $code && !ref $code;
    my $cursor = $request->{cursor_pos};
    $cursor = length $code
        unless defined $cursor && !ref $cursor && $cursor =~ /^\d+$/ && $cursor <= length $code;
    return ($code, $cursor);
}

sub handle_complete {
    my ($code, $cursor) = code_and_cursor($_[0]);
    my ($matches, $start) = eval { complete($code, $cursor) };
    ($matches, $start) = ([], $cursor) unless $matches;
    send_record({t => 'reply', matches => $matches, cursor_start => $start,
                 cursor_end => $cursor, metadata => {}});
}

sub handle_inspect {
    my ($code, $cursor) = code_and_cursor($_[0]);
    my $reply = eval { inspect_at($code, $cursor) }
        || {found => JSON::PP::false, data => {}, metadata => {}};
    send_record({t => 'reply', %$reply});
}

sub handle_is_complete {
    my $code = $_[0]{code};
    my ($status, $indent) = eval { is_complete(defined $code && !ref $code ? $code : '') };
    $status ||= 'unknown';
    send_record({t => 'reply', status => $status,
                 ($status eq 'incomplete' ? (indent => $indent // '') : ())});
}

# ---------------------------------------------------------------------------
# The request loop

my %HANDLERS = (
    execute     => \&handle_execute,
    complete    => \&handle_complete,
    inspect     => \&handle_inspect,
    is_complete => \&handle_is_complete,
);

sub serve {
    while (defined(my $request = next_message())) {
        my $kind = $request->{t} // '';
        my $handler = $HANDLERS{$kind};
        if (!$handler) {
            # stray replies to an interrupted <STDIN> are expected
            log_line("ignoring request of unknown type '$kind'") if $kind ne 'input_reply';
            next;
        }
        eval { $handler->($request); 1 } or log_line("$kind request failed: $@");
    }
}

sub main {
    $SIG{INT} = \&on_sigint;
    write_line(sprintf(qq({"t":"ready","language_version":"%vd"}\n), $^V));
    install_overrides();
    tie *main::STDOUT, 'CellGate::Output', 'stdout', 1;
    tie *main::STDERR, 'CellGate::Output', 'stderr', 2;
    tie *main::STDIN, 'CellGate::Input';
    serve();
    # the kernel closed fd 3: END blocks and later output go to the raw pipes
    flush_streams();
    untie *main::STDOUT;
    untie *main::STDERR;
    exit 0;
}

main();
