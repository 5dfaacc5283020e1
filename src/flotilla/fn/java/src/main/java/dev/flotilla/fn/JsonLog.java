package dev.flotilla.fn;

import java.io.ByteArrayOutputStream;
import java.io.OutputStream;
import java.io.PrintStream;
import java.io.PrintWriter;
import java.io.StringWriter;
import java.nio.charset.StandardCharsets;
import java.time.Instant;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.logging.Handler;
import java.util.logging.Level;
import java.util.logging.LogManager;
import java.util.logging.LogRecord;
import java.util.logging.Logger;

/**
 * One JSON object per line on stdout, as in the other runtimes: java.util.logging records and
 * lines printed to System.out / System.err by the function all become such lines, carrying the
 * trace and span ids of the invocation they were written in.
 */
final class JsonLog {
    static volatile String faasName = "function";
    private static final PrintStream OUT = new PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.out), true, StandardCharsets.UTF_8);

    private JsonLog() {}

    static void write(String level, String logger, String msg, Throwable error) {
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("time", Instant.now().toString());
        doc.put("level", level);
        doc.put("logger", logger);
        doc.put("msg", msg);
        doc.put("faas.name", faasName);
        Span span = Span.CURRENT.get();
        if (span != null) {
            doc.put("trace_id", span.traceId);
            doc.put("span_id", span.spanId);
        }
        if (error != null) {
            StringWriter trace = new StringWriter();
            error.printStackTrace(new PrintWriter(trace));
            doc.put("exception", trace.toString());
        }
        String line = object(doc);
        synchronized (OUT) {
            OUT.println(line);
        }
    }

    /**
     * A flat object of strings as one JSON line, written by hand: logging must not wait for
     * Jackson, whose first use costs a cold start tens of milliseconds (the ready line is logged
     * while the first request is being served).
     */
    static String object(Map<String, Object> doc) {
        StringBuilder out = new StringBuilder(256).append('{');
        for (Map.Entry<String, Object> e : doc.entrySet()) {
            if (out.length() > 1) out.append(',');
            quote(out, e.getKey());
            out.append(':');
            quote(out, String.valueOf(e.getValue()));
        }
        return out.append('}').toString();
    }

    /** A JSON string (RFC 8259): quotes, backslashes and control characters escaped. */
    static void quote(StringBuilder out, String s) {
        out.append('"');
        for (int i = 0; i < s.length(); i++) {
            char c = s.charAt(i);
            switch (c) {
                case '"' -> out.append("\\\"");
                case '\\' -> out.append("\\\\");
                case '\n' -> out.append("\\n");
                case '\r' -> out.append("\\r");
                case '\t' -> out.append("\\t");
                default -> {
                    if (c < 0x20 || c == 0x2028 || c == 0x2029) {
                        out.append(String.format("\\u%04x", (int) c));
                    } else {
                        out.append(c);
                    }
                }
            }
        }
        out.append('"');
    }

    static void info(String msg) { write("info", "flotilla.fn", msg, null); }
    static void warning(String msg) { write("warning", "flotilla.fn", msg, null); }
    static void error(String msg, Throwable error) { write("error", "flotilla.fn", msg, error); }

    static String level(Level level) {
        int v = level.intValue();
        if (v >= Level.SEVERE.intValue()) return "error";
        if (v >= Level.WARNING.intValue()) return "warning";
        if (v >= Level.INFO.intValue()) return "info";
        return "debug";
    }

    /** Route java.util.logging and System.out/err through the JSON lines. */
    static void install() {
        LogManager.getLogManager().reset();
        Logger root = Logger.getLogger("");
        root.setLevel(Level.INFO);
        root.addHandler(new Handler() {
            @Override
            public void publish(LogRecord record) {
                String msg = record.getMessage();
                if (record.getParameters() != null && msg != null && msg.contains("{")) {
                    msg = java.text.MessageFormat.format(msg, record.getParameters());
                }
                write(level(record.getLevel()), record.getLoggerName() == null ? "" : record.getLoggerName(),
                        msg, record.getThrown());
            }

            @Override public void flush() {}
            @Override public void close() {}
        });
        System.setOut(new PrintStream(new LineStream("info"), true, StandardCharsets.UTF_8));
        System.setErr(new PrintStream(new LineStream("error"), true, StandardCharsets.UTF_8));
    }

    /** Collects bytes per thread and logs each complete line. */
    private static final class LineStream extends OutputStream {
        private final String level;
        private final ThreadLocal<ByteArrayOutputStream> buffer = ThreadLocal.withInitial(ByteArrayOutputStream::new);

        LineStream(String level) { this.level = level; }

        @Override
        public void write(int b) {
            ByteArrayOutputStream buf = buffer.get();
            if (b == '\n') {
                String line = buf.toString(StandardCharsets.UTF_8);
                buf.reset();
                JsonLog.write(level, "function", line.endsWith("\r") ? line.substring(0, line.length() - 1) : line, null);
            } else if (buf.size() < 1 << 20) {
                buf.write(b);
            }
        }
    }
}
