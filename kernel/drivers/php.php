// cellgate's PHP driver: the process that runs a notebook's PHP code.
//
// The cellgate kernel (C) starts this whole file (no `<?php` tag) as
//
//     /usr/bin/php -r "<this file>"
//
// in its own process group with CELLGATE_DRIVER=1 and CELLGATE_CONTROL_FD=3.
// fd 3 is an AF_UNIX stream socket carrying JSON lines both ways (see
// PROTOCOL.md next to this file), fd 1/2 are raw pipes the kernel shows as
// stream output, fd 0 is /dev/null.  Extensions used: json, tokenizer,
// pcntl + posix (for SIGINT; without them a cell cannot be interrupted).
//
// Cells:
//   * each cell is eval()'d at the top level of this script, so its
//     variables are globals and persist; functions and classes persist too.
//     Re-declaring a function or class that exists is refused before eval
//     (PHP would die with an uncatchable fatal error);
//   * the last expression statement becomes `return (...)`, so its value
//     (unless null, or an assignment) is the `result`; a missing final `;`
//     is accepted;
//   * any Throwable is one `error` record: ename is get_class($e) (ParseError,
//     DivisionByZeroError, ...), the traceback shows only cell frames;
//     fatal errors are reported from a shutdown function (the driver then
//     exits and the kernel starts a new one); warnings and notices go to
//     stderr as the CLI shows them;
//   * echo/print go through an output buffer whose callback collects the
//     text; fwrite(STDOUT/STDERR) are captured by a stream filter.  Text is
//     sent as `stream` records at 64 KiB, 50 ms after the last send, before
//     any other record and at the end of the cell, always after a `sync`
//     (PHP cannot ask how much raw output waits in fd 1/2);
//   * exit()/die() end the cell with a SystemExit error;
//   * input($prompt), readline($prompt) and fgets(STDIN) ask the notebook
//     through an `input` record (the calls are rewritten in the cell's tokens).

final class KeyboardInterrupt extends Error {}
final class StdinNotImplementedError extends Error {}
final class SystemExit extends Error {}

final class CellGate
{
    const FLUSH_AT = 65536;             // buffered bytes that trigger a send
    const FLUSH_AFTER_NS = 50000000;    // a write this long after the last send goes out now
    const STREAM_CHUNK = 1048576;       // bytes per stream record

    public static $ctl;
    public static $running = false;     // user code runs: SIGINT throws
    public static $inSend = false;      // writing fd 3: SIGINT waits for the line's end
    public static $pending = false;
    public static $allowStdin = false;
    public static $canInterrupt = false;
    private static $rbuf = '';
    private static $held = [];          // requests that came while input() waited
    private static $buf = '';
    private static $bufName = 'stdout';
    private static $lastFlush = 0;
    public static $cell = '<cell>';     // the running cell's name
    private static $sources = [];       // cell name -> lines
    private static $definedIn = [];     // lower-case function/class name -> cell name
    private static $known = null;       // functions and classes before the cell

    // -------------------------------------------------------------------
    // The control channel

    public static function log(string $message): void
    {
        @file_put_contents('php://stderr', "cellgate php driver: $message\n");
    }

    private static function writeLine(string $bytes): void
    {
        $was = self::$inSend;
        self::$inSend = true;           // a SIGINT now only sets $pending
        while ($bytes !== '') {
            $n = @fwrite(self::$ctl, $bytes);
            if ($n === false || $n === 0) {
                exit(0);                // the kernel is gone: nobody to talk to
            }
            $bytes = (string)substr($bytes, $n);
        }
        self::$inSend = $was;
    }

    // Throw the KeyboardInterrupt a SIGINT deferred while we were writing.
    public static function raisePending(): void
    {
        if (self::$pending && !self::$inSend) {
            self::$pending = false;
            if (self::$running) {
                throw new KeyboardInterrupt('interrupted');
            }
        }
    }

    public static function onSigint(): void
    {
        if (!self::$running) {
            return;                     // between cells: ignored
        }
        if (self::$inSend) {
            self::$pending = true;
            return;
        }
        throw new KeyboardInterrupt('interrupted');
    }

    public static function json($value): string
    {
        return json_encode($value, JSON_UNESCAPED_SLASHES | JSON_UNESCAPED_UNICODE
            | JSON_INVALID_UTF8_SUBSTITUTE | JSON_PARTIAL_OUTPUT_ON_ERROR);
    }

    /** Says an execute arrived, before any of its code runs (PROTOCOL.md). */
    public static function acknowledge(): void
    {
        self::writeLine('{"t":"started"}' . "\n");
    }

    public static function send(array $record): void
    {
        self::flush();
        $line = self::json($record) . "\n";
        // raw output (a child's) may wait in fd 1/2: the kernel drains first
        self::writeLine('{"t":"sync"}' . "\n" . $line);
        self::raisePending();
    }

    // The next request (an array), or null at end of file.  With $poll the
    // wait is in short selects, so a SIGINT is handled while we wait.
    public static function next(bool $poll = false): ?array
    {
        if (!$poll && self::$held) {
            return array_shift(self::$held);
        }
        while (true) {
            $nl = strpos(self::$rbuf, "\n");
            if ($nl !== false) {
                $line = substr(self::$rbuf, 0, $nl);
                self::$rbuf = (string)substr(self::$rbuf, $nl + 1);
                $message = json_decode($line, true);
                if (is_array($message)) {
                    return $message;
                }
                self::log('bad request line: ' . substr($line, 0, 200));
                continue;
            }
            if ($poll) {
                $read = [self::$ctl];
                $none = [];
                if (!@stream_select($read, $none, $none, 0, 200000)) {
                    continue;           // timeout or EINTR: signals run here
                }
            }
            $chunk = @fread(self::$ctl, 65536);
            if ($chunk === false || $chunk === '') {
                if (feof(self::$ctl)) {
                    return null;
                }
                continue;
            }
            self::$rbuf .= $chunk;
        }
    }

    // -------------------------------------------------------------------
    // Output: one buffer holding text of one stream at a time, so the
    // order across stdout and stderr is exact.

    public static function flush(): void
    {
        if (self::$buf === '') {
            return;
        }
        $was = self::$inSend;
        self::$inSend = true;
        $data = self::$buf;
        self::$buf = '';
        $out = '{"t":"sync"}' . "\n";
        $valid = mb_check_encoding_cheap($data) ? $data : self::fixUtf8($data);
        while ($valid !== '') {
            $take = min(strlen($valid), self::STREAM_CHUNK);
            // never cut a UTF-8 sequence: back up over continuation bytes
            while ($take < strlen($valid) && $take > 1 && (ord($valid[$take]) & 0xC0) === 0x80) {
                $take--;
            }
            $chunk = substr($valid, 0, $take);
            $valid = (string)substr($valid, $take);
            $out .= '{"t":"stream","name":"' . self::$bufName . '","bytes":' . strlen($chunk) . "}\n" . $chunk;
        }
        self::writeLine($out);
        self::$inSend = $was;
        self::$lastFlush = hrtime(true);
    }

    private static function fixUtf8(string $data): string
    {
        // invalid bytes become U+FFFD, as the protocol wants valid UTF-8
        return htmlspecialchars_decode(htmlspecialchars($data, ENT_SUBSTITUTE | ENT_NOQUOTES, 'UTF-8'), ENT_NOQUOTES);
    }

    public static function emit(string $name, string $text): void
    {
        if ($text === '') {
            return;
        }
        if ($name !== self::$bufName) {
            self::flush();
            self::$bufName = $name;
        }
        self::$buf .= $text;
        if (strlen(self::$buf) >= self::FLUSH_AT
            || hrtime(true) - self::$lastFlush >= self::FLUSH_AFTER_NS) {
            self::flush();
        }
    }

    // The output buffer callback: echo/print text.  Throwing here would
    // disable the buffer, so a deferred SIGINT is raised after the send
    // only (ensureCapture() re-arms a disabled buffer).
    public static function onOutput(string $text, int $phase): string
    {
        self::emit('stdout', $text);
        self::raisePending();
        return '';
    }

    public static function ensureCapture(): void
    {
        $status = ob_get_status(true);
        $ours = false;
        foreach ($status as $level) {
            if (($level['name'] ?? '') === 'CellGate::onOutput'
                && !($level['flags'] & PHP_OUTPUT_HANDLER_DISABLED)) {
                $ours = true;
            }
        }
        if ($ours && count($status) === 1) {
            return;
        }
        while (ob_get_level() > 0) {    // user buffers left open, or ours disabled
            $text = ob_get_contents();
            @ob_end_clean();
            if ($text !== false && count(ob_get_status(true)) > 0) {
                continue;
            }
            if ($text !== false && $text !== '') {
                self::emit('stdout', $text);
            }
        }
        ob_start([self::class, 'onOutput'], 1);
    }

    // -------------------------------------------------------------------
    // input

    public static function input(string $prompt = '', bool $password = false): string
    {
        if (!self::$allowStdin) {
            throw new StdinNotImplementedError('input was requested, but this client does '
                . 'not support input requests (allow_stdin is false)');
        }
        self::send(['t' => 'input', 'prompt' => $prompt, 'password' => $password]);
        while (true) {
            $message = self::next(true);
            if ($message === null) {
                throw new StdinNotImplementedError('the kernel closed the control channel');
            }
            if (($message['t'] ?? '') === 'input_reply') {
                return is_string($message['value'] ?? null) ? $message['value'] : '';
            }
            self::$held[] = $message;   // not ours: the request loop's
        }
    }

    public static function readline($prompt = null)
    {
        return self::input((string)$prompt);
    }

    public static function fgets($stream, ?int $length = null)
    {
        if ($stream === STDIN) {
            return self::input('') . "\n";
        }
        return $length === null ? \fgets($stream) : \fgets($stream, $length);
    }

    public static function exit($status = 0): void
    {
        if (is_string($status)) {       // die("message") prints the message
            echo $status;
        }
        throw new SystemExit(is_int($status) ? (string)$status : '0');
    }

    // -------------------------------------------------------------------
    // Warnings and fatal errors

    private const ERROR_NAMES = [
        E_WARNING => 'Warning', E_NOTICE => 'Notice', E_DEPRECATED => 'Deprecated',
        E_USER_WARNING => 'Warning', E_USER_NOTICE => 'Notice',
        E_USER_DEPRECATED => 'Deprecated', E_STRICT => 'Strict Standards',
        E_RECOVERABLE_ERROR => 'Recoverable fatal error', E_USER_ERROR => 'Fatal error',
    ];

    public static function onError(int $type, string $message, string $file = '', int $line = 0): bool
    {
        if (!(error_reporting() & $type)) {
            return true;                // silenced with @
        }
        $name = self::ERROR_NAMES[$type] ?? 'Warning';
        $where = self::place($file);
        self::emit('stderr', "$name: $message in $where on line $line\n");
        return true;
    }

    public static function onShutdown(): void
    {
        $error = error_get_last();
        $fatal = E_ERROR | E_PARSE | E_CORE_ERROR | E_COMPILE_ERROR | E_USER_ERROR;
        if (!self::$running || !$error || !($error['type'] & $fatal)) {
            return;
        }
        self::$running = false;
        $where = self::place($error['file']);
        $value = $error['message'];
        self::send(['t' => 'error', 'ename' => 'FatalError', 'evalue' => $value,
            'traceback' => ["  $where, line {$error['line']}", "FatalError: $value"]]);
        self::send(['t' => 'done', 'user_expressions' => new stdClass()]);
    }

    // "<cell N>" for code run from a cell, else the file itself.
    private static function place(string $file, ?string $function = null): string
    {
        if (strpos($file, "eval()'d code") === false) {
            return $file;
        }
        if ($function !== null && isset(self::$definedIn[strtolower($function)])) {
            return self::$definedIn[strtolower($function)];
        }
        return self::$cell;
    }

    // -------------------------------------------------------------------
    // Errors and tracebacks

    private static function isCellFile(?string $file): bool
    {
        return $file !== null && strpos($file, "eval()'d code") !== false;
    }

    // [place, line, function] from the outermost call to the throw point,
    // without the driver's frames.  Location 0 is where the exception was
    // thrown, location j+1 the call site recorded in trace frame j; each
    // lies inside the function of the next trace frame.
    private static function frames(Throwable $e): array
    {
        $trace = $e->getTrace();
        $locations = [[$e->getFile(), $e->getLine()]];
        foreach ($trace as $frame) {
            $locations[] = [$frame['file'] ?? null, $frame['line'] ?? 0];
        }
        if (isset($trace[0]) && self::isInternalCall($trace[0])) {
            array_shift($locations);    // thrown by a PHP function: its call site is enough
            array_shift($trace);
        }
        $frames = [];
        foreach ($locations as $i => [$file, $line]) {
            if (!self::isCellFile($file)) {
                continue;               // the driver, or PHP itself
            }
            $call = $trace[$i] ?? null;  // the function this location is in
            if ($call === null || ($call['function'] === 'eval' && !self::isCellFile($call['file'] ?? null))) {
                $frames[] = [self::$cell, $line, '{main}'];
                continue;
            }
            $owner = $call['class'] ?? $call['function'];
            $function = (isset($call['class']) ? $call['class'] . $call['type'] : '') . $call['function'];
            $frames[] = [self::place($file, strpos($owner, '{closure}') === false ? $owner : null),
                         $line, $function];
        }
        return array_reverse($frames);
    }

    private static function isInternalCall(array $frame): bool
    {
        try {
            $function = isset($frame['class'])
                ? new ReflectionMethod($frame['class'], $frame['function'])
                : new ReflectionFunction($frame['function']);
            return $function->isInternal();
        } catch (Throwable $e) {
            return false;               // {closure} and the like: user code
        }
    }

    public static function errorFields(Throwable $e, bool $withFrames = true): array
    {
        $ename = get_class($e);
        $evalue = $e->getMessage();
        $lines = [];
        $frames = $withFrames ? self::frames($e) : [];
        if ($frames) {
            $lines[] = 'Traceback (most recent call last):';
            foreach ($frames as [$place, $line, $function]) {
                $lines[] = "  $place, line $line, in $function";
                $source = self::$sources[$place][$line - 1] ?? '';
                if (trim($source) !== '') {
                    $lines[] = '    ' . trim($source);
                }
            }
        }
        foreach (explode("\n", "$ename: $evalue") as $text) {
            $lines[] = $text;
        }
        return ['ename' => $ename, 'evalue' => $evalue, 'traceback' => $lines];
    }

    public static function error(Throwable $e): void
    {
        self::$running = false;
        self::send(['t' => 'error'] + self::errorFields($e));
    }

    // -------------------------------------------------------------------
    // Preparing a cell: tokens in, code for eval() out

    private const NOT_EXPRESSIONS = [
        T_ECHO, T_PRINT, T_IF, T_FOR, T_FOREACH, T_WHILE, T_DO, T_SWITCH, T_RETURN,
        T_GLOBAL, T_STATIC, T_UNSET, T_USE, T_NAMESPACE, T_FUNCTION, T_CLASS,
        T_ABSTRACT, T_FINAL, T_INTERFACE, T_TRAIT, T_TRY, T_THROW, T_CONST,
        T_DECLARE, T_GOTO, T_BREAK, T_CONTINUE, T_INLINE_HTML, T_ENUM, T_READONLY,
    ];
    private const ASSIGNMENTS = [
        '=', T_PLUS_EQUAL, T_MINUS_EQUAL, T_MUL_EQUAL, T_DIV_EQUAL, T_CONCAT_EQUAL,
        T_MOD_EQUAL, T_AND_EQUAL, T_OR_EQUAL, T_XOR_EQUAL, T_SL_EQUAL, T_SR_EQUAL,
        T_POW_EQUAL, T_COALESCE_EQUAL,
    ];
    private const SKIP = [T_WHITESPACE, T_COMMENT, T_DOC_COMMENT];

    private static function kind($token)
    {
        return is_array($token) ? $token[0] : $token;
    }

    private static function text($token): string
    {
        return is_array($token) ? $token[1] : $token;
    }

    // The cell's tokens with exit/die, readline( and fgets( rewritten, and
    // with names of functions and classes it declares at the top level.
    private static function rewriteCalls(array $tokens): array
    {
        $declares = [];
        $depth = 0;
        $previous = null;               // the previous significant token
        foreach ($tokens as $i => $token) {
            $kind = self::kind($token);
            if (in_array($kind, self::SKIP, true)) {
                continue;
            }
            $next = self::nextSignificant($tokens, $i);
            $after = $previous === null ? null : self::kind($previous);
            $member = in_array($after, [T_OBJECT_OPERATOR, T_NULLSAFE_OBJECT_OPERATOR,
                T_DOUBLE_COLON, T_FUNCTION, T_NEW, T_CONST], true);
            if ($kind === T_EXIT) {
                $tokens[$i] = self::kind($tokens[$next] ?? null) === '('
                    ? '\CellGate::exit' : '\CellGate::exit()';
            } elseif (($kind === T_STRING || $kind === T_NAME_FULLY_QUALIFIED) && !$member
                && self::kind($tokens[$next] ?? null) === '(') {
                $name = strtolower(ltrim($token[1], '\\'));
                if ($name === 'readline' || $name === 'fgets') {
                    $tokens[$i] = '\CellGate::' . $name;
                }
            }
            if ($depth === 0 && in_array($kind, [T_FUNCTION, T_CLASS, T_INTERFACE, T_TRAIT, T_ENUM], true)
                && !in_array($after, [T_DOUBLE_COLON, T_NEW, T_USE], true)) {
                $name = $tokens[$next] ?? null;
                if (self::kind($name) === '&') {
                    $name = $tokens[self::nextSignificant($tokens, $next)] ?? null;
                }
                if (self::kind($name) === T_STRING) {
                    $declares[] = [$kind === T_FUNCTION ? 'function' : 'class', $name[1]];
                }
            }
            if (in_array($kind, ['(', '[', '{', T_CURLY_OPEN, T_DOLLAR_OPEN_CURLY_BRACES], true)) {
                $depth++;
            } elseif (in_array($kind, [')', ']', '}'], true)) {
                $depth--;
            }
            $previous = $token;
        }
        return [$tokens, $declares];
    }

    private static function nextSignificant(array $tokens, int $i): ?int
    {
        for ($j = $i + 1; $j < count($tokens); $j++) {
            if (!in_array(self::kind($tokens[$j]), self::SKIP, true)) {
                return $j;
            }
        }
        return null;
    }

    // Index ranges [start, end) of the top-level statements ending in ';',
    // the index after the last top-level '}' or ';', and that token.
    private static function lastStatement(array $tokens): ?array
    {
        $depth = 0;
        $start = 1;                     // token 0 is the "<?php " we added
        $lastEnd = null;
        $boundary = null;
        for ($i = 1; $i < count($tokens); $i++) {
            $kind = self::kind($tokens[$i]);
            if (in_array($kind, ['(', '[', '{', T_CURLY_OPEN, T_DOLLAR_OPEN_CURLY_BRACES], true)) {
                $depth++;
            } elseif (in_array($kind, [')', ']', '}'], true)) {
                $depth--;
                if ($kind === '}' && $depth === 0) {
                    // a block ends a statement unless an expression goes on
                    $next = self::nextSignificant($tokens, $i);
                    $follow = $next === null ? null : self::kind($tokens[$next]);
                    if ($follow === null || !is_string($follow)) {
                        [$start, $lastEnd, $boundary] = [$i + 1, null, '}'];
                    }
                }
            } elseif ($kind === ';' && $depth === 0) {
                [$lastEnd, $boundary] = [[$start, $i], ';'];
                $start = $i + 1;
            }
        }
        $tail = self::nextSignificant($tokens, $start - 1);
        if ($tail !== null && $tail >= $start) {
            return [$start, count($tokens), false];   // no final ';'
        }
        return $boundary === ';' && $lastEnd ? [$lastEnd[0], $lastEnd[1], true] : null;
    }

    private static function isExpression(array $tokens, int $start, int $end): bool
    {
        $first = self::nextSignificant($tokens, $start - 1);
        if ($first === null || $first >= $end) {
            return false;
        }
        $kind = self::kind($tokens[$first]);
        if (in_array($kind, self::NOT_EXPRESSIONS, true)
            || ($kind === T_STRING && self::kind($tokens[self::nextSignificant($tokens, $first) ?? $first]) === ':')) {
            return false;               // a statement, or a goto label
        }
        $depth = 0;
        for ($i = $first; $i < $end; $i++) {
            $k = self::kind($tokens[$i]);
            if (in_array($k, ['(', '[', '{', T_CURLY_OPEN, T_DOLLAR_OPEN_CURLY_BRACES], true)) {
                $depth++;
            } elseif (in_array($k, [')', ']', '}'], true)) {
                $depth--;
            } elseif ($depth === 0 && in_array($k, self::ASSIGNMENTS, true)) {
                return false;           // `$x = 1` shows nothing, as in Python
            }
        }
        return true;
    }

    private static function join(array $tokens, int $from, int $to): string
    {
        $out = '';
        for ($i = $from; $i < $to; $i++) {
            $out .= self::text($tokens[$i]);
        }
        return $out;
    }

    // PHP code for eval(), or a Throwable to report instead.
    public static function prepare(string $code)
    {
        try {
            token_get_all('<?php ' . $code . ';', TOKEN_PARSE);
            $tokens = token_get_all('<?php ' . $code);
        } catch (Throwable $e) {
            return $code;               // not PHP: eval() reports the ParseError
        }
        [$tokens, $declares] = self::rewriteCalls($tokens);
        foreach ($declares as [$what, $name]) {
            if ($what === 'function' ? function_exists($name)
                    : (class_exists($name, false) || interface_exists($name, false)
                       || trait_exists($name, false))) {
                $where = self::$definedIn[strtolower($name)] ?? 'PHP';
                return new Error("Cannot redeclare $what $name (previously declared in $where); "
                    . "PHP cannot replace a $what: restart the kernel or use a new name");
            }
        }
        $last = self::lastStatement($tokens);
        if ($last && self::isExpression($tokens, $last[0], $last[1])) {
            [$start, $end, $hasSemicolon] = $last;
            return self::join($tokens, 1, $start) . 'return (' . self::join($tokens, $start, $end)
                . ');' . self::join($tokens, $hasSemicolon ? $end + 1 : $end, count($tokens));
        }
        if ($last && !$last[2]) {       // a final statement without ';'
            return self::join($tokens, 1, count($tokens)) . ';';
        }
        return self::join($tokens, 1, count($tokens));
    }

    // -------------------------------------------------------------------
    // execute: begin() and end() around the eval() in the top-level loop

    private static $request;

    public static function begin(array $request): ?string
    {
        self::$request = $request;
        self::$allowStdin = !empty($request['allow_stdin']);
        self::$pending = false;
        self::$lastFlush = 0;           // the first output of a cell goes out at once
        self::ensureCapture();
        $code = is_string($request['code'] ?? null) ? $request['code'] : '';
        $count = $request['execution_count'] ?? null;
        $name = is_int($count) ? "<cell $count>" : '<cell>';
        for ($copy = 2; isset(self::$sources[$name]) && implode("\n", self::$sources[$name]) !== $code; $copy++) {
            $name = (is_int($count) ? "<cell $count" : '<cell') . " ($copy)>";
        }
        self::$cell = $name;
        self::$sources[$name] = explode("\n", $code);
        self::$known = [get_defined_functions()['user'], get_declared_classes(),
                        get_declared_interfaces(), get_declared_traits()];
        $prepared = self::prepare($code);
        if ($prepared instanceof Throwable) {
            self::send(['t' => 'error', 'ename' => get_class($prepared),
                'evalue' => $prepared->getMessage(),
                'traceback' => [get_class($prepared) . ': ' . $prepared->getMessage()]]);
            self::$failed = true;
            return null;
        }
        self::$failed = false;
        self::$running = true;
        return $prepared;
    }

    public static $failed = false;

    public static function result($value): void
    {
        self::$running = false;
        $request = self::$request;
        if ($value === null || !empty($request['silent'])) {
            return;
        }
        self::send(['t' => 'result', 'data' => ['text/plain' => self::show($value)], 'metadata' => new stdClass()]);
    }

    // text/plain for a value: var_export for data, print_r for objects.
    public static function show($value): string
    {
        try {
            if (is_object($value) || (is_array($value) && self::hasObject($value))) {
                return rtrim(print_r($value, true));
            }
            return var_export($value, true);
        } catch (Throwable $e) {
            return get_debug_type($value);
        }
    }

    private static function hasObject(array $value, int $depth = 0): bool
    {
        foreach ($value as $item) {
            if (is_object($item) || (is_array($item) && $depth < 32 && self::hasObject($item, $depth + 1))) {
                return true;
            }
        }
        return false;
    }

    // Remember which cell declared the new functions and classes.
    private static function noteDeclarations(): void
    {
        if (self::$known === null) {
            return;
        }
        [$functions, $classes, $interfaces, $traits] = self::$known;
        $new = array_merge(
            array_diff(get_defined_functions()['user'], $functions),
            array_diff(get_declared_classes(), $classes),
            array_diff(get_declared_interfaces(), $interfaces),
            array_diff(get_declared_traits(), $traits));
        foreach ($new as $name) {
            self::$definedIn[strtolower($name)] = self::$cell;
        }
        self::$known = null;
    }

    // The user expressions to evaluate at the top level, if the cell went well.
    public static function expressions(): array
    {
        self::noteDeclarations();
        $expressions = self::$request['user_expressions'] ?? [];
        if (self::$failed || !is_array($expressions)) {
            return [];
        }
        return array_filter($expressions, 'is_string');
    }

    private static $replies = [];

    public static function expressionValue(string $name, $value): void
    {
        self::$replies[$name] = ['status' => 'ok', 'data' => ['text/plain' => self::show($value)],
            'metadata' => new stdClass()];
    }

    public static function expressionError(string $name, Throwable $e): void
    {
        self::$replies[$name] = ['status' => 'error'] + self::errorFields($e, false);
    }

    public static function end(): void
    {
        self::$running = false;
        self::$allowStdin = false;
        self::noteDeclarations();
        $replies = self::$replies ?: new stdClass();
        self::$replies = [];
        self::send(['t' => 'done', 'user_expressions' => $replies]);
    }

    // -------------------------------------------------------------------
    // complete / inspect / is_complete

    private const KEYWORDS = ['array', 'as', 'break', 'case', 'catch', 'class', 'clone',
        'const', 'continue', 'default', 'do', 'echo', 'else', 'elseif', 'empty',
        'enum', 'extends', 'false', 'finally', 'fn', 'for', 'foreach', 'function',
        'global', 'if', 'implements', 'include', 'instanceof', 'interface', 'isset',
        'list', 'match', 'namespace', 'new', 'null', 'print', 'private', 'protected',
        'public', 'readonly', 'require', 'return', 'static', 'switch', 'throw', 'trait',
        'true', 'try', 'unset', 'use', 'while', 'yield'];

    private static function userVariables(): array
    {
        return array_values(array_filter(array_keys($GLOBALS), function ($name) {
            return is_string($name) && strncmp($name, '__cg_', 5) !== 0 && $name !== 'GLOBALS';
        }));
    }

    private static function complete(string $code, int $cursor): array
    {
        $before = mb_substr_cheap($code, $cursor);
        if (preg_match('/\$([A-Za-z_\x80-\xff][\w\x80-\xff]*)->(\w*)$/u', $before, $m)
            && is_object($GLOBALS[$m[1]] ?? null)) {
            $object = $GLOBALS[$m[1]];
            $names = array_merge(get_class_methods($object), array_keys(get_object_vars($object)));
            return [self::startingWith($names, $m[2]), $cursor - cp_length($m[2])];
        }
        if (preg_match('/\$([\w\x80-\xff]*)$/u', $before, $m)) {
            $names = array_map(function ($n) { return '$' . $n; }, self::userVariables());
            return [self::startingWith($names, '$' . $m[1]), $cursor - cp_length($m[0])];
        }
        preg_match('/\\\\?[A-Za-z_\x80-\xff][\w\x80-\xff\\\\]*$|$/u', $before, $m);
        $token = ltrim($m[0], '\\');
        $functions = get_defined_functions();
        $names = array_merge($functions['internal'], $functions['user'], get_declared_classes(),
            self::KEYWORDS, array_keys(get_defined_constants()));
        $names = array_filter($names, function ($n) {
            return stripos($n, 'CellGate') !== 0;
        });
        $matches = $token === '' ? [] : self::startingWith($names, $token, true);
        return [$matches, $cursor - cp_length($token)];
    }

    private static function startingWith(array $names, string $prefix, bool $caseless = false): array
    {
        $found = [];
        foreach ($names as $name) {
            if ($caseless ? strncasecmp($name, $prefix, strlen($prefix)) === 0
                          : strncmp($name, $prefix, strlen($prefix)) === 0) {
                $found[$name] = true;
            }
        }
        $found = array_keys($found);
        sort($found);
        return $found;
    }

    private static function inspect(string $code, int $cursor): array
    {
        $end = $cursor;
        $length = cp_length($code);
        $before = mb_substr_cheap($code, $cursor);
        preg_match('/^\w*/u', substr($code, strlen($before)), $rest);
        $before .= $rest[0];            // the rest of the word under the cursor
        $none = ['found' => false, 'data' => new stdClass(), 'metadata' => new stdClass()];
        if (!preg_match('/(\$?)([A-Za-z_][\w\\\\]*)$/', $before, $m)) {
            return $none;
        }
        [, $sigil, $name] = $m;
        if ($sigil === '$') {
            if (!array_key_exists($name, $GLOBALS)) {
                return $none;
            }
            $text = '$' . $name . ' = ' . self::show($GLOBALS[$name]);
        } elseif (function_exists($name)) {
            $function = new ReflectionFunction($name);
            $params = array_map(function ($p) { return (string)$p; }, $function->getParameters());
            $text = "function $name(" . implode(', ', array_map(function ($p) {
                return preg_replace('/^Parameter #\d+ \[ (.*) \]$/', '$1', $p);
            }, $params)) . ')';
        } elseif (class_exists($name)) {
            $text = "class $name";
        } else {
            return $none;
        }
        return ['found' => true, 'data' => ['text/plain' => $text], 'metadata' => new stdClass()];
    }

    private static function isComplete(string $code): array
    {
        if (trim($code) === '') {
            return ['complete', null];
        }
        $message = null;
        foreach ([$code, $code . ';'] as $attempt) {
            try {
                token_get_all('<?php ' . $attempt, TOKEN_PARSE);
                return ['complete', null];
            } catch (ParseError $e) {
                $message = $message ?? $e->getMessage();   // the code's own error
            }
        }
        $tokens = token_get_all('<?php ' . $code);
        // an unterminated '...' string lexes as one T_ENCAPSED_AND_WHITESPACE
        $open = self::kind(end($tokens)) === T_ENCAPSED_AND_WHITESPACE;
        if ($open || preg_match('/end of file|^Unclosed|^Unterminated/', $message)) {
            $depth = 0;
            foreach ($tokens as $token) {
                $kind = self::kind($token);
                $depth += in_array($kind, ['(', '[', '{', T_CURLY_OPEN, T_DOLLAR_OPEN_CURLY_BRACES], true)
                    ? 1 : (in_array($kind, [')', ']', '}'], true) ? -1 : 0);
            }
            return ['incomplete', $open ? '' : str_repeat('    ', max(0, $depth))];
        }
        return ['invalid', null];
    }

    private static function codeAndCursor(array $request): array
    {
        $code = is_string($request['code'] ?? null) ? $request['code'] : '';
        $cursor = $request['cursor_pos'] ?? null;
        $length = cp_length($code);
        if (!is_int($cursor) || $cursor < 0 || $cursor > $length) {
            $cursor = $length;
        }
        return [$code, $cursor];
    }

    // complete / inspect / is_complete requests.
    public static function handle(array $request): void
    {
        $kind = $request['t'] ?? '';
        try {
            if ($kind === 'complete') {
                [$code, $cursor] = self::codeAndCursor($request);
                [$matches, $start] = self::complete($code, $cursor);
                self::send(['t' => 'reply', 'matches' => $matches, 'cursor_start' => $start,
                    'cursor_end' => $cursor, 'metadata' => new stdClass()]);
            } elseif ($kind === 'inspect') {
                [$code, $cursor] = self::codeAndCursor($request);
                self::send(['t' => 'reply'] + self::inspect($code, $cursor));
            } elseif ($kind === 'is_complete') {
                [$status, $indent] = self::isComplete(is_string($request['code'] ?? null) ? $request['code'] : '');
                $reply = ['t' => 'reply', 'status' => $status];
                if ($status === 'incomplete') {
                    $reply['indent'] = $indent;
                }
                self::send($reply);
            } elseif ($kind !== 'input_reply') {   // stray replies to an interrupted input()
                self::log("ignoring request of unknown type '$kind'");
            }
        } catch (Throwable $e) {
            self::log("$kind request failed: " . $e->getMessage());
        }
    }

    // -------------------------------------------------------------------
    // Start-up

    public static function start(): void
    {
        $fd = (int)(getenv('CELLGATE_CONTROL_FD') ?: 3);
        self::$ctl = fopen("php://fd/$fd", 'r+');
        stream_set_read_buffer(self::$ctl, 0);
        stream_set_write_buffer(self::$ctl, 0);
        error_reporting(E_ALL);
        ini_set('display_errors', '0');  // onError and onShutdown report them
        ini_set('log_errors', '0');
        ini_set('html_errors', '0');
        set_error_handler([self::class, 'onError']);
        register_shutdown_function([self::class, 'onShutdown']);
        if (function_exists('pcntl_async_signals') && function_exists('posix_kill')) {
            pcntl_async_signals(true);  // the handler runs inside sleep() and loops
            pcntl_signal(SIGINT, [self::class, 'onSigint']);
            self::$canInterrupt = true;
        }
        stream_filter_register('cellgate.stdout', CellGateStdout::class);
        stream_filter_register('cellgate.stderr', CellGateStderr::class);
        stream_filter_append(STDOUT, 'cellgate.stdout', STREAM_FILTER_WRITE);
        stream_filter_append(STDERR, 'cellgate.stderr', STREAM_FILTER_WRITE);
        ob_start([self::class, 'onOutput'], 1);
        // last: a SIGINT right after `ready` must find the handler installed
        self::writeLine(self::json(['t' => 'ready', 'language_version' => PHP_VERSION]) . "\n");
    }
}

// fwrite(STDOUT/STDERR) -> stream records, in order with echo.
class CellGateStdout extends php_user_filter
{
    protected $streamName = 'stdout';

    public function filter($in, $out, &$consumed, bool $closing): int
    {
        while ($bucket = stream_bucket_make_writeable($in)) {
            $consumed += $bucket->datalen;
            CellGate::emit($this->streamName, $bucket->data);
        }
        return PSFS_PASS_ON;            // nothing passed on: the pipe stays quiet
    }
}

class CellGateStderr extends CellGateStdout
{
    protected $streamName = 'stderr';
}

// mbstring may be missing: a cheap UTF-8 check with preg.
function mb_check_encoding_cheap(string $data): bool
{
    return preg_match('//u', $data) === 1;
}

// Code points in $text (mbstring is not always there).
function cp_length(string $text): int
{
    return (int)preg_match_all('/./su', $text);
}

// The first $cursor code points of $code.
function mb_substr_cheap(string $code, int $cursor): string
{
    preg_match('/^.{0,' . $cursor . '}/su', $code, $m);
    return $m[0] ?? '';
}

// Ask the notebook user for a line (without its newline).
function input(string $prompt = ''): string
{
    return CellGate::input($prompt);
}

// -----------------------------------------------------------------------
// The request loop.  It runs at the top level of the script so that eval()
// sees the global scope: cells' variables are globals and persist.  The
// loop's own variables start with $__cg_.

CellGate::start();
while (($__cg_request = CellGate::next()) !== null) {
    if (($__cg_request['t'] ?? '') !== 'execute') {
        CellGate::handle($__cg_request);
        continue;
    }
    // Before any user code: a driver that dies before this never ran the
    // cell, and the kernel may give it to a fresh runtime (PROTOCOL.md).
    CellGate::acknowledge();
    $__cg_code = CellGate::begin($__cg_request);
    if ($__cg_code !== null) {
        try {
            $__cg_value = eval($__cg_code);
            CellGate::result($__cg_value);
        } catch (Throwable $__cg_error) {
            CellGate::$running = false;
            CellGate::$failed = true;
            CellGate::error($__cg_error);
        }
    }
    foreach (CellGate::expressions() as $__cg_name => $__cg_expression) {
        try {
            CellGate::$running = true;
            $__cg_value = eval('return (' . $__cg_expression . ');');
            CellGate::$running = false;
            CellGate::expressionValue($__cg_name, $__cg_value);
        } catch (Throwable $__cg_error) {
            CellGate::$running = false;
            CellGate::expressionError($__cg_name, $__cg_error);
        }
    }
    unset($__cg_code, $__cg_value, $__cg_error, $__cg_name, $__cg_expression);
    CellGate::end();
}
CellGate::flush();
exit(0);
