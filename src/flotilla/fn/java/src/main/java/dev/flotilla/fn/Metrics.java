package dev.flotilla.fn;

import java.util.ArrayList;
import java.util.List;
import java.util.Map;
import java.util.TreeMap;

/** The FaaS metrics in Prometheus text 0.0.4, rendered line for line as the other runtimes do. */
final class Metrics {
    static final double[] BUCKETS = {0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10};

    static final class Histogram {
        final long[] counts = new long[BUCKETS.length + 1];
        double sum;
        long count;

        void observe(double v) {
            int i = 0;
            while (i < BUCKETS.length && BUCKETS[i] < v) i++;
            counts[i]++;
            sum += v;
            count++;
        }

        void render(List<String> out, String name, String labels) {
            long running = 0;
            for (int i = 0; i < BUCKETS.length; i++) {
                running += counts[i];
                out.add(name + "_bucket{" + labels + ",le=\"" + num(BUCKETS[i]) + "\"} " + running);
            }
            out.add(name + "_bucket{" + labels + ",le=\"+Inf\"} " + count);
            out.add(name + "_sum{" + labels + "} " + num(sum));
            out.add(name + "_count{" + labels + "} " + count);
        }
    }

    private final String name;
    private final String version;
    private final String instance;
    private final Map<String, Long> invocations = new TreeMap<>();
    private final Map<String, Long> errors = new TreeMap<>();
    private final Map<String, Long> coldstarts = new TreeMap<>();
    private final Map<String, Histogram> durations = new TreeMap<>();
    final Histogram init = new Histogram();
    private boolean cold = true;

    Metrics(String name, String version, String instance) {
        this.name = name;
        this.version = version;
        this.instance = instance;
    }

    static String num(double v) {
        if (v == Math.rint(v) && !Double.isInfinite(v) && Math.abs(v) < 1e15) {
            return Long.toString((long) v);
        }
        return Double.toString(v);
    }

    private static String esc(String v) {
        return v.replace("\\", "\\\\").replace("\n", "\\n").replace("\"", "\\\"");
    }

    private String labels(String trigger) {
        return "faas_name=\"" + esc(name) + "\",faas_version=\"" + esc(version) + "\",faas_instance=\""
                + esc(instance) + "\",faas_trigger=\"" + esc(trigger) + "\"";
    }

    /** Count one invocation; true when it was the instance's first (the cold start). */
    synchronized boolean record(String trigger, double seconds, boolean error) {
        (error ? errors : invocations).merge(trigger, 1L, Long::sum);
        durations.computeIfAbsent(trigger, t -> new Histogram()).observe(seconds);
        boolean wasCold = cold;
        cold = false;
        if (wasCold) coldstarts.merge(trigger, 1L, Long::sum);
        return wasCold;
    }

    synchronized void observeInit(double seconds) { init.observe(seconds); }

    synchronized String render() {
        List<String> out = new ArrayList<>();
        out.add("# HELP faas_invocations_total Number of successful invocations.");
        out.add("# TYPE faas_invocations_total counter");
        invocations.forEach((t, n) -> out.add("faas_invocations_total{" + labels(t) + "} " + n));
        out.add("# HELP faas_errors_total Number of invocation errors.");
        out.add("# TYPE faas_errors_total counter");
        errors.forEach((t, n) -> out.add("faas_errors_total{" + labels(t) + "} " + n));
        out.add("# HELP faas_coldstarts_total Number of invocation cold starts.");
        out.add("# TYPE faas_coldstarts_total counter");
        coldstarts.forEach((t, n) -> out.add("faas_coldstarts_total{" + labels(t) + "} " + n));
        out.add("# HELP faas_invoke_duration_seconds Duration of the function's logic execution.");
        out.add("# TYPE faas_invoke_duration_seconds histogram");
        durations.forEach((t, h) -> h.render(out, "faas_invoke_duration_seconds", labels(t)));
        out.add("# HELP faas_init_duration_seconds Process start to serving (cold start time).");
        out.add("# TYPE faas_init_duration_seconds histogram");
        init.render(out, "faas_init_duration_seconds", labels("http"));
        return String.join("\n", out) + "\n";
    }
}
