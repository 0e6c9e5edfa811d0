# cellgate's Ruby driver: the process that runs a notebook's Ruby code.
#
# The cellgate kernel (written in C) starts this whole file as
#
#     /usr/bin/ruby -e "<this file>"
#
# in its own process group, with CELLGATE_DRIVER=1 and CELLGATE_CONTROL_FD=3.
# fd 3 is an AF_UNIX stream socket carrying JSON lines both ways, fd 1/2 are
# raw pipes the kernel turns into stream output, fd 0 is /dev/null.  The
# records are specified in PROTOCOL.md next to this file.
#
# Cells are evaluated with eval in TOPLEVEL_BINDING, so local variables,
# methods, constants and requires persist; $stdout/$stderr become objects
# that buffer text and send `stream` records on fd 3 (IO#syswrite, so the
# order of stdout and stderr text is exact); $stdin asks the notebook user.
# Everything of the driver lives in the module CellgateDriver, so that no
# local variable of ours is visible to the user's code.

require 'json'
require 'monitor'

# Raised by gets & co. when the execute request had allow_stdin false.
class StdinNotImplementedError < IOError; end

module CellgateDriver
  CONTROL_FD = Integer(ENV.fetch('CELLGATE_CONTROL_FD', '3'))
  FLUSH_AT = 64 * 1024       # buffered bytes that trigger a record
  FLUSH_DELAY = 0.05         # seconds from a write to the background flush
  STREAM_CHUNK = 1 << 20     # bytes per stream record
  MAX_LINE = 60 << 20        # the kernel kills a runtime above 64 MiB
  UTF_8 = Encoding::UTF_8
  # Backtrace lines of the driver itself (ruby -e names its code "-e").
  DRIVER_FRAME = /\A-e:\d+:/

  @control = IO.for_fd(CONTROL_FD, 'r+b', autoclose: false)
  @control.close_on_exec = true  # children of system() must not hold it
  @lock = Monitor.new
  @running = false            # user code is running: SIGINT interrupts it
  @pending_interrupt = false  # SIGINT came while the main thread was writing
  @writing = false            # the main thread is inside a write to fd 3
  @child_spawned = false      # raw output may be pending: streams need a sync
  @allow_stdin = false
  @held = []                  # requests read while gets waited for input_reply
  @inbox = String.new(encoding: Encoding::BINARY)

  class << self
    attr_reader :lock
    attr_accessor :child_spawned

    # -----------------------------------------------------------------------
    # The control channel (fd 3)

    def utf8(text)
      text = text.to_s
      if [UTF_8, Encoding::BINARY, Encoding::US_ASCII].include?(text.encoding)
        text.dup.force_encoding(UTF_8).scrub
      else
        text.encode(UTF_8, invalid: :replace, undef: :replace)
      end
    end

    # Write bytes to fd 3 whole: a SIGINT arriving meanwhile is deferred
    # (see on_sigint), so a line is never cut in half.
    def write_control(bytes)
      main = Thread.current == Thread.main
      @writing = true if main
      begin
        while bytes.bytesize > 0
          written = @control.syswrite(bytes)
          bytes = bytes.byteslice(written..)
        end
      rescue Errno::EPIPE, Errno::ECONNRESET, IOError
        exit!(0)  # the kernel is gone
      ensure
        @writing = false if main
      end
    end

    def raise_pending_interrupt
      return unless @pending_interrupt && Thread.current == Thread.main && !@writing
      @pending_interrupt = false
      raise Interrupt, '' if @running
    end

    def send_line(text)
      line = utf8(text) + "\n"
      if line.bytesize > MAX_LINE
        line = JSON.generate({ t: 'stream', name: 'stderr',
                               text: "cellgate: dropped a record of #{line.bytesize} bytes (limit 64 MiB)\n" }) + "\n"
      end
      write_control(line.b)
    end

    # Ruby cannot ask whether raw output waits in the fd 1/2 pipes (the
    # FIONREAD python uses), so every non-stream record is preceded by
    # `sync`: the kernel drains the pipes first (PROTOCOL.md, "Ordering rule").
    def send_record(record)
      @lock.synchronize do
        flush_locked
        send_line('{"t":"sync"}')
        @child_spawned = false
        send_line(JSON.generate(record))
      end
      raise_pending_interrupt
    end

    # -----------------------------------------------------------------------
    # Stream buffers

    def buffers
      @buffers ||= { 'stdout' => String.new(encoding: UTF_8), 'stderr' => String.new(encoding: UTF_8) }
    end

    def write_stream(name, text)
      text = utf8(text)
      return 0 if text.empty?
      @lock.synchronize do
        other = name == 'stdout' ? 'stderr' : 'stdout'
        flush_locked unless buffers[other].empty?  # the other stream's text first
        buffers[name] << text
        if buffers['stdout'].bytesize + buffers['stderr'].bytesize >= FLUSH_AT
          flush_locked
        else
          schedule_flush
        end
      end
      raise_pending_interrupt
      text.bytesize
    end

    # Send the buffered text.  The caller holds @lock.
    def flush_locked
      %w[stdout stderr].each do |name|
        data = buffers[name]
        next if data.empty?
        @buffers[name] = String.new(encoding: UTF_8)
        send_line('{"t":"sync"}') if @child_spawned
        @child_spawned = false
        bytes = data.b
        (0...bytes.bytesize).step(STREAM_CHUNK) do |start|
          chunk = bytes.byteslice(start, STREAM_CHUNK)
          write_control(%({"t":"stream","name":"#{name}","bytes":#{chunk.bytesize}}\n).b + chunk)
        end
      end
    end

    def flush_streams
      @lock.synchronize { flush_locked }
      raise_pending_interrupt
    end

    # A thread that flushes FLUSH_DELAY after a write, so that
    # `puts 1; sleep 5` shows the 1 promptly (threads run even in busy loops).
    def schedule_flush
      return if @flush_scheduled
      @flush_scheduled = true
      @flush_queue ||= Queue.new
      @flusher ||= Thread.new do
        loop do
          @flush_queue.pop
          sleep FLUSH_DELAY
          @flush_scheduled = false
          @lock.synchronize { flush_locked }
        end
      end
      @flush_queue << true
    end

    # -----------------------------------------------------------------------
    # Requests from fd 3

    # The next request (a Hash), or nil at end of file.
    def next_request
      return @held.shift unless @held.empty?
      loop do
        newline = @inbox.index("\n")
        if newline.nil?
          chunk = begin
            @control.sysread(1 << 16)
          rescue EOFError, Errno::ECONNRESET
            return nil
          end
          @inbox << chunk
          next
        end
        line = @inbox.slice!(0, newline + 1)
        begin
          message = JSON.parse(line.force_encoding(UTF_8))
        rescue JSON::ParserError => e
          log("bad request line (#{e.message[0, 100]})")
          next
        end
        return message if message.is_a?(Hash)
      end
    end

    def log(message)
      STDERR.syswrite("cellgate ruby driver: #{message}\n")
    rescue StandardError
      nil
    end

    # -----------------------------------------------------------------------
    # input: gets & co.

    def read_input(prompt, what)
      unless @allow_stdin
        raise StdinNotImplementedError, "#{what} was called, but this client does not " \
                                        'support input requests (allow_stdin is false)'
      end
      send_record({ t: 'input', prompt: utf8(prompt), password: false })
      loop do
        message = next_request
        raise EOFError, 'the kernel closed the control channel' if message.nil?
        if message['t'] == 'input_reply'
          value = message['value']
          return value.is_a?(String) ? value : ''
        end
        @held << message  # not ours: the request loop's
      end
    end

    # -----------------------------------------------------------------------
    # execute

    def on_sigint
      return unless @running  # between cells: ignored
      if @writing && Thread.current == Thread.main
        @pending_interrupt = true  # raised once the line is complete
      else
        raise Interrupt, ''
      end
    end

    # Run block as user code: only now does SIGINT raise Interrupt.
    def interruptibly
      @pending_interrupt = false
      @running = true
      yield
    ensure
      @running = false
    end

    def error_fields(error)
      backtrace = (error.backtrace || []).reject { |line| line.match?(DRIVER_FRAME) }
      message = error.is_a?(SyntaxError) ? error.message : "#{error.class.name}: #{error.message}"
      traceback = [utf8(message)] + backtrace.map { |line| "\tfrom #{utf8(line)}" }
      { ename: error.class.name.to_s, evalue: utf8(error.message), traceback: traceback }
    end

    def inspect_value(value)
      utf8(value.inspect)
    rescue StandardError => e
      "#<#{value.class} (inspect failed: #{e.class})>"
    end

    def user_expressions(expressions)
      expressions.to_h do |name, source|
        value = interruptibly { TOPLEVEL_BINDING.eval(source.to_s, '<user_expression>', 1) }
        [name, { status: 'ok', data: { 'text/plain' => inspect_value(value) }, metadata: {} }]
      rescue Exception => e # rubocop:disable Lint/RescueException
        [name, { status: 'error' }.merge(error_fields(e))]
      end
    end

    def handle_execute(request)
      # Before any user code: a driver that dies before this never ran the
      # cell, and the kernel may give it to a fresh runtime (PROTOCOL.md).
      @lock.synchronize { send_line('{"t":"started"}') }
      code = request['code'].is_a?(String) ? request['code'] : ''
      @allow_stdin = request['allow_stdin'] == true
      replies = {}
      begin
        value = interruptibly do
          TOPLEVEL_BINDING.eval(code, "<cell #{request['execution_count'].to_i}>", 1)
        end
        flush_streams
        unless value.nil? || request['silent']
          text = interruptibly { inspect_value(value) }
          send_record({ t: 'result', data: { 'text/plain' => text }, metadata: {} })
        end
        expressions = request['user_expressions']
        replies = user_expressions(expressions) if expressions.is_a?(Hash)
      rescue SystemExit => e  # `exit` in a cell is an error, not the end
        send_record({ t: 'error' }.merge(error_fields(e)))
      rescue Exception => e # rubocop:disable Lint/RescueException
        send_record({ t: 'error' }.merge(error_fields(e)))
      ensure
        @allow_stdin = false
        send_record({ t: 'done', user_expressions: replies })
      end
    end

    # -----------------------------------------------------------------------
    # complete / inspect / is_complete

    KEYWORDS = %w[alias and begin break case class def defined? do else elsif end ensure false for
                  if in module next nil not or redo rescue retry return self super then true undef
                  unless until when while yield __method__ require require_relative].freeze

    # The object a name refers to, without calling methods: a local
    # variable, a constant path, an instance/global variable; else raises.
    def lookup(name)
      main = TOPLEVEL_BINDING.receiver
      case name
      when /\A[a-z_]\w*\z/ then TOPLEVEL_BINDING.local_variable_get(name)
      when /\A[A-Z]\w*(::[A-Z]\w*)*\z/ then Object.const_get(name)
      when /\A@\w+\z/ then main.instance_variable_get(name)
      when /\A\$\w+\z/ then TOPLEVEL_BINDING.eval(name)
      else raise NameError, name
      end
    end

    def complete(code, cursor)
      token = code[0, cursor][/[\w@$:.?!]*\z/]
      start = cursor - token.length
      if (match = token.match(/\A(.+)(\.|::)(\w*[?!]?)\z/))
        base, sep, prefix = match.captures
        object = lookup(base)
        names = sep == '::' && object.is_a?(Module) ? object.constants + object.methods : object.methods
        return [names.map(&:to_s).select { |n| n.start_with?(prefix) }.uniq.sort.map { |n| base + sep + n }, start]
      end
      main = TOPLEVEL_BINDING.receiver
      names = TOPLEVEL_BINDING.local_variables + main.methods + main.private_methods +
              Object.constants + main.instance_variables + global_variables + KEYWORDS
      [names.map(&:to_s).select { |n| n.start_with?(token) }.uniq.sort, start]
    rescue StandardError, ScriptError
      [[], cursor]
    end

    def handle_complete(request)
      code = request['code'].is_a?(String) ? request['code'] : ''
      cursor = request['cursor_pos']
      cursor = code.length unless cursor.is_a?(Integer) && cursor.between?(0, code.length)
      matches, start = complete(code, cursor)  # Ruby indexes code points: as Jupyter
      send_record({ t: 'reply', matches: matches, cursor_start: start, cursor_end: cursor, metadata: {} })
    end

    def handle_inspect(request)
      code = request['code'].is_a?(String) ? request['code'] : ''
      cursor = request['cursor_pos'].is_a?(Integer) ? request['cursor_pos'].clamp(0, code.length) : code.length
      name = code[0, cursor][/[\w@$:]*\z/] + code[cursor..][/\A\w*/]
      begin
        object = lookup(name)
        text = "#{name}: #{object.class}\n#{inspect_value(object)}"
        send_record({ t: 'reply', found: true, data: { 'text/plain' => text }, metadata: {} })
      rescue StandardError, ScriptError
        send_record({ t: 'reply', found: false, data: {}, metadata: {} })
      end
    end

    INCOMPLETE = /unexpected end-of-input|unterminated|can't find string .* anywhere before EOF|embedded document meets end of file/
    OPENS_BLOCK = /(\A\s*(def|class|module|if|unless|while|until|case|begin|for|else|elsif|when|ensure|rescue)\b|\bdo(\s*\|[^|]*\|)?\s*\z|[{(\[|]\s*\z)/

    def is_complete(code)
      return { status: 'complete' } if code.strip.empty?
      RubyVM::InstructionSequence.compile(code)
      { status: 'complete' }
    rescue SyntaxError => e
      return { status: 'invalid' } unless e.message.match?(INCOMPLETE)
      last = code.rstrip.split("\n").last.to_s
      indent = last[/\A[ \t]*/]
      indent += '  ' if last.match?(OPENS_BLOCK)
      { status: 'incomplete', indent: indent }
    end

    def handle_is_complete(request)
      code = request['code'].is_a?(String) ? request['code'] : ''
      send_record({ t: 'reply' }.merge(is_complete(code)))
    end

    # -----------------------------------------------------------------------
    # The request loop

    def serve
      loop do
        request = next_request
        return if request.nil?
        case request['t']
        when 'execute' then handle_execute(request)
        when 'complete' then handle_complete(request)
        when 'inspect' then handle_inspect(request)
        when 'is_complete' then handle_is_complete(request)
        when 'input_reply' then nil  # a stray reply to an interrupted gets
        else log("ignoring request of unknown type #{request['t'].inspect}")
        end
      rescue Interrupt
        nil  # a SIGINT that landed just as a cell ended
      rescue StandardError => e  # a driver bug: say so, keep serving
        log("#{request && request['t']} request failed: #{e.class}: #{e.message}")
      end
    end
  end

  # $stdout / $stderr: text becomes `stream` records.
  class Output
    def initialize(name, fd)
      @name = name
      @fd = fd
    end

    def write(*objects)
      objects.sum { |o| CellgateDriver.write_stream(@name, o.to_s) }
    end

    def print(*objects)
      write(*objects)
      nil
    end

    def puts(*objects)
      return write("\n") && nil if objects.empty?
      objects.each do |o|
        if o.is_a?(Array)
          o.flatten.each { |item| puts(item) }
          next
        end
        text = o.nil? ? '' : o.to_s
        write(text.end_with?("\n") ? text : "#{text}\n")
      end
      nil
    end

    def printf(format, *args)
      write(format % args)
      nil
    end

    def <<(object)
      write(object)
      self
    end

    def putc(char)
      write(char.is_a?(Integer) ? char.chr : char.to_s[0])
      char
    end

    def flush
      CellgateDriver.flush_streams
      self
    end

    def fsync = flush && 0
    def sync = true
    def sync=(_value); end
    def tty? = false
    def isatty = false
    def fileno = @fd # code that writes to the fd itself reaches the raw pipe
    def closed? = false
    def close = flush && nil
    def external_encoding = UTF_8
    def inspect = "#<CellgateDriver::Output #{@name}>"
  end

  # $stdin: each line is asked of the notebook user.
  class Input
    def gets(*_args)
      "#{CellgateDriver.read_input('', 'gets')}\n"
    end

    def readline(*args) = gets(*args)
    def read(*args) = gets(*args)
    def each_line = block_given? ? loop { yield gets } : enum_for(:each_line)
    def tty? = false
    def isatty = false
    def fileno = 0
    def eof? = false
    def external_encoding = UTF_8
  end

  # Text printed before a child process starts must be out before the
  # child can write to the raw pipes.  Private for Kernel's functions
  # (system, spawn, `...`), public for IO.popen and Process.spawn.
  def self.flush_before_spawn(names, visibility)
    Module.new do
      names.each do |name|
        define_method(name) do |*args, &block|
          CellgateDriver.flush_streams
          CellgateDriver.child_spawned = true
          super(*args, &block)
        end
        ruby2_keywords(name)
        send(visibility, name)
      end
    end
  end

  # Kernel#gets reads ARGF; in a cell it means "ask the user".
  module CellInput
    private

    def gets(*args) = $stdin.gets(*args)
    def readline(*args) = $stdin.readline(*args)
    def readlines(*) = [$stdin.gets]
  end

  def self.install
    $stdout = Output.new('stdout', 1)
    $stderr = Output.new('stderr', 2)
    $stdin = Input.new
    Object.include(CellInput)
    Object.prepend(flush_before_spawn(%i[system spawn exec `], :private))
    IO.singleton_class.prepend(flush_before_spawn(%i[popen], :public))
    Process.singleton_class.prepend(flush_before_spawn(%i[spawn exec], :public))
    $LOAD_PATH.unshift(Dir.pwd)
  end

  def self.main
    Signal.trap('INT') { on_sigint }
    send_line(JSON.generate({ t: 'ready', language_version: RUBY_VERSION }))
    install
    serve
    # The kernel closed fd 3: exit 0; at_exit output goes to the raw pipes.
    flush_streams
    $stdout = STDOUT
    $stderr = STDERR
    exit(0)
  end
end

CellgateDriver.main
