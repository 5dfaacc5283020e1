package dev.flotilla.fn;

/** The caller's error (answered 400 with the message, not counted as a function error). */
public class BadRequestException extends IllegalArgumentException {
    private static final long serialVersionUID = 1L;

    public BadRequestException(String message) { super(message); }
}
