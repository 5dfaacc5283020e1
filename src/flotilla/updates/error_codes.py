"""update_engine's error codes as words, so a failed machine says why and not just "code 10".

update_engine reports an ``ActionExitCode`` (0-44), 2000 plus an HTTP status for HTTP failures,
with up to four flag bits on top (dev mode, resumed, test image, test Omaha URL). The texts below
are ours, written from the meaning of each code.
"""

from __future__ import annotations

CODES: dict[int, str] = {
    0: "success",
    1: "generic error",
    2: "update check failed (Omaha request error)",
    3: "update response could not be handled",
    4: "filesystem copy failed",
    5: "post-install step failed",
    6: "could not mark the new partition bootable",
    7: "could not open the install device",
    8: "could not open the kernel device",
    9: "download failed (transfer error)",
    10: "payload hash mismatch",
    11: "payload size mismatch",
    12: "payload verification failed",
    13: "bad partition info in the payload",
    14: "could not write the download to disk",
    15: "new root filesystem failed verification",
    16: "new kernel failed verification",
    17: "signed delta payload expected",
    18: "payload public key verification failed",
    19: "post-install: booted from firmware B",
    20: "download state could not be initialized",
    21: "invalid metadata magic string in the payload",
    22: "signature missing from the payload manifest",
    23: "payload manifest could not be parsed",
    24: "payload metadata signature error",
    25: "payload metadata signature verification failed",
    26: "payload metadata signature mismatch",
    27: "payload operation hash verification failed",
    28: "payload operation failed to execute",
    29: "payload operation hash mismatch",
    30: "empty response from the update server",
    31: "update server response is not valid XML",
    32: "invalid payload metadata size",
    33: "invalid payload metadata signature",
    34: "invalid update server response",
    35: "update ignored by local policy",
    36: "update deferred by local policy",
    37: "HTTP error from the update server",
    38: "payload operation hash missing",
    39: "payload metadata signature missing",
    40: "update deferred (backoff after earlier failures)",
    41: "post-install powerwash failed",
    42: "new PCR policy verification failed",
    43: "new PCR policy HTTP error",
    44: "rolled back to the previous version after the reboot",
    100: "download incomplete",
}

FLAGS: tuple[tuple[int, str], ...] = (
    (1 << 31, "dev mode"),
    (1 << 30, "resumed"),
    (1 << 29, "test image"),
    (1 << 28, "test Omaha URL"),
)
_FLAG_MASK = sum(bit for bit, _ in FLAGS)
HTTP_BASE = 2000


def describe(code: int) -> str:
    """``"payload hash mismatch (10)"``; flags follow in brackets; unknown codes say so."""
    if code < 0:
        return f"unknown error ({code})"
    base = code & ~_FLAG_MASK
    flags = [name for bit, name in FLAGS if code & bit]
    if base in CODES:
        text = CODES[base]
    elif HTTP_BASE < base < HTTP_BASE + 1000:
        text = f"HTTP {base - HTTP_BASE} from the update server"
    else:
        text = "unknown error"
    out = f"{text} ({base})"
    return out + (f" [{', '.join(flags)}]" if flags else "")
