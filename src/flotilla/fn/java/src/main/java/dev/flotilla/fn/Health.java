package dev.flotilla.fn;

/** What a liveness or readiness hook may return instead of a boolean: failing with a reason. */
public final class Health {
    private final boolean ok;
    private final String detail;

    private Health(boolean ok, String detail) {
        this.ok = ok;
        this.detail = detail;
    }

    public static Health ok() { return new Health(true, ""); }
    public static Health failing(String detail) { return new Health(false, detail == null ? "" : detail); }

    public boolean isOk() { return ok; }
    public String detail() { return detail; }
}
