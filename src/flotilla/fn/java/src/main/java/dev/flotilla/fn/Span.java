package dev.flotilla.fn;

import java.security.SecureRandom;
import java.util.HexFormat;
import java.util.LinkedHashMap;
import java.util.Map;
import java.util.regex.Matcher;
import java.util.regex.Pattern;

/** One SERVER span, W3C trace context in and out (hand-written, as in the other runtimes). */
final class Span {
    static final ThreadLocal<Span> CURRENT = new ThreadLocal<>();
    private static final Pattern TRACEPARENT = Pattern.compile("^([0-9a-f]{2})-([0-9a-f]{32})-([0-9a-f]{16})-([0-9a-f]{2})$");
    private static final SecureRandom RANDOM = new SecureRandom();

    final String traceId;
    final String spanId;
    final String parentId;
    final boolean sampled;
    final String name;
    final long startNanos;
    long endNanos;
    final Map<String, Object> attributes = new LinkedHashMap<>();
    String error;

    private Span(String name, String traceId, String parentId, boolean sampled) {
        this.name = name;
        this.traceId = traceId;
        this.parentId = parentId;
        this.sampled = sampled;
        this.spanId = hex(8);
        java.time.Instant now = java.time.Instant.now();
        this.startNanos = now.getEpochSecond() * 1_000_000_000L + now.getNano();
    }

    static String hex(int bytes) {
        byte[] b = new byte[bytes];
        RANDOM.nextBytes(b);
        return HexFormat.of().formatHex(b);
    }

    /** A span continuing {@code traceparent}, or a new sampled trace when it is missing or malformed. */
    static Span start(String name, String traceparent) {
        if (traceparent != null) {
            Matcher m = TRACEPARENT.matcher(traceparent.trim().toLowerCase());
            if (m.matches() && !m.group(1).equals("ff") && !m.group(2).matches("0+") && !m.group(3).matches("0+")) {
                boolean sampled = (Integer.parseInt(m.group(4), 16) & 1) == 1;
                return new Span(name, m.group(2), m.group(3), sampled);
            }
        }
        return new Span(name, hex(16), "", true);
    }

    String traceparent() {
        return "00-" + traceId + "-" + spanId + "-" + (sampled ? "01" : "00");
    }
}
