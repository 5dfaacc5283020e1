package dev.flotilla.fn;

import com.sun.net.httpserver.HttpExchange;
import com.sun.net.httpserver.HttpServer;
import java.io.IOException;
import java.io.InputStream;
import java.lang.reflect.InvocationTargetException;
import java.lang.reflect.Method;
import java.lang.reflect.Modifier;
import java.net.InetAddress;
import java.net.InetSocketAddress;
import java.net.URLDecoder;
import java.nio.charset.StandardCharsets;
import java.nio.file.Files;
import java.nio.file.Path;
import java.time.Duration;
import java.time.Instant;
import java.util.ArrayList;
import java.util.LinkedHashMap;
import java.util.List;
import java.util.Map;
import java.util.concurrent.Callable;
import java.util.concurrent.ExecutorService;
import java.util.concurrent.Executors;
import java.util.concurrent.Future;
import java.util.concurrent.Semaphore;
import java.util.concurrent.ThreadFactory;
import java.util.concurrent.TimeUnit;
import java.util.concurrent.TimeoutException;
import java.util.concurrent.atomic.AtomicInteger;
import java.util.regex.Pattern;

/**
 * The Java function runtime: {@code java dev.flotilla.fn.Main} serves one function with the
 * contract of the Python and Node runtimes (docs/fn.md): health, FaaS metrics, W3C traces
 * exported as OTLP/HTTP JSON, JSON logs, CloudEvents through the CloudEvents Java SDK, graceful
 * stop, timeouts and a concurrency limit. The server is the JDK's own (jdk.httpserver).
 */
public final class Main {
    private static final Pattern TOKEN = Pattern.compile("^[!#$%&'*+\\-.^_`|~0-9A-Za-z]+$");
    private static final String JSON_CT = "application/json";

    private final Map<String, String> env;
    private final String name;
    private final String version;
    private final String instance;
    private final String source;
    private final String handlerRef;
    private final boolean cloudevent;
    private final String trigger;
    private final long maxBody;
    private final boolean accessLog;
    private final long timeoutMs;
    private final long healthTimeoutMs;
    private final long graceMs;
    private final Semaphore limit;
    private final Metrics metrics;
    private final Exporter exporter;
    private final ExecutorService hooks = Executors.newFixedThreadPool(2, daemon("flotilla-hooks"));
    private final ExecutorService handlers = Executors.newCachedThreadPool(daemon("flotilla-invoke"));
    private final AtomicInteger inFlight = new AtomicInteger();
    private volatile boolean ready;
    private volatile boolean stopping;
    private HttpServer server;

    private Method handler;
    private Object target;
    private Method init, liveness, readiness, shutdown;
    private boolean passSdkEvent;

    private Main(Map<String, String> env) {
        this.env = env;
        this.name = first(env.get("FLOTILLA_FN_NAME"), env.get("K_SERVICE"), "function");
        this.version = first(env.get("FLOTILLA_FN_VERSION"), env.get("K_REVISION"), "0");
        this.instance = first(env.get("POD_NAME"), env.get("HOSTNAME"), hostname());
        this.source = first(env.get("FLOTILLA_FN_SOURCE"), ".", ".");
        this.handlerRef = first(env.get("FLOTILLA_FN_HANDLER"), "function.Function:handle", "");
        String signature = first(env.get("FLOTILLA_FN_SIGNATURE"), "http", "");
        if (!signature.equals("http") && !signature.equals("cloudevent")) {
            throw new IllegalArgumentException("FLOTILLA_FN_SIGNATURE must be http or cloudevent");
        }
        this.cloudevent = signature.equals("cloudevent");
        this.trigger = cloudevent ? "pubsub" : "http";
        this.maxBody = Exporter.parseLong(env.get("FLOTILLA_FN_MAX_BODY"), 10L * 1024 * 1024);
        this.accessLog = List.of("1", "true", "yes").contains(env.getOrDefault("FLOTILLA_FN_ACCESS_LOG", "").toLowerCase());
        this.timeoutMs = (long) (seconds(env.get("FLOTILLA_FN_TIMEOUT"), 0) * 1000);
        this.healthTimeoutMs = (long) (seconds(env.get("FLOTILLA_FN_HEALTH_TIMEOUT"), 1) * 1000);
        this.graceMs = (long) (seconds(env.get("FLOTILLA_FN_GRACE"), 10) * 1000);
        int concurrency = (int) Exporter.parseLong(env.get("FLOTILLA_FN_CONCURRENCY"), 0);
        this.limit = concurrency > 0 ? new Semaphore(concurrency, true) : null;
        this.metrics = new Metrics(name, version, instance);
        JsonLog.faasName = name;
        this.exporter = Exporter.fromEnv(env, name, version, instance);
    }

    private static String first(String a, String b, String c) {
        if (a != null && !a.isEmpty()) return a;
        if (b != null && !b.isEmpty()) return b;
        return c;
    }

    private static double seconds(String value, double fallback) {
        try {
            return value == null || value.isBlank() ? fallback : Double.parseDouble(value.trim());
        } catch (NumberFormatException e) {
            return fallback;
        }
    }

    private static String hostname() {
        try {
            return InetAddress.getLocalHost().getHostName();
        } catch (IOException e) {
            return "localhost";
        }
    }

    private static ThreadFactory daemon(String prefix) {
        AtomicInteger n = new AtomicInteger();
        return r -> {
            Thread t = new Thread(r, prefix + "-" + n.incrementAndGet());
            t.setDaemon(true);
            return t;
        };
    }

    // --- loading the function ------------------------------------------------------------------

    private void load() throws Throwable {
        int colon = handlerRef.lastIndexOf(':');
        String className = colon < 0 ? handlerRef : handlerRef.substring(0, colon);
        String methodName = colon < 0 ? "handle" : handlerRef.substring(colon + 1);
        Class<?> cls;
        try {
            cls = Class.forName(className, true, Main.class.getClassLoader());
        } catch (ClassNotFoundException e) {
            throw new IllegalArgumentException(handlerRef + ": no class " + className + " (is it compiled? see FLOTILLA_FN_HANDLER)");
        }
        for (Method m : cls.getMethods()) {
            if (m.getName().equals(methodName) && m.getParameterCount() == 1) {
                Class<?> p = m.getParameterTypes()[0];
                if (cloudevent ? (p == Event.class || p == io.cloudevents.CloudEvent.class) : p == Request.class) {
                    handler = m;
                    passSdkEvent = p == io.cloudevents.CloudEvent.class;
                }
            }
        }
        if (handler == null) {
            String param = cloudevent ? "Event (or io.cloudevents.CloudEvent)" : "Request";
            throw new IllegalArgumentException(handlerRef + ": no public method " + methodName + "(" + param + ") in " + className);
        }
        boolean needsInstance = !Modifier.isStatic(handler.getModifiers());
        init = hook(cls, "init");
        liveness = hook(cls, "liveness");
        readiness = hook(cls, "readiness");
        shutdown = hook(cls, "shutdown");
        for (Method m : new Method[] {init, liveness, readiness, shutdown}) {
            if (m != null && !Modifier.isStatic(m.getModifiers())) needsInstance = true;
        }
        if (needsInstance) {
            try {
                target = cls.getDeclaredConstructor().newInstance();
            } catch (InvocationTargetException e) {
                throw e.getCause();
            }
        }
    }

    private static Method hook(Class<?> cls, String name) {
        try {
            return cls.getMethod(name);
        } catch (NoSuchMethodException e) {
            return null;
        }
    }

    private Object call(Method m, Object... args) throws Exception {
        try {
            return m.invoke(Modifier.isStatic(m.getModifiers()) ? null : target, args);
        } catch (InvocationTargetException e) {
            Throwable cause = e.getCause();
            if (cause instanceof Exception ex) throw ex;
            if (cause instanceof Error err) throw err;
            throw e;
        }
    }

    /** One line naming file:line of the user's code for an error raised while loading it. */
    static String describeLoadError(Throwable e, String source) {
        Throwable root = e;
        while ((root instanceof ExceptionInInitializerError || root instanceof InvocationTargetException) && root.getCause() != null) {
            root = root.getCause();
        }
        String what = root.getClass().getSimpleName() + ": " + Json.firstLine(String.valueOf(root.getMessage()));
        for (Throwable t = root; t != null; t = t.getCause()) {
            for (StackTraceElement frame : t.getStackTrace()) {
                String cls = frame.getClassName();
                if (frame.getFileName() == null || frame.getLineNumber() < 0 || cls.startsWith("dev.flotilla.fn.")
                        || cls.startsWith("java.") || cls.startsWith("jdk.") || cls.startsWith("sun.")) {
                    continue;
                }
                int dot = cls.lastIndexOf('.');
                String pkg = dot < 0 ? "" : cls.substring(0, dot).replace('.', '/') + "/";
                Path file = Path.of(source, "src", "main", "java", pkg + frame.getFileName()).toAbsolutePath().normalize();
                if (!Files.exists(file)) file = Path.of(pkg + frame.getFileName());
                return file + ":" + frame.getLineNumber() + ": " + what;
            }
        }
        return what;
    }

    // --- health ----------------------------------------------------------------------------------

    private Map.Entry<Integer, Map<String, Object>> check(Method hook) {
        boolean ok = true;
        String detail = "";
        if (hook != null) {
            Future<Object> f = hooks.submit(() -> call(hook));
            try {
                Object result = f.get(healthTimeoutMs, TimeUnit.MILLISECONDS);
                if (result instanceof Health h) {
                    ok = h.isOk();
                    detail = h.detail();
                } else if (result instanceof Boolean b) {
                    ok = b;
                }
            } catch (TimeoutException e) {
                f.cancel(true);
                ok = false;
                detail = hook.getName() + " took longer than " + Metrics.num(healthTimeoutMs / 1000.0) + "s";
            } catch (java.util.concurrent.ExecutionException e) {
                ok = false;
                Throwable c = e.getCause();
                detail = c.getClass().getSimpleName() + ": " + c.getMessage();
            } catch (InterruptedException e) {
                Thread.currentThread().interrupt();
                ok = false;
            }
        }
        Map<String, Object> doc = new LinkedHashMap<>();
        doc.put("status", ok ? "ok" : "failing");
        if (!detail.isEmpty()) doc.put("detail", detail);
        return Map.entry(ok ? 200 : 503, doc);
    }

    // --- responses -------------------------------------------------------------------------------

    /** The function returned something we cannot send (answered 500, counted, logged). */
    static final class InvalidResponse extends RuntimeException {
        private static final long serialVersionUID = 1L;
        InvalidResponse(String message) { super(message); }
    }

    /** The caller waited longer than FLOTILLA_FN_TIMEOUT (answered 504). */
    static final class TimedOut extends RuntimeException {
        private static final long serialVersionUID = 1L;
        TimedOut(String message) { super(message); }
    }

    record Result(int status, Map<String, String> headers, byte[] body) {}

    static Result encodeResult(Object value) {
        int status = 200;
        Map<String, String> extra = Map.of();
        if (value instanceof Response r) {
            status = r.status();
            extra = r.headers();
            value = r.body();
            if (status < 100 || status > 599) throw new InvalidResponse("status " + status + " is not an HTTP status (100-599)");
        }
        byte[] body;
        String ctype = null;
        if (value == null) {
            body = new byte[0];
            if (status == 200) status = 204;
        } else if (value instanceof byte[] raw) {
            body = raw;
            ctype = "application/octet-stream";
        } else if (value instanceof String s) {
            body = s.getBytes(StandardCharsets.UTF_8);
            ctype = "text/plain; charset=utf-8";
        } else {
            body = Json.bytes(value);
            ctype = JSON_CT;
        }
        Map<String, String> headers = new LinkedHashMap<>();
        for (Map.Entry<String, String> h : extra.entrySet()) {
            String k = String.valueOf(h.getKey());
            String v = String.valueOf(h.getValue());
            if (!TOKEN.matcher(k).matches()) throw new InvalidResponse("header name " + Json.string(k) + " is not an HTTP token");
            if (v.indexOf('\r') >= 0 || v.indexOf('\n') >= 0 || v.indexOf('\0') >= 0) {
                throw new InvalidResponse("header " + Json.string(k) + " has a line break or NUL in its value");
            }
            if (!StandardCharsets.ISO_8859_1.newEncoder().canEncode(v)) throw new InvalidResponse("header " + Json.string(k) + " is not Latin-1");
            String key = k.toLowerCase();
            if (!key.equals("content-length") && !key.equals("traceparent")) headers.put(key, v);
        }
        if (ctype != null) headers.putIfAbsent("content-type", ctype);
        return new Result(status, headers, body);
    }

    private static Result json(int status, Object doc) {
        return new Result(status, new LinkedHashMap<>(Map.of("content-type", JSON_CT)), Json.bytes(doc));
    }

    // --- the server ------------------------------------------------------------------------------

    private static void send(HttpExchange ex, Result r) throws IOException {
        r.headers().forEach((k, v) -> ex.getResponseHeaders().set(k, v));
        boolean empty = r.body().length == 0;
        ex.sendResponseHeaders(r.status(), empty ? -1 : r.body().length);
        if (!empty) ex.getResponseBody().write(r.body());
    }

    private void route(HttpExchange ex) {
        try {
            String path = ex.getRequestURI().getRawPath();
            switch (path) {
                case "/health/liveness" -> {
                    var c = check(liveness);
                    send(ex, json(c.getKey(), c.getValue()));
                }
                case "/health/readiness" -> {
                    if (!ready) {
                        send(ex, json(503, Map.of("status", "failing", "detail", stopping ? "stopping" : "not started")));
                    } else {
                        var c = check(readiness);
                        send(ex, json(c.getKey(), c.getValue()));
                    }
                }
                case "/metrics" -> send(ex, new Result(200,
                        Map.of("content-type", "text/plain; version=0.0.4; charset=utf-8"),
                        metrics.render().getBytes(StandardCharsets.UTF_8)));
                default -> invoke(ex);
            }
        } catch (Throwable t) {
            JsonLog.error("request failed: " + t, null);
        } finally {
            ex.close();
        }
    }

    private static Map<String, String> headers(HttpExchange ex) {
        Map<String, String> out = new LinkedHashMap<>();
        ex.getRequestHeaders().forEach((k, v) -> out.put(k.toLowerCase(), String.join(", ", v)));
        return out;
    }

    private static Map<String, String> query(String raw) {
        Map<String, String> out = new LinkedHashMap<>();
        if (raw == null || raw.isEmpty()) return out;
        for (String pair : raw.split("&")) {
            if (pair.isEmpty()) continue;
            int i = pair.indexOf('=');
            String k = i < 0 ? pair : pair.substring(0, i);
            String v = i < 0 ? "" : pair.substring(i + 1);
            try {
                out.putIfAbsent(URLDecoder.decode(k, StandardCharsets.UTF_8), URLDecoder.decode(v, StandardCharsets.UTF_8));
            } catch (IllegalArgumentException e) {
                out.putIfAbsent(k, v);
            }
        }
        return out;
    }

    /**
     * The body, or null when it is larger than FLOTILLA_FN_MAX_BODY. Up to 16 MiB more is read and
     * dropped so the caller sees the 413 rather than a reset; beyond that the connection is closed.
     */
    private byte[] readBody(HttpExchange ex) throws IOException {
        long drain = maxBody + (16L << 20);
        String length = ex.getRequestHeaders().getFirst("Content-Length");
        boolean tooLarge = false;
        if (length != null) {
            try {
                long declared = Long.parseLong(length.trim());
                if (declared > drain) return null;
                tooLarge = declared > maxBody;
            } catch (NumberFormatException e) {
                return null;
            }
        }
        InputStream in = ex.getRequestBody();
        java.io.ByteArrayOutputStream out = new java.io.ByteArrayOutputStream();
        byte[] buf = new byte[16384];
        long total = 0;
        int n;
        while ((n = in.read(buf)) > 0) {
            total += n;
            if (total > drain) return null;
            if (total > maxBody) tooLarge = true;
            if (!tooLarge) out.write(buf, 0, n);
        }
        return tooLarge ? null : out.toByteArray();
    }

    private Object runHandler(Span span, Callable<Object> work) throws Exception {
        if (timeoutMs <= 0) {
            return work.call();
        }
        Future<Object> f = handlers.submit(() -> {
            Span.CURRENT.set(span);
            try {
                return work.call();
            } finally {
                Span.CURRENT.remove();
            }
        });
        try {
            return f.get(timeoutMs, TimeUnit.MILLISECONDS);
        } catch (TimeoutException e) {
            throw new TimedOut("timed out after " + Metrics.num(timeoutMs / 1000.0) + "s");
        } catch (java.util.concurrent.ExecutionException e) {
            Throwable c = e.getCause();
            if (c instanceof Exception ex) throw ex;
            if (c instanceof Error err) throw err;
            throw e;
        }
    }

    private Result invokeEvents(Map<String, String> reqHeaders, byte[] raw) throws Exception {
        Events.Received received;
        try {
            received = Events.decode(reqHeaders, raw);
        } catch (BadRequestException e) {
            return json(400, Map.of("error", e.getMessage()));
        }
        List<Object> replies = new ArrayList<>();
        for (Event event : received.events()) {
            Object reply = call(handler, passSdkEvent ? event.cloudEvent() : event);
            if (reply != null) replies.add(reply);
        }
        if (replies.isEmpty()) return new Result(204, Map.of(), new byte[0]);
        if (received.mode().equals("batch")) {
            return new Result(200, new LinkedHashMap<>(Map.of("content-type", Events.BATCH)), Events.encodeBatch(replies));
        }
        var encoded = Events.encode(replies.get(0));
        return new Result(200, new LinkedHashMap<>(encoded.getKey()), encoded.getValue());
    }

    private void invoke(HttpExchange ex) throws IOException {
        Map<String, String> reqHeaders = headers(ex);
        Span span = Span.start(name, reqHeaders.get("traceparent"));
        long started = System.nanoTime();
        String method = ex.getRequestMethod();
        String path = ex.getRequestURI().getRawPath();
        inFlight.incrementAndGet();
        boolean acquired = false;
        Span.CURRENT.set(span);
        Result result;
        String error = null;
        try {
            byte[] raw = readBody(ex);
            if (raw == null) {
                result = json(413, Map.of("error", "request body too large"));
            } else {
                if (limit != null) {
                    limit.acquire();
                    acquired = true;
                }
                if (cloudevent) {
                    result = (Result) runHandler(span, () -> invokeEvents(reqHeaders, raw));
                } else {
                    Request request = new Request(method, path, query(ex.getRequestURI().getRawQuery()), reqHeaders, raw,
                            span.traceId, span.spanId, span.traceparent());
                    result = encodeResult(runHandler(span, () -> call(handler, request)));
                }
            }
        } catch (BadRequestException e) {
            result = json(400, Map.of("error", String.valueOf(e.getMessage())));
        } catch (TimedOut e) {
            error = e.getMessage();
            JsonLog.error("function " + e.getMessage(), null);
            result = json(504, Map.of("error", "function " + e.getMessage()));
        } catch (InvalidResponse e) {
            error = "invalid response: " + e.getMessage();
            JsonLog.error("function returned an invalid response: " + e.getMessage(), null);
            result = json(500, Map.of("error", "invalid response from the function"));
        } catch (Throwable e) {
            if (e instanceof InterruptedException) Thread.currentThread().interrupt();
            error = e.getClass().getSimpleName() + ": " + e.getMessage();
            JsonLog.error("function raised", e);
            result = json(500, Map.of("error", "internal error", "trace_id", span.traceId));
        } finally {
            if (acquired) limit.release();
            Span.CURRENT.remove();
        }
        try {
            Map<String, String> headers = new LinkedHashMap<>(result.headers());
            headers.put("traceparent", span.traceparent());
            send(ex, new Result(result.status(), headers, result.body()));
        } finally {
            double seconds = (System.nanoTime() - started) / 1e9;
            boolean failed = error != null || result.status() >= 500;
            boolean cold = metrics.record(trigger, seconds, failed);
            span.endNanos = span.startNanos + (long) (seconds * 1e9);
            span.attributes.put("faas.trigger", trigger);
            span.attributes.put("faas.invocation_id", span.spanId);
            span.attributes.put("faas.coldstart", cold);
            span.attributes.put("http.request.method", method);
            span.attributes.put("url.path", path);
            span.attributes.put("http.response.status_code", result.status());
            if (failed) span.error = error != null ? error : "HTTP " + result.status();
            if (exporter != null && span.sampled) exporter.submit(span);
            if (accessLog) JsonLog.info(method + " " + path + " " + result.status() + " " + String.format("%.1fms", seconds * 1e3));
            inFlight.decrementAndGet();
        }
    }

    // --- lifecycle -------------------------------------------------------------------------------

    private void serve() throws Exception {
        String host = first(env.get("HOST"), "0.0.0.0", "");
        int port = Integer.parseInt(first(env.get("PORT"), "8080", ""));
        server = HttpServer.create(new InetSocketAddress(host, port), 1024);
        server.setExecutor(Executors.newCachedThreadPool(daemon("flotilla-http")));
        server.createContext("/", this::route);
        if (init != null) call(init);
        server.start();
        ready = true;
        double seconds = processAgeSeconds();
        metrics.observeInit(seconds);
        JsonLog.info("function " + name + " ready in " + String.format("%.3fs", seconds)
                + " (java " + System.getProperty("java.version") + ")");
    }

    /**
     * Seconds since the kernel started this process, as the Python runtime takes it: /proc/uptime
     * minus the start tick (USER_HZ, 100 on Linux). The JDK's startInstant() adds btime, which is
     * whole seconds, so it was off by up to a second.
     */
    static double processAgeSeconds() {
        try {
            String stat = Files.readString(Path.of("/proc/self/stat"));
            long ticks = Long.parseLong(stat.substring(stat.lastIndexOf(')') + 1).trim().split("\\s+")[19]);
            double uptime = Double.parseDouble(Files.readString(Path.of("/proc/uptime")).trim().split("\\s+")[0]);
            return Math.max(0, uptime - ticks / 100.0);
        } catch (IOException | RuntimeException e) {
            Instant start = ProcessHandle.current().info().startInstant().orElse(Instant.now());
            return Math.max(0, Duration.between(start, Instant.now()).toNanos() / 1e9);
        }
    }

    /**
     * Graceful stop: readiness turns 503, in-flight invocations finish (up to the grace period),
     * the listener closes, the {@code shutdown} hook runs, spans are flushed for at most 3 s.
     */
    private void stop() {
        synchronized (this) {
            if (stopping) return;
            stopping = true;
        }
        ready = false;
        long deadline = System.currentTimeMillis() + graceMs;
        while (inFlight.get() > 0 && System.currentTimeMillis() < deadline) {
            sleep(20);
        }
        if (inFlight.get() > 0) JsonLog.warning(inFlight.get() + " invocations still running after " + Metrics.num(graceMs / 1000.0) + "s; stopping");
        server.stop(0);
        if (shutdown != null) {
            long left = Math.max(1000, deadline - System.currentTimeMillis());
            Future<Object> f = hooks.submit(() -> call(shutdown));
            try {
                f.get(left, TimeUnit.MILLISECONDS);
            } catch (TimeoutException e) {
                JsonLog.error("the shutdown hook took longer than " + Metrics.num(left / 1000.0) + "s", null);
            } catch (Exception e) {
                JsonLog.error("the shutdown hook failed", e instanceof java.util.concurrent.ExecutionException ? e.getCause() : e);
            }
        }
        if (exporter != null) exporter.shutdown(3000);
        System.out.flush();
        Runtime.getRuntime().halt(0);
    }

    private static void sleep(long ms) {
        try {
            Thread.sleep(ms);
        } catch (InterruptedException e) {
            Thread.currentThread().interrupt();
        }
    }

    public static void main(String[] args) throws Exception {
        // --train: the class-data archive's training run (Training), then exit 0.
        boolean training = args.length == 1 && args[0].equals("--train");
        Map<String, String> env = training ? Training.env(System.getenv()) : System.getenv();
        // The JDK server's own timers: a connection that has not sent its request within the header
        // timeout is closed (slowloris), idle keep-alive connections after 5 s; checked every second.
        long headerTimeout = Math.max(1, (long) Math.ceil(seconds(env.get("FLOTILLA_FN_HEADER_TIMEOUT"), 10)));
        System.setProperty("sun.net.httpserver.maxReqTime", Long.toString(headerTimeout));
        System.setProperty("sun.net.httpserver.idleInterval", "5");
        System.setProperty("sun.net.httpserver.clockTick", "1000");
        System.setProperty("sun.net.httpserver.nodelay", "true");
        JsonLog.install();
        Main main;
        try {
            main = new Main(env);
            main.load();
        } catch (Throwable e) {
            String source = first(env.get("FLOTILLA_FN_SOURCE"), ".", ".");
            System.setErr(new java.io.PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.err), true, StandardCharsets.UTF_8));
            System.err.println("cannot load function: " + describeLoadError(e, source));
            Runtime.getRuntime().halt(2);
            return;
        }
        // Not a daemon (threads inherit that from the signal's dispatcher): once server.stop() has
        // ended the HTTP dispatcher, this thread alone keeps the JVM alive for the stop hook.
        Runnable stop = () -> {
            Thread t = new Thread(main::stop, "flotilla-stop");
            t.setDaemon(false);
            t.start();
        };
        sun.misc.Signal.handle(new sun.misc.Signal("TERM"), s -> stop.run());
        sun.misc.Signal.handle(new sun.misc.Signal("INT"), s -> stop.run());
        try {
            main.serve();
            if (training) {
                Training.drive(Integer.parseInt(env.get("PORT")));
                main.stop();
            }
        } catch (Throwable e) {
            System.setErr(new java.io.PrintStream(new java.io.FileOutputStream(java.io.FileDescriptor.err), true, StandardCharsets.UTF_8));
            System.err.println("cannot start function: " + describeLoadError(e, main.source));
            Runtime.getRuntime().halt(2);
        }
    }
}
