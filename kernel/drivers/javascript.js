// cellgate's JavaScript driver: the process that runs a notebook's JS code.
//
// The cellgate kernel (written in C) starts this whole file as
//
//     /usr/bin/node -e "<this file>"
//
// in its own process group, with CELLGATE_DRIVER=1 and CELLGATE_CONTROL_FD=3.
// fd 3 is an AF_UNIX stream socket carrying JSON lines both ways, fd 1/2 are
// raw pipes the kernel turns into stream output, fd 0 is /dev/null.  The
// records are specified in PROTOCOL.md next to this file.
//
// How a cell runs:
//   * top-level `let`/`const` become `var` and `class C` becomes
//     `var C = class C ...;`, so every declaration lands on the global object
//     and a cell can be re-run without "already declared" errors;
//   * a cell without top-level `await` runs as a vm.Script in this context
//     with breakOnSigint (a busy loop can be interrupted); its completion
//     value is the result;
//   * a cell with top-level `await` runs as the body of an async arrow
//     function; the value of its last expression statement is returned, and
//     its top-level declarations are copied to the global object at the end.
//   * process.stdout/process.stderr are replaced by streams that buffer text
//     and send it as `stream` records on fd 3 (fs.writeSync: exact order).
//
// The whole driver is one function so that none of its names clash with
// the user's global declarations.
(function cellgateDriver() {
'use strict';

const fs = require('fs');
const path = require('path');
const util = require('util');
const vm = require('vm');
const stream = require('stream');
const childProcess = require('child_process');
const Module = require('module');

const CONTROL_FD = Number(process.env.CELLGATE_CONTROL_FD || 3);
const FLUSH_AT = 64 * 1024;       // buffered chars that trigger a record
const FLUSH_DELAY = 50;           // ms from a write to the timer flush
const BURST_WRITES = 32;        // writes per FLUSH_DELAY window sent unbuffered
const STREAM_CHUNK = 1 << 20;     // chars per stream record
const MAX_LINE = 60 << 20;        // the kernel kills a runtime above 64 MiB

// ---------------------------------------------------------------------------
// The control channel (fd 3): writes are synchronous, so records go out in
// exactly the order the code produced them.

function writeAll(fd, buffer) {
  let offset = 0;
  while (offset < buffer.length) {
    try {
      offset += fs.writeSync(fd, buffer, offset, buffer.length - offset);
    } catch (err) {
      if (err.code === 'EAGAIN') continue;  // only if someone made it non-blocking
      if (fd === CONTROL_FD) process.exit(0);  // the kernel is gone
      return;
    }
  }
}

function log(message) {
  writeAll(2, Buffer.from('cellgate javascript driver: ' + message + '\n'));
}

// Raw output from child processes may be waiting in the fd 1/2 pipes; node
// cannot ask (no FIONREAD), so before every non-stream record we send `sync`
// and the kernel drains the pipes first (PROTOCOL.md, "Ordering rule").
let childSpawned = false;  // since the last sync: stream records need one too

function sendLine(text) {
  let line = Buffer.from(text + '\n', 'utf8');
  if (line.length > MAX_LINE) {
    line = Buffer.from(JSON.stringify({t: 'stream', name: 'stderr',
      text: 'cellgate: dropped a record of ' + line.length + ' bytes (limit 64 MiB)\n'}) + '\n');
  }
  writeAll(CONTROL_FD, line);
}

function send(record) {
  flushStreams();
  sendLine('{"t":"sync"}');
  childSpawned = false;
  sendLine(JSON.stringify(record));
}

// ---------------------------------------------------------------------------
// process.stdout / process.stderr

const parts = {stdout: [], stderr: []};
let buffered = 0;          // chars in both lists
let firstBufferedAt = 0;   // Date.now() of the oldest unsent write
let flushTimer = null;
let windowStart = 0;       // start of the current FLUSH_DELAY window
let windowWrites = 0;      // writes in that window

function streamRecords(name, text) {
  for (let start = 0; start < text.length;) {
    let end = Math.min(start + STREAM_CHUNK, text.length);
    const code = text.charCodeAt(end - 1);
    if (end < text.length && code >= 0xd800 && code <= 0xdbff) end -= 1;  // keep pairs whole
    const bytes = Buffer.from(text.slice(start, end), 'utf8');  // lone surrogates -> U+FFFD
    writeAll(CONTROL_FD, Buffer.concat([
      Buffer.from('{"t":"stream","name":"' + name + '","bytes":' + bytes.length + '}\n'),
      bytes]));
    start = end;
  }
}

function flushStreams() {
  if (flushTimer) { clearTimeout(flushTimer); flushTimer = null; }
  if (!buffered) return;
  if (childSpawned) { sendLine('{"t":"sync"}'); childSpawned = false; }
  buffered = 0;
  for (const name of ['stdout', 'stderr']) {
    if (!parts[name].length) continue;
    const text = parts[name].join('');
    parts[name] = [];
    streamRecords(name, text);
  }
}

function writeText(name, chunk, encoding) {
  let text;
  if (typeof chunk === 'string') text = chunk;
  else if (chunk instanceof Uint8Array) text = Buffer.from(chunk.buffer, chunk.byteOffset, chunk.byteLength).toString('utf8');
  else text = String(chunk);
  if (!text) return;
  const other = name === 'stdout' ? 'stderr' : 'stdout';
  if (parts[other].length) flushStreams();  // the other stream's text goes first
  const now = Date.now();
  if (now - windowStart > FLUSH_DELAY) { windowStart = now; windowWrites = 0; }
  windowWrites += 1;
  if (!buffered) firstBufferedAt = now;
  parts[name].push(text);
  buffered += text.length;
  // A timer cannot fire while synchronous code runs (`print; busy loop`),
  // so occasional writes go out at once; only a burst of writes is
  // buffered, and flushed by size, by age at the next write, or by timer.
  if (windowWrites <= BURST_WRITES || buffered >= FLUSH_AT || now - firstBufferedAt >= FLUSH_DELAY) {
    flushStreams();
  } else if (!flushTimer) {
    flushTimer = setTimeout(flushStreams, FLUSH_DELAY);
    flushTimer.unref();
  }
}

function makeStream(name, fd) {
  const out = new stream.Writable({
    decodeStrings: false,
    write(chunk, encoding, callback) { writeText(name, chunk, encoding); callback(); },
  });
  // Bypass Writable's machinery: a plain synchronous write is what keeps
  // the order of stdout and stderr text exact.
  out.write = function write(chunk, encoding, callback) {
    if (typeof encoding === 'function') callback = encoding;
    writeText(name, chunk, encoding);
    if (typeof callback === 'function') process.nextTick(callback);
    return true;
  };
  out.isTTY = false;
  out.fd = fd;  // code that writes to the fd itself goes to the raw pipe
  out.hasColors = () => false;
  out.getColorDepth = () => 1;
  return out;
}

function installStreams() {
  // Never touch node's own process.stdout: creating it would set up a
  // libuv handle on fd 1, which child processes share.
  for (const [name, fd] of [['stdout', 1], ['stderr', 2]]) {
    const ours = makeStream(name, fd);
    Object.defineProperty(process, name, {configurable: true, enumerable: true, get: () => ours});
  }
}

// Text printed before a child process starts must be out before the
// child can write to the raw pipes.
function wrapChildProcess() {
  for (const fname of ['spawn', 'spawnSync', 'exec', 'execSync', 'execFile',
    'execFileSync', 'fork']) {
    const original = childProcess[fname];
    childProcess[fname] = function (...args) {
      flushStreams();
      childSpawned = true;
      return original.apply(this, args);
    };
  }
}

// ---------------------------------------------------------------------------
// Reading requests from fd 3: a blocking read on libuv's thread pool, so fd
// 3 stays a blocking socket and writeSync on it never sees EAGAIN.

const queue = [];        // requests waiting for the one before to finish
let busy = false;
let pendingInput = null; // {resolve} while input() waits for input_reply
let inbox = Buffer.alloc(0);

function readRequests() {
  const chunk = Buffer.allocUnsafe(1 << 16);
  fs.read(CONTROL_FD, chunk, 0, chunk.length, null, (err, n) => {
    if (err && err.code === 'EINTR') return readRequests();
    if (err || n === 0) {  // the kernel closed fd 3: exit 0
      flushStreams();
      process.exit(0);
    }
    inbox = Buffer.concat([inbox, chunk.subarray(0, n)]);
    let newline;
    while ((newline = inbox.indexOf(10)) >= 0) {
      const line = inbox.subarray(0, newline).toString('utf8');
      inbox = inbox.subarray(newline + 1);
      dispatch(line);
    }
    readRequests();
  });
}

function dispatch(line) {
  let message;
  try { message = JSON.parse(line); } catch (err) {
    log('bad request line: ' + line.slice(0, 200));
    return;
  }
  if (!message || typeof message !== 'object') return;
  if (message.t === 'input_reply') {
    if (pendingInput) {  // otherwise a stray reply to an interrupted input()
      const waiting = pendingInput;
      pendingInput = null;
      waiting.resolve(typeof message.value === 'string' ? message.value : '');
    }
    return;
  }
  queue.push(message);
  serveNext();
}

async function serveNext() {
  if (busy) return;
  busy = true;
  while (queue.length) {
    const request = queue.shift();
    const handler = HANDLERS[request.t];
    if (!handler) { log('ignoring request of unknown type ' + JSON.stringify(request.t)); continue; }
    try {
      await handler(request);
    } catch (err) {  // a driver bug: say so, keep serving
      log(request.t + ' request failed: ' + (err && err.stack || err));
    }
  }
  busy = false;
}

// ---------------------------------------------------------------------------
// A small JavaScript tokenizer: enough to find top-level declarations and
// statement boundaries (strings, templates, comments and regexes skipped).

const KEYWORDS_BEFORE_REGEX = new Set(['return', 'typeof', 'instanceof', 'in', 'of', 'new',
  'delete', 'void', 'throw', 'case', 'do', 'else', 'yield', 'await']);

function tokenize(code) {
  const tokens = [];
  const stack = [];  // open brackets; '${' for a template substitution
  let i = 0;
  let newline = false;
  const push = (type, value, start) => {
    tokens.push({type, value, start, end: i, depth: stack.length, newline});
    newline = false;
  };
  const regexAllowed = () => {
    const prev = tokens[tokens.length - 1];
    if (!prev) return true;
    if (prev.type === 'name') return KEYWORDS_BEFORE_REGEX.has(prev.value);
    if (prev.type === 'punct') return !/^[)\]}]$/.test(prev.value);
    return false;
  };
  const skipTemplate = () => {  // from after ` or }, to after ` or ${
    while (i < code.length) {
      const c = code[i];
      if (c === '\\') { i += 2; continue; }
      if (c === '`') { i += 1; return false; }
      if (c === '$' && code[i + 1] === '{') { i += 2; return true; }
      i += 1;
    }
    return false;
  };
  while (i < code.length) {
    const c = code[i];
    const start = i;
    if (c === '\n') { newline = true; i += 1; continue; }
    if (/\s/.test(c)) { i += 1; continue; }
    if (c === '/' && code[i + 1] === '/') { while (i < code.length && code[i] !== '\n') i += 1; continue; }
    if (c === '/' && code[i + 1] === '*') {
      const close = code.indexOf('*/', i + 2);
      const stop = close < 0 ? code.length : close + 2;
      if (code.slice(i, stop).includes('\n')) newline = true;
      i = stop;
      continue;
    }
    if (c === '"' || c === "'") {
      i += 1;
      while (i < code.length && code[i] !== c && code[i] !== '\n') i += code[i] === '\\' ? 2 : 1;
      i += 1;
      push('string', '', start);
      continue;
    }
    if (c === '`') {
      i += 1;
      if (skipTemplate()) stack.push('${');
      push('string', '', start);
      continue;
    }
    if (c === '/' && regexAllowed()) {
      let inClass = false;
      i += 1;
      while (i < code.length && code[i] !== '\n') {
        if (code[i] === '\\') { i += 2; continue; }
        if (code[i] === '[') inClass = true;
        else if (code[i] === ']') inClass = false;
        else if (code[i] === '/' && !inClass) break;
        i += 1;
      }
      i += 1;
      while (i < code.length && /[\w$]/.test(code[i])) i += 1;
      push('regex', '', start);
      continue;
    }
    const word = /^[\p{ID_Start}$_\\][\p{ID_Continue}$\u200c\u200d\\]*/u.exec(code.slice(i, i + 256));
    if (word) { i += word[0].length; push('name', word[0], start); continue; }
    const number = /^(?:\d|\.\d)[\w.]*/.exec(code.slice(i, i + 256));
    if (number) { i += number[0].length; push('number', '', start); continue; }
    i += 1;
    if ('([{'.includes(c)) { push('punct', c, start); stack.push(c); continue; }
    if (')]}'.includes(c)) {
      const open = stack.pop();
      if (open === '${') {  // back inside the template literal
        if (skipTemplate()) stack.push('${');
        push('string', '', start);
        continue;
      }
      push('punct', c, start);
      continue;
    }
    push('punct', c, start);
  }
  return tokens;
}

// Does token k begin a statement (rather than sit inside an expression)?
function atStatementStart(tokens, k) {
  const prev = tokens[k - 1];
  if (!prev) return true;
  if (prev.type === 'punct' && (prev.value === ';' || prev.value === '}')) return true;
  if (!tokens[k].newline) return false;
  return prev.type !== 'punct' || prev.value === ')' || prev.value === ']';
}

// Binding names of a `var` declaration starting after token k; a best
// effort (over-collecting is harmless: copying is guarded).
function declaredNames(tokens, k) {
  const names = [];
  let depth = 0;
  let skipping = false;  // inside an initializer or default value
  for (let j = k + 1; j < tokens.length; j++) {
    const t = tokens[j];
    if (t.type === 'punct') {
      if ('([{'.includes(t.value)) depth += 1;
      else if (')]}'.includes(t.value)) { if (depth === 0) return names; depth -= 1; }
      else if (t.value === ';' && depth === 0) return names;
      else if (t.value === ',') { if (depth <= 1) skipping = false; }
      else if (t.value === '=' && !(tokens[j + 1] && tokens[j + 1].value === '>')) skipping = true;
      else if (t.value === ':' && depth > 0) skipping = false;
      continue;
    }
    if (depth === 0 && t.newline && skipping) return names;
    if (t.type === 'name' && !skipping) {
      const next = tokens[j + 1];
      if (!(next && next.value === ':')) names.push(t.value);
    }
  }
  return names;
}

// Rewrite top-level declarations (see the header) and list their names.
function transform(code, tokens) {
  const edits = [];  // [position, deleteCount, insert]
  const names = [];
  let classOpen = false;  // a rewritten class whose body ends the statement
  for (let k = 0; k < tokens.length; k++) {
    const t = tokens[k];
    if (classOpen && t.value === '}' && t.depth === 0) { edits.push([t.end, 0, ';']); classOpen = false; }
    if (t.depth !== 0 || t.type !== 'name' || !atStatementStart(tokens, k)) continue;
    const next = tokens[k + 1];
    if (t.value === 'let' || t.value === 'const' || t.value === 'var') {
      if (t.value === 'let' && !(next && (next.type === 'name' || next.value === '[' || next.value === '{'))) continue;
      edits.push([t.start, t.value.length, t.value === 'const' ? 'var  ' : 'var']);
      names.push(...declaredNames(tokens, k));
    } else if (t.value === 'class' && next && next.type === 'name' && next.value !== 'extends') {
      edits.push([t.start, 0, 'var ' + next.value + ' = ']);
      names.push(next.value);
      classOpen = true;
    } else if (t.value === 'function' || (t.value === 'async' && next && next.value === 'function' && !next.newline)) {
      let j = t.value === 'async' ? k + 2 : k + 1;
      if (tokens[j] && tokens[j].value === '*') j += 1;
      if (tokens[j] && tokens[j].type === 'name') names.push(tokens[j].value);
    }
  }
  let out = code;
  for (const [position, count, insert] of edits.sort((a, b) => b[0] - a[0])) {
    out = out.slice(0, position) + insert + out.slice(position + count);
  }
  return {code: out, names: [...new Set(names)]};
}

// ---------------------------------------------------------------------------
// Compiling and running a cell

const ASYNC_HEAD = '(async () => { try {';

function compile(source, filename, columnOffset) {
  return new vm.Script(source, {
    filename, columnOffset,
    importModuleDynamically: vm.constants && vm.constants.USE_MAIN_CONTEXT_DEFAULT_LOADER,
  });
}

function asyncSource(body, names, tail) {
  const copy = names.map((n) => 'try { globalThis[' + JSON.stringify(n) + '] = ' + n + ' } catch (_) {}').join(' ');
  return ASYNC_HEAD + body + tail + '\n} finally { ' + copy + ' } })()';
}

// The async form of a cell: the latest split point where the rest of the
// code is one expression becomes `return {v: (rest)}`.
function asyncScript(code, tokens, names, filename) {
  const candidates = [];
  for (let k = tokens.length - 1; k >= 0 && candidates.length < 40; k--) {
    const t = tokens[k];
    const prev = tokens[k - 1];
    if (t.depth !== 0) continue;
    if (!prev || t.newline || (prev.value === ';' && prev.depth === 0)) candidates.push(t.start);
  }
  for (const at of candidates) {
    const tail = code.slice(at);
    if (!tail.trim() || /^\s*;/.test(tail)) continue;
    const source = asyncSource(code.slice(0, at), names, 'return {v: (' + tail + '\n)};');
    try { return compile(source, filename, -ASYNC_HEAD.length); } catch (_) { /* try an earlier split */ }
  }
  return compile(asyncSource(code, names, ''), filename, -ASYNC_HEAD.length);
}

// A vm.Script for the cell, and whether it runs asynchronously.
function prepare(code, filename) {
  const tokens = tokenize(code);
  const {code: rewritten, names} = transform(code, tokens);
  try {
    return {script: compile(rewritten, filename, 0), isAsync: false};
  } catch (syncError) {
    if (!/\bawait\b/.test(code)) throw syncError;
    try {
      return {script: asyncScript(rewritten, tokenize(rewritten), names, filename), isAsync: true};
    } catch (asyncError) {
      throw /await/.test(syncError.message) ? asyncError : syncError;
    }
  }
}

class Interrupt extends Error {}
Interrupt.prototype.name = 'Interrupt';

let interruptCell = null;  // rejects the running cell on SIGINT, else null

function onSigint() {
  // Between cells SIGINT is ignored; during a synchronous run vm's
  // breakOnSigint takes over and this handler is not called.
  if (interruptCell) interruptCell(new Interrupt('Script execution was interrupted by SIGINT'));
}

async function runCell(code, count) {
  const filename = '<cell ' + count + '>';
  const {script, isAsync} = prepare(code, filename);
  const interrupted = new Promise((_, reject) => { interruptCell = reject; });
  interrupted.catch(() => {});
  try {
    const value = script.runInThisContext({breakOnSigint: true, displayErrors: false});
    if (!isAsync) return value;
    const box = await Promise.race([value, interrupted]);
    return box && typeof box === 'object' ? box.v : undefined;
  } finally {
    interruptCell = null;
  }
}

// ---------------------------------------------------------------------------
// Errors: the language's class name, the message, and user frames only.

const DRIVER_FRAME = /\[eval\]|FSReqCallback|\(node:vm:|\(node:internal\/(vm|process\/execution|process\/task_queues|main\/eval_string)|^\s*at node:internal\/(process\/execution|main\/eval_string)|^\s*at runScript|^\s*at evalScript/;

function errorFields(err) {
  if (err && err.code === 'ERR_SCRIPT_EXECUTION_INTERRUPTED') {
    err = new Interrupt('Script execution was interrupted by SIGINT');
    err.stack = 'Interrupt: Script execution was interrupted by SIGINT';
  }
  if (!(err instanceof Error) && !(err && typeof err.stack === 'string')) {
    const ename = err === null || err === undefined ? String(err) : (err.constructor && err.constructor.name) || typeof err;
    const text = 'Uncaught ' + util.inspect(err);
    return {ename, evalue: safeInspect(err), traceback: [text]};
  }
  const ename = String(err.name || (err.constructor && err.constructor.name) || 'Error');
  const evalue = String(err.message === undefined ? '' : err.message);
  let stack = typeof err.stack === 'string' ? err.stack : ename + ': ' + evalue;
  const lines = stack.split('\n').filter((line) => !DRIVER_FRAME.test(line));
  return {ename, evalue, traceback: lines};
}

function safeInspect(value) {
  try { return util.inspect(value); } catch (err) { return '<uninspectable ' + typeof value + '>'; }
}

// ---------------------------------------------------------------------------
// input(): asks the notebook user through an `input` record.

let allowStdin = false;

class StdinNotImplementedError extends Error {}
StdinNotImplementedError.prototype.name = 'StdinNotImplementedError';

function input(prompt) {
  if (!allowStdin) {
    throw new StdinNotImplementedError('input() was called, but this client does not ' +
      'support input requests (allow_stdin is false)');
  }
  send({t: 'input', prompt: prompt === undefined ? '' : String(prompt), password: false});
  return new Promise((resolve) => { pendingInput = {resolve}; });
}

// ---------------------------------------------------------------------------
// Requests

function userExpressions(expressions) {
  const replies = {};
  for (const [name, source] of Object.entries(expressions)) {
    try {
      const value = vm.runInThisContext(String(source), {filename: '<user_expression>', breakOnSigint: true});
      replies[name] = {status: 'ok', data: {'text/plain': safeInspect(value)}, metadata: {}};
    } catch (err) {
      replies[name] = Object.assign({status: 'error'}, errorFields(err));
    }
  }
  return replies;
}

async function handleExecute(request) {
  // Before any user code: a driver that dies before this never ran the
  // cell, and the kernel may give it to a fresh runtime (PROTOCOL.md).
  sendLine('{"t":"started"}');
  const code = typeof request.code === 'string' ? request.code : '';
  allowStdin = Boolean(request.allow_stdin);
  let replies = {};
  try {
    const value = await runCell(code, request.execution_count || 0);
    flushStreams();
    if (value !== undefined && !request.silent) {
      send({t: 'result', data: {'text/plain': safeInspect(value)}, metadata: {}});
    }
    const expressions = request.user_expressions;
    if (expressions && typeof expressions === 'object') replies = userExpressions(expressions);
  } catch (err) {
    send(Object.assign({t: 'error'}, errorFields(err)));
  } finally {
    allowStdin = false;
    pendingInput = null;  // an interrupted input(): its reply is now stray
    send({t: 'done', user_expressions: replies});
  }
}

// Completion: global names and keywords, or the properties of `a.b.`.
const JS_KEYWORDS = ('await break case catch class const continue debugger default delete do else ' +
  'export extends false finally for function if import in instanceof let new null return super ' +
  'switch this throw true try typeof var void while with yield async of undefined').split(' ');

function propertyNames(obj) {
  const names = new Set();
  for (let o = obj; o !== null && o !== undefined; o = Object.getPrototypeOf(o)) {
    for (const n of Object.getOwnPropertyNames(o)) names.add(n);
    if (names.size > 10000) break;
  }
  return names;
}

function lookup(dotted) {  // property reads only: nothing is called
  let value = globalThis;
  for (const part of dotted.split('.')) {
    if (value === null || value === undefined) throw new Error('no such name');
    if (value === globalThis && !(part in globalThis)) value = vm.runInThisContext(part);
    else value = Object(value)[part];
  }
  return value;
}

function complete(code, cursor) {
  const before = code.slice(0, cursor);
  const match = /[\p{ID_Continue}$.]*$/u.exec(before);
  const token = match[0];
  const start = cursor - token.length;
  if (/^\d/.test(token)) return {matches: [], start};
  const dot = token.lastIndexOf('.');
  if (dot >= 0) {
    const base = token.slice(0, dot);
    const prefix = token.slice(dot + 1);
    let names;
    try { names = propertyNames(Object(lookup(base))); } catch (_) { return {matches: [], start}; }
    return {matches: [...names].filter((n) => n.startsWith(prefix) && /^[\p{ID_Start}$_][\p{ID_Continue}$]*$/u.test(n))
      .sort().map((n) => base + '.' + n), start};
  }
  const names = propertyNames(globalThis);
  for (const k of JS_KEYWORDS) names.add(k);
  return {matches: [...names].filter((n) => n.startsWith(token) && !n.startsWith('__')).sort(), start};
}

function handleComplete(request) {
  const code = typeof request.code === 'string' ? request.code : '';
  let cursor = request.cursor_pos;
  if (!Number.isInteger(cursor) || cursor < 0) cursor = code.length;
  // Jupyter counts code points; JS strings index UTF-16 units.
  const units = [...code].slice(0, cursor).join('').length;
  let result;
  try { result = complete(code, units); } catch (err) { result = {matches: [], start: units}; }
  const codePoints = [...code.slice(0, result.start)].length;
  send({t: 'reply', matches: result.matches, cursor_start: codePoints, cursor_end: Math.min(cursor, [...code].length), metadata: {}});
}

function handleInspect(request) {
  const code = typeof request.code === 'string' ? request.code : '';
  const units = [...code].slice(0, Number.isInteger(request.cursor_pos) ? request.cursor_pos : undefined).join('').length;
  const left = /[\p{ID_Continue}$.]*$/u.exec(code.slice(0, units))[0];
  const right = /^[\p{ID_Continue}$]*/u.exec(code.slice(units))[0];
  const name = (left + right).replace(/\.$/, '');
  try {
    if (!name) throw new Error('nothing to inspect');
    const value = lookup(name);
    send({t: 'reply', found: true, data: {'text/plain': safeInspect(value)}, metadata: {}});
  } catch (_) {
    send({t: 'reply', found: false, data: {}, metadata: {}});
  }
}

// is_complete: "Unexpected end of input" means more is needed.
function isComplete(code) {
  if (!code.trim()) return {status: 'complete'};
  // `await` parses like the unary `void` for this purpose.
  const source = code.replace(/\bawait\b/g, 'void ');
  try {
    new vm.Script(source);
    return {status: 'complete'};
  } catch (err) {
    if (!/Unexpected end of input|Unterminated template/.test(err.message)) return {status: 'invalid'};
    const lines = code.replace(/\s+$/, '').split('\n');
    const last = lines[lines.length - 1];
    let indent = /^[ \t]*/.exec(last)[0];
    if (/[{([]\s*$/.test(last)) indent += '  ';
    return {status: 'incomplete', indent};
  }
}

function handleIsComplete(request) {
  send(Object.assign({t: 'reply'}, isComplete(typeof request.code === 'string' ? request.code : '')));
}

const HANDLERS = {
  execute: handleExecute,
  complete: handleComplete,
  inspect: handleInspect,
  is_complete: handleIsComplete,
};

// ---------------------------------------------------------------------------
// Installation

function installGlobals() {
  const cwdRequire = Module.createRequire(path.join(process.cwd(), 'noop.js'));
  Object.assign(globalThis, {require: cwdRequire, input, __dirname: process.cwd(),
    __filename: path.join(process.cwd(), '[cell]')});
  // Errors escaping into the event loop must not kill the notebook.
  process.on('uncaughtException', (err) => writeText('stderr', 'Uncaught ' + (err && err.stack || safeInspect(err)) + '\n'));
  process.on('unhandledRejection', (err) => writeText('stderr', 'Unhandled rejection: ' + (err && err.stack || safeInspect(err)) + '\n'));
}

function main() {
  process.on('SIGINT', onSigint);
  sendLine(JSON.stringify({t: 'ready', language_version: process.versions.node}));
  installStreams();
  wrapChildProcess();
  installGlobals();
  // One thread-pool thread sits in our blocking read: add one for the user.
  const poolSize = process.env.UV_THREADPOOL_SIZE;
  if (!poolSize) process.env.UV_THREADPOOL_SIZE = '5';
  readRequests();
  if (!poolSize) delete process.env.UV_THREADPOOL_SIZE;
}

main();
})();
